import { Effect, Option } from "effect"
import { AgentConfig, CommandGroup, Doctrine, Kube } from "@executor/domain"
import { AgentRegistry } from "./AgentRegistry.js"
import { ClusterOps } from "./ClusterOps.js"
import { ClusterWatch } from "./ClusterWatch.js"
import { CommandPublisher, type PublishError } from "./CommandPublisher.js"
import { ExecutorSettings } from "./ExecutorSettings.js"
import { transientBackoff } from "./Retry.js"
import { RunTracker } from "./RunTracker.js"
import { decodeVerdictMark, failureGroup, type VerdictMark, Verdicts } from "./Verdicts.js"

/** A Job to settle, with what the old executor may have left half-published on it. */
interface Found {
  readonly job: Kube.Job
  readonly taskId: string
  readonly name: string
  readonly ours: boolean
  readonly mark: Option.Option<VerdictMark>
  /** The spawn commands, where an earlier executor placed them, unless the run is known to be settled. */
  readonly spawn: Option.Option<readonly [CommandGroup.CommandGroup, CommandGroup.Placement]>
}

const retried = <A>(what: string, effect: Effect.Effect<A, PublishError>) =>
  effect.pipe(
    Effect.tapError((error) => Effect.logWarning(`recovery: ${what} failed, retrying: ${error.message}`)),
    Effect.retry({ schedule: transientBackoff(), while: (error) => error.kind === "unavailable" })
  )

/**
 * Rebuilds the runs of a fresh executor from the labelled Jobs (decisions D4.8): caches first,
 * then every unsettled Job is tracked and classified like any other run. A Job deleted while no
 * executor ran is still there (Terminating, held by the finalizer) and is judged
 * `executor_watch_lost`; a Job whose verdict was marked but not cleaned up is finished (D6.2).
 *
 * Before any of that, every command group an earlier executor may have left half-published is
 * resolved from its placement on the Job (the spawn annotation, the verdict mark): the partitions
 * are read back once each, whatever the number of Jobs, and what is not in the log is sent. A spawn
 * is always settled before its run can be judged, so the controller sees the spawn first.
 */
export const recover = Effect.gen(function* () {
  const watch = yield* ClusterWatch
  const ops = yield* ClusterOps
  const registry = yield* AgentRegistry
  const tracker = yield* RunTracker
  const verdicts = yield* Verdicts
  const publisher = yield* CommandPublisher
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

  const found: Array<Found> = []
  for (const job of jobs) {
    const taskId = Kube.label(job.metadata, names.taskIdLabel)
    if (taskId === "") continue
    const name = job.metadata.name
    const ours = job.metadata.finalizers?.includes(names.finalizer) ?? false
    const mark = Option.flatMap(Option.fromNullable(job.metadata.annotations?.[names.verdictAnnotation]), decodeVerdictMark)
    // Without our finalizer the run was settled (its spawn first); deleting with a mark, its
    // verdict went out (and its spawn before it).
    const settled = !ours || (Option.isSome(mark) && Kube.isDeleting(job.metadata))
    const spawn = Option.flatMap(
      Option.fromNullable(settled ? undefined : job.metadata.annotations?.[names.spawnAnnotation]),
      CommandGroup.decodePlacement
    ).pipe(
      Option.map((placement) => {
        const startedAt = Option.getOrElse(Kube.createdAt(job.metadata), () => 0)
        const commands = Doctrine.spawnCommands({ taskId, jobName: name, at: startedAt })
        return [CommandGroup.make(placement.group, taskId, commands), placement] as const
      })
    )
    found.push({ job, taskId, name, ours, mark, spawn })
  }

  const pending = found.flatMap((f): Array<readonly [CommandGroup.CommandGroup, CommandGroup.Placement]> => [
    ...Option.toArray(f.spawn),
    ...Option.toArray(
      Option.flatMap(f.mark, (mark) => (mark.publish === undefined ? Option.none() : Option.some([failureGroup({ taskId: f.taskId, jobName: f.name }, mark), mark.publish] as const)))
    )
  ])
  // A read-back fails only when the broker does not answer: wait for it (the retry never ends).
  const inLog =
    pending.length === 0
      ? new Set<string>()
      : yield* publisher.published(pending).pipe(
          Effect.tapError((error) => Effect.logWarning(`recovery: reading back failed, retrying: ${error.message}`)),
          Effect.retry(transientBackoff()),
          Effect.orDie
        )
  yield* Effect.logInfo(`recovery: ${pending.length} command groups to settle, ${inLog.size} already in the log`)

  // Spawns that never reached the log: a live run gets both commands, a finished one only the
  // increment (that run must not become current again).
  for (const f of found) {
    if (Option.isNone(f.spawn)) continue
    const [group, placement] = f.spawn.value
    if (inLog.has(group.id)) continue
    const live = Kube.jobActive(f.job) && !Kube.isDeleting(f.job.metadata)
    const [increment] = group.commands
    const sending = live || increment === undefined ? group : CommandGroup.make(group.id, group.taskId, [increment])
    yield* retried("publishing a lost spawn", publisher.publish(sending, placement)).pipe(
      Effect.catchAll((error) => Effect.logError(`recovery: spawn of ${f.name} not sent: ${error.message}`))
    )
  }

  let adopted = 0
  for (const { job, taskId, name, ours, mark } of found) {
    const removeFinalizer = ours
      ? ops.removeJobFinalizer(name, names.finalizer).pipe(
          Effect.catchAll((error) => Effect.logWarning(`could not release ${name}: ${error.message}`))
        )
      : Effect.void
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
      // settled above, or placed by an executor version that published before creating the Job
      spawnPublished: true
    })
    adopted++
    if (Option.isSome(mark)) {
      const run = yield* tracker.get(name)
      const published = Option.exists(Option.fromNullable(mark.value.publish), (p) => inLog.has(p.group))
      if (Option.isSome(run)) yield* verdicts.resume(run.value, mark.value, published)
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
