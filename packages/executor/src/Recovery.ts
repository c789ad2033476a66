import { Effect, Option, Schema } from "effect"
import { AgentConfig, Kube, ZombieReason } from "@executor/domain"
import { AgentRegistry } from "./AgentRegistry.js"
import { ClusterOps } from "./ClusterOps.js"
import { ClusterWatch } from "./ClusterWatch.js"
import { ExecutorSettings } from "./ExecutorSettings.js"
import { RunTracker } from "./RunTracker.js"
import { Verdicts } from "./Verdicts.js"

const VerdictMark = Schema.parseJson(
  Schema.Struct({
    reason: ZombieReason,
    detail: Schema.String,
    at: Schema.String,
    source: Schema.Literal("pod", "job", "sweeper", "recovery", "dispatch")
  })
)
const decodeMark = Schema.decodeUnknownOption(VerdictMark)

/**
 * Rebuilds the runs of a fresh executor from the labelled Jobs (decisions D4.8): caches first,
 * then every unsettled Job is tracked and classified like any other run. A Job deleted while no
 * executor ran is still there (Terminating, held by the finalizer) and is judged
 * `executor_watch_lost`; a Job whose verdict was marked but not cleaned up is finished (D6.2).
 */
export const recover = Effect.gen(function* () {
  const watch = yield* ClusterWatch
  const ops = yield* ClusterOps
  const registry = yield* AgentRegistry
  const tracker = yield* RunTracker
  const verdicts = yield* Verdicts
  const { names } = yield* ExecutorSettings

  yield* watch.synced
  yield* registry.synced
  const jobs = yield* watch.jobs
  const jobTimeout = (job: Kube.Job, assignee: string) =>
    job.spec?.activeDeadlineSeconds !== undefined
      ? Effect.succeed(job.spec.activeDeadlineSeconds)
      : Effect.map(registry.byAssignee(assignee), (config) =>
          Option.match(config, { onNone: () => AgentConfig.bounds.zombieJobTimeoutSeconds.default, onSome: (c) => c.timeoutSeconds })
        )

  let adopted = 0
  for (const job of jobs) {
    const taskId = Kube.label(job.metadata, names.taskIdLabel)
    const name = job.metadata.name
    const ours = job.metadata.finalizers?.includes(names.finalizer) ?? false
    const removeFinalizer = ours
      ? ops.removeJobFinalizer(name, names.finalizer).pipe(
          Effect.catchAll((error) => Effect.logWarning(`could not release ${name}: ${error.message}`))
        )
      : Effect.void
    if (taskId === "") continue
    const mark = Option.flatMap(Option.fromNullable(job.metadata.annotations?.[names.verdictAnnotation]), decodeMark)
    if (Option.isSome(mark)) {
      // Deleted means the verdict was published before the old executor stopped.
      if (Kube.isDeleting(job.metadata)) {
        yield* removeFinalizer
        continue
      }
    } else if (!ours && Kube.jobFinished(job)) {
      // A finished Job of the executor being replaced, which reported it itself.
      continue
    }
    // A Job of ours that completed while no executor ran is judged too: a Complete Job can be an
    // eviction whose process exited 0, which only the kubelet's Event tells.
    const assignee = Kube.label(job.metadata, names.assigneeLabel)
    const startedAt = Option.getOrElse(Kube.createdAt(job.metadata), () => 0)
    yield* tracker.track({
      taskId,
      jobName: name,
      assignee,
      startedAt,
      timeoutSeconds: yield* jobTimeout(job, assignee),
      attempt: Option.none(),
      spawnPublished: false
    })
    adopted++
    if (Option.isSome(mark)) {
      const run = yield* tracker.get(name)
      if (Option.isSome(run)) yield* verdicts.resume(run.value, mark.value)
      continue
    }
    if (!ours && !Kube.isDeleting(job.metadata)) {
      yield* ops.addJobFinalizer(name, names.finalizer).pipe(
        Effect.catchAll((error) => Effect.logWarning(`could not adopt ${name}: ${error.message}`))
      )
    }
    yield* verdicts.evaluate(name, "recovery")
  }
  yield* Effect.logInfo(`recovered ${adopted} runs from ${jobs.length} labelled Jobs`)
}).pipe(Effect.annotateLogs({ service: "Recovery" }))
