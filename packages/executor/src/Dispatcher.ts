import { Clock, Context, Duration, Effect, FiberMap, FiberSet, HashMap, Layer, Metric, Option, Ref, Schema } from "effect"
import {
  type AgentConfig,
  Doctrine,
  Frontmatter,
  Gates,
  JobBuilder,
  Kube,
  type TaskEvent,
  Time
} from "@executor/domain"
import { AgentRegistry } from "./AgentRegistry.js"
import { ClusterOps } from "./ClusterOps.js"
import { ClusterWatch } from "./ClusterWatch.js"
import { Dedupe } from "./Dedupe.js"
import { CommandPublisher, type ConsumedOffset } from "./CommandPublisher.js"
import { ExecutorSettings } from "./ExecutorSettings.js"
import { Journal } from "./Journal.js"
import * as Metrics from "./Metrics.js"
import { transientBackoff } from "./Retry.js"
import { RunTracker } from "./RunTracker.js"
import { Verdicts } from "./Verdicts.js"

/** A transient failure (API or broker): the event is handled again later and its offset not committed. */
export class DispatchError extends Schema.TaggedError<DispatchError>()("DispatchError", {
  step: Schema.String,
  message: Schema.String
}) {}

export interface Handled {
  readonly result: Gates.EventResult
  /** The consumed offset went out inside a command transaction. */
  readonly committed: boolean
}

export interface DispatcherShape {
  /** Runs the gates of D4.9 on one task event and spawns its run when they all pass. */
  readonly handle: (
    event: TaskEvent.TaskEvent,
    consumed: Option.Option<ConsumedOffset>
  ) => Effect.Effect<Handled, DispatchError>
  readonly deferred: Effect.Effect<ReadonlyMap<string, Time.Millis>>
}

export const concurrencyRetrySeconds = 60

/** A respawn waiting for its time, with the newest event of its task. */
interface Deferral {
  readonly at: Time.Millis
  readonly event: TaskEvent.TaskEvent
}

const count = (result: Gates.EventResult) => Metric.increment(Metric.tagged(Metrics.taskEvents, "result", result))

