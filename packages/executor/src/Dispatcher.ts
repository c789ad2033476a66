import { Clock, Context, Duration, Effect, FiberMap, FiberSet, HashMap, Layer, Metric, Option, Ref, Schema } from "effect"
import {
  type AgentConfig,
  CommandGroup,
  type Commands,
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
import { CommandPublisher, type PublishError } from "./CommandPublisher.js"
import { ExecutorSettings } from "./ExecutorSettings.js"
import { Journal } from "./Journal.js"
import * as Metrics from "./Metrics.js"
import { transientBackoff } from "./Retry.js"
import { RunTracker } from "./RunTracker.js"
import { type ConsumedOffset, type ConsumeError, TaskEventSource } from "./TaskEventSource.js"
import { Verdicts } from "./Verdicts.js"

/** A transient failure (API or broker): the event is handled again later and its offset not committed. */
export class DispatchError extends Schema.TaggedError<DispatchError>()("DispatchError", {
  step: Schema.String,
  message: Schema.String
}) {}

export interface Handled {
  readonly result: Gates.EventResult
}

export interface DispatcherShape {
  /**
   * Runs the gates of D4.9 on one task event and spawns its run when they all pass. It returns once
   * every command the event caused is in the request topic: only then may its offset be committed.
   */
  readonly handle: (
    event: TaskEvent.TaskEvent,
    consumed: Option.Option<ConsumedOffset>
  ) => Effect.Effect<Handled, DispatchError>
  readonly deferred: Effect.Effect<ReadonlyMap<string, Time.Millis>>
}

export const concurrencyRetrySeconds = 60

/** How soon an event that found only Jobs being settled (their verdicts in flight) is looked at again. */
export const settlingRetry = Duration.seconds(2)

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
  const source = yield* TaskEventSource
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
  // Jobs this process created whose spawn commands are not known to be in the log yet, with where
  // they go: a retry publishes them (reading back first) without creating anything again.
  const unconfirmed = yield* Ref.make(HashMap.empty<string, CommandGroup.Placement>())

  /** A transient failure becomes a `DispatchError` (the event is handled again); an invalid group is logged and dropped. */
  const publishing = (step: string) => (effect: Effect.Effect<void, PublishError | ConsumeError>) =>
    effect.pipe(
      Effect.catchTags({
        PublishError: (error) =>
          error.kind === "unavailable"
            ? Effect.fail(new DispatchError({ step, message: error.message }))
            : Effect.logError(`${step} not sent: ${error.message}`),
        ConsumeError: (error) => Effect.fail(new DispatchError({ step, message: error.message }))
      })
    )

  /**
   * The commands an event causes without a Job (a type mismatch, a rejected spawn). A consumed
   * event's placement is held in the consumer group's offset metadata of the not yet advanced
   * position, so a fresh executor to which the event is delivered again reads the partition back
   * before sending. A deferred event has no position: its placement lives in this process only
   * (a deferral does not survive a restart either).
   */
  const publishForEvent = (
    step: string,
    what: string,
    event: TaskEvent.TaskEvent,
    commands: ReadonlyArray<Commands.Command>,
    consumed: Option.Option<ConsumedOffset>
  ) =>
    Effect.gen(function* () {
      const taskId = event.taskIdentifier
      if (Option.isNone(consumed)) {
        const group = CommandGroup.make(CommandGroup.deferredId(taskId, JobBuilder.eventIdentity(event), what), taskId, commands)
        return yield* publisher.publish(group, yield* publisher.place(group))
      }
      const offset = consumed.value
      const group = CommandGroup.make(CommandGroup.eventId(offset, what), taskId, commands)
      const recorded = Option.filter(
        Option.flatMap(yield* source.recall(offset), CommandGroup.decodePlacement),
        (placement) => placement.group === group.id
      )
      if (Option.isSome(recorded)) return yield* publisher.publish(group, recorded.value, { maybeSent: true })
      const placement = yield* publisher.place(group)
      yield* source.hold(offset, CommandGroup.encodePlacement(placement))
      yield* publisher.publish(group, placement)
    }).pipe(publishing(step))

  const spawnPlacementOf = (job: Kube.Job) =>
    Option.flatMap(Option.fromNullable(job.metadata.annotations?.[names.spawnAnnotation]), CommandGroup.decodePlacement)

  const annotated = (manifest: JobBuilder.JobManifest, placement: CommandGroup.Placement): JobBuilder.JobManifest => ({
    ...manifest,
    metadata: {
      ...manifest.metadata,
      annotations: { ...manifest.metadata.annotations, [names.spawnAnnotation]: CommandGroup.encodePlacement(placement) }
    }
  })

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
      yield* publishForEvent(
        "spawn rejection",
        "spawn-rejected",
        event,
        [Doctrine.spawnRejected({ taskId: event.taskIdentifier, priorAssignee, detail, at })],
        consumed
      )
      yield* count("error")
      return { result: "error" } as const
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
      const skip = (result: Gates.EventResult) => Effect.as(count(result), { result } as Handled)
      // This event's Job was judged here (after a crash between the create and the commit, then
      // recovery, which settled its spawn commands first): nothing is left to publish.
      if (yield* dedupe.seen(name)) return yield* skip("skipped_active_job")
      const own = yield* tracker.get(name)
      if (Option.isSome(own) && own.value.spawnPublished) return yield* skip("skipped_active_job")
      const pending = HashMap.get(yield* Ref.get(unconfirmed), name)
      const running = yield* runningForTask(taskId)
      // The Job of this very event already runs but this process has not published its spawn: a
      // redelivery after a crash between the create and the commit, or a retry after a failed
      // publish. Publish what is not in the log yet; never create a second Job (D6.1).
      const redo = running.has(name) || Option.isSome(pending)
      const now = yield* Clock.currentTimeMillis
      if (running.size > 0 && !redo) {
        // The only Jobs left are zombies whose verdict is being published (the controller may apply
        // the failure before the Job is gone, e.g. while an unanswered send is read back): look
        // again once they are, or this event, the last one the task gets, would strand it.
        const settling = new Set((yield* tracker.all).filter((r) => r.taskId === taskId && r.settling).map((r) => r.jobName))
        if ([...running].every((job) => settling.has(job))) yield* defer(event, now + Duration.toMillis(settlingRetry))
        return yield* skip("skipped_active_job")
      }
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
      const group = CommandGroup.make(CommandGroup.spawnId(name), taskId, Doctrine.spawnCommands({ taskId, jobName: name, at: now }))
      const recorded = Option.isSome(pending)
        ? pending
        : redo
          ? Option.flatMap(yield* watch.job(name), spawnPlacementOf)
          : Option.none()
      let placement: CommandGroup.Placement
      let maybeSent = Option.isSome(recorded)
      if (Option.isSome(recorded)) {
        placement = recorded.value
      } else {
        const manifest = JobBuilder.buildJob({ event, config, settings, names, name })
        if (manifest._tag === "Left") return yield* rejectSpawn(event, manifest.left.message, consumed)
        // where the spawn commands go is written on the Job itself, before they are sent
        const placing = yield* publisher.place(group).pipe(
          Effect.map(Option.some),
          Effect.catchTag("PublishError", (error) =>
            error.kind === "unavailable"
              ? Effect.fail(new DispatchError({ step: "place spawn", message: error.message }))
              : Effect.succeedNone
          )
        )
        if (Option.isNone(placing)) return yield* skip("error")
        const placed = placing.value
        const created = yield* ops.createJob(annotated(manifest.right, placed)).pipe(
          Effect.map((outcome) => ({ _tag: "Ok", outcome }) as const),
          Effect.catchTag("ClusterError", (error) =>
            error.transient
              ? Effect.fail(new DispatchError({ step: "create job", message: error.message }))
              : Effect.succeed({ _tag: "Rejected", message: error.message } as const)
          )
        )
        if (created._tag === "Rejected") return yield* rejectSpawn(event, created.message, consumed)
        placement = placed
        if (created.outcome === "exists") {
          const live = yield* watch.readJob(name).pipe(
            Effect.mapError((error) => new DispatchError({ step: "read job", message: error.message }))
          )
          const running = Option.exists(live, (job) => Kube.jobActive(job) && !Kube.isDeleting(job.metadata))
          // The name exists but does not run: this event spawned it before and it has ended (its
          // spawn was settled by whoever created it, or by recovery).
          if (!redo && !running) return yield* skip("skipped_active_job")
          const earlier = Option.flatMap(live, spawnPlacementOf)
          // a Job of an executor version without placements: send what a crash may have lost
          maybeSent = Option.isSome(earlier)
          placement = Option.getOrElse(earlier, () => placed)
        }
        yield* Ref.update(unconfirmed, HashMap.set(name, placement))
      }
      yield* publisher.publish(group, placement, { maybeSent }).pipe(publishing("spawn"))
      yield* Ref.update(unconfirmed, HashMap.remove(name))
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
      return { result: "spawned" } as Handled
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
          return { result: decision.result }
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
          yield* publishForEvent("type mismatch", "type-mismatch", event, [Doctrine.typeMismatchFailure(mismatch)], consumed)
          yield* count("type_mismatch")
          return { result: "type_mismatch" }
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