const make = Effect.gen(function* () {
  const watch = yield* ClusterWatch
  const ops = yield* ClusterOps
  const publisher = yield* CommandPublisher
  const registry = yield* AgentRegistry
  const tracker = yield* RunTracker
  const verdicts = yield* Verdicts
  const dedupe = yield* Dedupe
  const journal = yield* Journal
  const settings = yield* ExecutorSettings
  const { names } = settings
  // Pending deferrals with the newest event of their task: a newer event cancels the deferral, so
  // nothing is kept for a task once it no longer waits.
  const deferrals = yield* Ref.make(HashMap.empty<string, Deferral>())
  const timers = yield* FiberMap.make<string>()
  const work = yield* FiberSet.make()
  // One spawn decision at a time: the active-run and concurrency checks and the create are atomic
  // with respect to each other (REF §8.13), for the consumer and the deferred queue alike.
  const spawnLock = yield* Effect.makeSemaphore(1)

  const publish = (step: string, commands: Parameters<typeof publisher.publish>[0], consumed: Option.Option<ConsumedOffset>) =>
    publisher.publish(commands, Option.getOrUndefined(consumed)).pipe(
      Effect.catchTag("PublishError", (error) =>
        error.kind === "unavailable"
          ? Effect.fail(new DispatchError({ step, message: error.message }))
          : Effect.logError(`${step} rejected: ${error.message}`)
      )
    )

  const updateDeferrals = (f: (m: HashMap.HashMap<string, Deferral>) => HashMap.HashMap<string, Deferral>) =>
    Effect.flatMap(Ref.updateAndGet(deferrals, f), (m) => Metric.set(Metrics.deferredRespawns, HashMap.size(m)))

  const cancelDeferred = (taskId: string) =>
    Effect.zipRight(FiberMap.remove(timers, taskId), updateDeferrals(HashMap.remove(taskId)))

  /** Jobs of the task that still run: tracked runs first (the cache may lag), then the cache. */
  const activeJobsOf = (filter: (job: Kube.Job) => boolean, trackedNames: ReadonlyArray<string>) =>
    Effect.map(watch.jobs, (jobs) => {
      const active = new Set(trackedNames)
      for (const job of jobs) {
        if (filter(job) && Kube.jobActive(job) && !Kube.isDeleting(job.metadata)) active.add(job.metadata.name)
      }
      return active
    })

  const runningForTask = (taskId: string) =>
    Effect.flatMap(tracker.all, (runs) =>
      activeJobsOf(
        (job) => Kube.label(job.metadata, names.taskIdLabel) === taskId,
        runs.filter((r) => r.taskId === taskId && !r.settling).map((r) => r.jobName)
      )
    )

  const runningForAssignee = (assignee: string) =>
    Effect.flatMap(tracker.all, (runs) =>
      activeJobsOf(
        (job) => Kube.label(job.metadata, names.assigneeLabel) === assignee,
        runs.filter((r) => r.assignee === assignee && !r.settling).map((r) => r.jobName)
      )
    )

  const rejectSpawn = (event: TaskEvent.TaskEvent, detail: string, consumed: Option.Option<ConsumedOffset>) =>
    Effect.gen(function* () {
      const at = yield* Clock.currentTimeMillis
      const priorAssignee = Frontmatter.assignee(event.frontmatter)
      yield* Effect.logError(`spawn rejected: ${detail}`).pipe(Effect.annotateLogs({ task: event.taskIdentifier }))
      yield* journal.record({
        _tag: "Verdict",
        taskId: event.taskIdentifier,
        jobName: undefined,
        reason: "pod_config_error",
        detail,
        source: "dispatch"
      })
      yield* publish("spawn rejection", [Doctrine.spawnRejected({ taskId: event.taskIdentifier, priorAssignee, detail, at })], consumed)
      yield* count("error")
      return { result: "error", committed: Option.isSome(consumed) } as const
    })

  const spawn = (
    event: TaskEvent.TaskEvent,
    config: AgentConfig.AgentConfig,
    consumed: Option.Option<ConsumedOffset>,
    fromDeferred: boolean
  ) =>
    Effect.gen(function* () {
      const taskId = event.taskIdentifier
      const fm = event.frontmatter
      const name = JobBuilder.jobName({
        assignee: Frontmatter.assignee(fm),
        taskIdentifier: taskId,
        eventIdentity: JobBuilder.eventIdentity(event),
        triggerCount: Frontmatter.triggerCount(fm)
      })
      const skip = (result: Gates.EventResult) => Effect.as(count(result), { result, committed: false } as Handled)
      if (yield* dedupe.seen(name)) {
        // This event's Job was created, judged and deleted before the event was committed (a crash
        // between the create and the commit, then recovery). Publish the spawn's increment that the
        // crash lost, but no spawn notification: that run is over and must not become current again.
        yield* publish("spawn increment", [Doctrine.spawnIncrement(taskId)], consumed)
        yield* count("skipped_active_job")
        return { result: "skipped_active_job", committed: Option.isSome(consumed) } as Handled
      }
      const own = yield* tracker.get(name)
      if (Option.isSome(own) && own.value.spawnPublished) return yield* skip("skipped_active_job")
      const running = yield* runningForTask(taskId)
      // The Job of this very event already runs but its spawn was not published by this process: a
      // redelivery after a crash between the create and the commit. Publish what the crash lost;
      // never create a second Job (D6.1).
      const redo = running.has(name)
      if (running.size > 0 && !redo) return yield* skip("skipped_active_job")
      const now = yield* Clock.currentTimeMillis
      if (!redo) {
        const grace = Gates.graceWindow(event, now)
        if (Option.isSome(grace)) {
          yield* Effect.logInfo("respawn deferred: grace window").pipe(
            Effect.annotateLogs({
              event: "respawn_grace_window",
              task: taskId,
              current_job: Frontmatter.currentJob(fm),
              elapsed: `${Math.floor((now - (grace.value.retryAfter - Time.seconds(Gates.respawnGraceSeconds))) / 1000)}s`
            })
          )
          yield* defer(event, grace.value.retryAfter)
          return yield* skip("respawn_grace_window")
        }
        const cap = config.spec.maxConcurrentJobs
        if (cap > 0) {
          const busy = (yield* runningForAssignee(config.spec.assignee)).size
          const logFields = { task: taskId, assignee: config.spec.assignee, running: busy, cap }
          if (busy >= cap) {
            const retryAfter = now + Time.seconds(concurrencyRetrySeconds)
            yield* Effect.logInfo("spawn deferred: concurrency cap").pipe(
              Effect.annotateLogs({ event: "concurrency_cap", ...logFields, retry_after: Time.formatIso(retryAfter) })
            )
            yield* defer(event, retryAfter)
            return yield* skip("deferred_concurrency_cap")
          }
          yield* Effect.logDebug("spawn admitted").pipe(Effect.annotateLogs({ event: "concurrency_admit", ...logFields }))
        }
      }
      const manifest = JobBuilder.buildJob({ event, config, settings, names, name })
      if (manifest._tag === "Left") return yield* rejectSpawn(event, manifest.left.message, consumed)
      const created = yield* ops.createJob(manifest.right).pipe(
        Effect.map((outcome) => ({ _tag: "Ok", outcome }) as const),
        Effect.catchTag("ClusterError", (error) =>
          error.transient
            ? Effect.fail(new DispatchError({ step: "create job", message: error.message }))
            : Effect.succeed({ _tag: "Rejected", message: error.message } as const)
        )
      )
      if (created._tag === "Rejected") return yield* rejectSpawn(event, created.message, consumed)
      if (created.outcome === "exists" && !redo) {
        // The name exists but does not run: this event spawned it before and it has ended.
        return yield* skip("skipped_active_job")
      }
      yield* publish("spawn", Doctrine.spawnCommands({ taskId, jobName: name, at: now }), consumed)
      if (Option.isSome(own)) {
        yield* tracker.markSpawnPublished(name)
      } else {
        yield* tracker.track({
          taskId,
          jobName: name,
          assignee: config.spec.assignee,
          startedAt: now,
          timeoutSeconds: config.timeoutSeconds,
          attempt: Option.some(Frontmatter.triggerCount(fm) + 1),
          spawnPublished: true
        })
      }
      yield* journal.record({ _tag: "Spawned", taskId, jobName: name })
      yield* Metric.increment(Metrics.jobsSpawned)
      yield* count("spawned")
      if (fromDeferred) {
        yield* count("respawn_after_grace_window")
        yield* Effect.logInfo("respawned after deferral").pipe(
          Effect.annotateLogs({ event: "respawn_after_grace_window", task: taskId, current_job: Frontmatter.currentJob(fm) })
        )
      }
      // Arms the no-pod and pending-signal timers without waiting for the first pod event.
      yield* verdicts.evaluate(name, "job")
      return { result: "spawned", committed: Option.isSome(consumed) } as Handled
    })

  const evaluate = (
    event: TaskEvent.TaskEvent,
    consumed: Option.Option<ConsumedOffset>,
    fromDeferred: boolean
  ): Effect.Effect<Handled, DispatchError> =>
    Effect.gen(function* () {
      const fm = event.frontmatter
      const config = yield* registry.byAssignee(Frontmatter.assignee(fm))
      const decision = Gates.preflight(event, config, settings.branch)
      if (decision.unknownPhase) {
        yield* count("unknown_phase")
        yield* Effect.logWarning("unknown phase").pipe(
          Effect.annotateLogs({ event: "unknown_phase", phase: Option.getOrElse(Frontmatter.phase(fm), () => ""), task: event.taskIdentifier })
        )
      }
      switch (decision._tag) {
        case "Skip": {
          if (decision.result === "spawn_suppressed_terminal_phase") {
            yield* Effect.logInfo("spawn suppressed").pipe(
              Effect.annotateLogs({ event: "spawn_suppressed", phase: Option.getOrElse(Frontmatter.phase(fm), () => ""), task: event.taskIdentifier })
            )
          }
          yield* count(decision.result)
          return { result: decision.result, committed: false }
        }
        case "TypeMismatch": {
          const at = yield* Clock.currentTimeMillis
          const mismatch = {
            taskId: event.taskIdentifier,
            priorAssignee: Frontmatter.assignee(fm),
            taskType: decision.taskType,
            accepted: decision.accepted,
            at
          }
          yield* journal.record({
            _tag: "Verdict",
            taskId: event.taskIdentifier,
            jobName: undefined,
            reason: "type_mismatch",
            detail: Doctrine.typeMismatchDetail(mismatch),
            source: "dispatch"
          })
          yield* publish("type mismatch", [Doctrine.typeMismatchFailure(mismatch)], consumed)
          yield* count("type_mismatch")
          return { result: "type_mismatch", committed: Option.isSome(consumed) }
        }
        case "Proceed":
          return yield* spawnLock.withPermits(1)(spawn(event, decision.config, consumed, fromDeferred))
      }
    })

  /** A deferred respawn re-runs every gate against the newest event of its task (D4.9, REF §8.12). */
  const reevaluate = (taskId: string) =>
    Effect.gen(function* () {
      const pending = HashMap.get(yield* Ref.get(deferrals), taskId)
      yield* updateDeferrals(HashMap.remove(taskId))
      if (Option.isNone(pending)) return
      const { event } = pending.value
      yield* evaluate(event, Option.none(), true).pipe(
        Effect.tapError((error) => Effect.logWarning(`deferred respawn failed, retrying: ${error.message}`)),
        Effect.retry(transientBackoff())
      )
    })

  const defer = (event: TaskEvent.TaskEvent, at: Time.Millis) =>
    Effect.gen(function* () {
      const taskId = event.taskIdentifier
      const now = yield* Clock.currentTimeMillis
      yield* updateDeferrals(HashMap.set(taskId, { at, event }))
      yield* FiberMap.run(
        timers,
        taskId,
        Effect.zipRight(Effect.sleep(Duration.millis(Math.max(0, at - now))), FiberSet.run(work, reevaluate(taskId)))
      )
    })

  const handle = (event: TaskEvent.TaskEvent, consumed: Option.Option<ConsumedOffset>) =>
    Effect.gen(function* () {
      // A newer event supersedes a pending deferral: if it needs one, its own evaluation defers again.
      yield* cancelDeferred(event.taskIdentifier)
      return yield* evaluate(event, consumed, false)
    }).pipe(Effect.withSpan("Dispatcher.handle", { captureStackTrace: false }))

  const deferred = Effect.map(
    Ref.get(deferrals),
    (m): ReadonlyMap<string, Time.Millis> => new Map(Array.from(m, ([taskId, { at }]) => [taskId, at]))
  )

  return { handle, deferred } satisfies DispatcherShape
})

export class Dispatcher extends Context.Tag("executor/Dispatcher")<Dispatcher, DispatcherShape>() {
  static readonly layer = Layer.scoped(Dispatcher, make)
}
