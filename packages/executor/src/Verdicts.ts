import { Clock, Context, Duration, Effect, Either, FiberMap, FiberSet, Layer, Metric, Option, Schema } from "effect"
import { Classifier, CommandGroup, Doctrine, Kube, Time, ZombieReason } from "@executor/domain"
import { AgentRegistry } from "./AgentRegistry.js"
import { type ClusterError, ClusterOps } from "./ClusterOps.js"
import { ClusterWatch } from "./ClusterWatch.js"
import { CommandPublisher, type PublishError } from "./CommandPublisher.js"
import { Dedupe } from "./Dedupe.js"
import { ExecutorSettings } from "./ExecutorSettings.js"
import { Journal, type VerdictSource } from "./Journal.js"
import * as Metrics from "./Metrics.js"
import { transientBackoff } from "./Retry.js"
import { RunTracker, type TrackedRun } from "./RunTracker.js"

/**
 * The durable verdict mark written on the Job before publishing (decisions D6.2), and then again
 * with the placement of its failure pair (`publish`) before the pair is sent: a fresh executor
 * that finds `publish` reads the partition back; one that finds none knows nothing was sent.
 */
export const VerdictMark = Schema.Struct({
  reason: ZombieReason,
  detail: Schema.String,
  at: Schema.String,
  source: Schema.Literal("pod", "job", "sweeper", "recovery", "dispatch"),
  publish: Schema.optional(CommandGroup.Placement)
})
export type VerdictMark = typeof VerdictMark.Type
export const decodeVerdictMark = Schema.decodeUnknownOption(Schema.parseJson(VerdictMark))
const encodeVerdictMark = Schema.encodeSync(Schema.parseJson(VerdictMark))

/** The failure pair of a verdict: one group per Job and mark. */
export const failureGroup = (run: Pick<TrackedRun, "taskId" | "jobName">, mark: VerdictMark): CommandGroup.CommandGroup =>
  CommandGroup.make(
    CommandGroup.verdictId(run.jobName, mark.at),
    run.taskId,
    Doctrine.zombieFailure({
      taskId: run.taskId,
      jobName: run.jobName,
      reason: mark.reason,
      detail: mark.detail,
      at: Option.getOrElse(Time.parseTimestamp(mark.at), () => 0)
    })
  )

export interface VerdictsShape {
  /** Classifies a tracked run from the caches and acts on the judgement; a no-op for other Jobs. */
  readonly evaluate: (jobName: string, source: VerdictSource) => Effect.Effect<void>
  /**
   * Finishes a verdict already marked on a Job by an earlier executor that stopped before deleting
   * it: publishes its failure pair unless `published` (recovery found it in the log), then the
   * clean-up.
   */
  readonly resume: (run: TrackedRun, mark: VerdictMark, published: boolean) => Effect.Effect<void>
  /**
   * Waits (at most `timeout`) until every verdict in progress has been published and cleaned up:
   * the graceful part of a SIGTERM. Killing the executor without it loses nothing durable.
   */
  readonly drain: (timeout: Duration.DurationInput) => Effect.Effect<void>
}

const isTransient = (error: { readonly _tag: string }): boolean =>
  error._tag !== "ClusterError" || (error as ClusterError).transient

/** How long the verdict mark waits for its placement before it is written alone (then completed). */
const markWait = Duration.seconds(2)

/** How soon a verdict the API server could not confirm is looked at again. */
const confirmRetry = Duration.seconds(2)

const dedupeTtlMillis = (timeoutSeconds: number) => Duration.toMillis(Duration.seconds(Math.max(3600, 2 * timeoutSeconds)))

const make = Effect.gen(function* () {
  const watch = yield* ClusterWatch
  const ops = yield* ClusterOps
  const publisher = yield* CommandPublisher
  const registry = yield* AgentRegistry
  const tracker = yield* RunTracker
  const dedupe = yield* Dedupe
  const journal = yield* Journal
  const { names } = yield* ExecutorSettings
  const rechecks = yield* FiberMap.make<string>()
  const pipelines = yield* FiberSet.make()

  const ignoreNotFound = <E extends { readonly _tag: string }>(effect: Effect.Effect<void, E>) =>
    Effect.catchIf(effect, (e) => e._tag === "NotFound", () => Effect.void)

  /**
   * API calls of the verdict pipeline. A transient error (API down, 5xx, 429) is retried for as
   * long as this executor lives: the mark must precede the publish, and the Job must go so that
   * the retry can start. A permanent error is logged and the pipeline goes on.
   */
  const cleanUpStep = <E extends { readonly _tag: string; readonly message: string }>(
    step: string,
    jobName: string,
    effect: Effect.Effect<void, E>
  ) =>
    ignoreNotFound(effect).pipe(
      Effect.tapError((error) =>
        Effect.logWarning(`verdict ${step} failed`).pipe(Effect.annotateLogs({ job: jobName, error: error.message }))
      ),
      Effect.retry({ schedule: transientBackoff(), while: isTransient }),
      Effect.catchAll((error) =>
        Effect.logError(`verdict ${step} failed for good`).pipe(Effect.annotateLogs({ job: jobName, error: error.message }))
      )
    )

  const retryingPublish = <A>(run: TrackedRun, what: string, effect: Effect.Effect<A, PublishError>) =>
    effect.pipe(
      Effect.tapError((error) =>
        Effect.zipRight(
          Metric.increment(Metrics.publishRetries),
          Effect.logWarning(`zombie failure ${what} failed; retrying`).pipe(
            Effect.annotateLogs({ job: run.jobName, error: error.message })
          )
        )
      ),
      // A broker outage never loses a verdict: retry for as long as this executor lives.
      Effect.retry({ schedule: transientBackoff(), while: (error) => error.kind === "unavailable" })
    )

  /**
   * Where the failure pair goes, written on the Job with the mark before anything is sent. The mark
   * itself never waits for the broker: when the broker does not answer, the mark goes first and the
   * placement follows once it does.
   */
  const markAndPlace = (run: TrackedRun, mark: VerdictMark, group: CommandGroup.CommandGroup) =>
    Effect.gen(function* () {
      const write = (value: VerdictMark) =>
        cleanUpStep("mark", run.jobName, ops.annotateJob(run.jobName, names.verdictAnnotation, encodeVerdictMark(value)))
      const first = yield* Effect.either(
        publisher.place(group).pipe(Effect.timeoutFail({ duration: markWait, onTimeout: () => "broker slow" as const }))
      )
      if (Either.isRight(first)) {
        yield* write({ ...mark, publish: first.right })
        return first.right
      }
      yield* write(mark)
      const placement = yield* retryingPublish(run, "placement", publisher.place(group))
      yield* write({ ...mark, publish: placement })
      return placement
    })

  const publishFailure = (run: TrackedRun, group: CommandGroup.CommandGroup, placement: CommandGroup.Placement) =>
    retryingPublish(run, "publish", publisher.publish(group, placement)).pipe(
      Effect.catchAll((error) =>
        Effect.logError("zombie failure rejected").pipe(Effect.annotateLogs({ job: run.jobName, error: error.message }))
      )
    )

  const placeAndPublish = (run: TrackedRun, mark: VerdictMark) =>
    Effect.gen(function* () {
      const group = failureGroup(run, mark)
      const placement = yield* markAndPlace(run, mark, group)
      yield* publishFailure(run, group, placement)
    }).pipe(
      Effect.catchAll((error) =>
        Effect.logError("zombie failure rejected").pipe(Effect.annotateLogs({ job: run.jobName, error: error.message }))
      )
    )

  /**
   * Publish (unless the pair is known to be in the log already), record the Event, delete the Job,
   * release the finalizer: D6.2 from the publish on.
   */
  const finish = (run: TrackedRun, mark: VerdictMark, since: number, publish: Effect.Effect<void> | "published") =>
    Effect.gen(function* () {
      if (publish !== "published") {
        yield* publish
        const published = yield* Clock.currentTimeMillis
        yield* Metric.increment(
          Metric.tagged(Metric.tagged(Metrics.verdicts, "reason", mark.reason), "source", mark.source)
        )
        yield* Metric.update(
          Metric.tagged(Metrics.detectionLatency, "reason", mark.reason),
          Math.max(0, published - since) / 1000
        )
      }
      yield* dedupe.confirm(run.jobName)
      const job = yield* watch.job(run.jobName)
      yield* cleanUpStep(
        "event",
        run.jobName,
        ops.recordJobEvent({
          jobName: run.jobName,
          jobUid: Option.getOrUndefined(Option.flatMap(job, (j) => Option.fromNullable(j.metadata.uid))),
          reason: "ZombieDetected",
          message: `${mark.reason}: ${mark.detail}`,
          type: "Warning"
        })
      )
      yield* cleanUpStep("delete", run.jobName, ops.deleteJob(run.jobName))
      yield* cleanUpStep("finalizer", run.jobName, ops.removeJobFinalizer(run.jobName, names.finalizer))
      yield* tracker.remove(run.jobName)
      yield* FiberMap.remove(rechecks, run.jobName)
    })

  const convict = (run: TrackedRun, verdict: Extract<Classifier.Judgement, { _tag: "Zombie" }>, source: VerdictSource) =>
    Effect.gen(function* () {
      const reserved = yield* dedupe.reserve(run.jobName, dedupeTtlMillis(run.timeoutSeconds))
      if (!reserved || !(yield* tracker.beginSettling(run.jobName))) {
        yield* Metric.increment(Metrics.dedupeHits)
        return yield* Effect.logDebug("verdict already taken").pipe(
          Effect.annotateLogs({ event: "zombie_dedupe", job: run.jobName, task: run.taskId })
        )
      }
      yield* journal.record({
        _tag: "Verdict",
        taskId: run.taskId,
        jobName: run.jobName,
        reason: verdict.reason,
        detail: verdict.detail,
        source
      })
      const now = yield* Clock.currentTimeMillis
      const mark: VerdictMark = {
        reason: verdict.reason,
        detail: verdict.detail,
        at: Time.formatIso(now),
        source
      }
      // The pipeline runs apart from the detector, so a broker outage never stalls a watcher.
      yield* FiberSet.run(
        pipelines,
        finish(run, mark, verdict.since, placeAndPublish(run, mark)).pipe(Effect.onInterrupt(() => dedupe.release(run.jobName)))
      )
    })

  const succeed = (run: TrackedRun) =>
    Effect.gen(function* () {
      if (!(yield* tracker.beginSettling(run.jobName))) return
      yield* cleanUpStep("finalizer", run.jobName, ops.removeJobFinalizer(run.jobName, names.finalizer))
      yield* tracker.remove(run.jobName)
      yield* FiberMap.remove(rechecks, run.jobName)
    })

  /** The run's Job, pods and the Events that may be about them, as the caches hold them. */
  const cachedView = (run: TrackedRun) =>
    Effect.all({ job: watch.job(run.jobName), pods: watch.podsOfJob(run.jobName), events: watch.evictions })

  /**
   * The same as the API server has them now, with the job controller's `FailedCreate` Events of
   * the Job (no informer holds those; they matter only for the detail of a verdict).
   */
  const liveView = (run: TrackedRun) =>
    Effect.all(
      {
        job: watch.readJob(run.jobName),
        pods: watch.readPodsOfJob(run.jobName, run.taskId),
        events: Effect.map(
          Effect.all([watch.readEvents(Kube.podEvictionSelector), watch.readEvents(Kube.jobCreateFailureSelector(run.jobName))], {
            concurrency: "unbounded"
          }),
          (lists) => lists.flat()
        )
      },
      { concurrency: "unbounded" }
    )

  const judge = (run: TrackedRun, seen: Effect.Effect.Success<ReturnType<typeof cachedView>>) =>
    Effect.gen(function* () {
      const graces = yield* registry.graces(run.assignee, run.timeoutSeconds)
      const interval = yield* registry.sweeperIntervalSeconds
      const now = yield* Clock.currentTimeMillis
      const classified = Classifier.classify({
        run,
        job: seen.job,
        pods: seen.pods,
        events: seen.events,
        graces,
        sweeperIntervalSeconds: interval,
        now,
        firstSeen: run.firstSeen
      })
      return { ...classified, now }
    })

  /** Looks at a run again after `wait` (a grace running out, an API server that could not answer). */
  const recheck = (jobName: string, wait: Duration.Duration, source: VerdictSource) =>
    FiberMap.run(rechecks, jobName, Effect.zipRight(Effect.sleep(wait), FiberSet.run(pipelines, evaluate(jobName, source))))

  /**
   * A verdict is final, and so is a success, and the caches may lag (an event still on its way, a
   * watch reconnecting, a Job not seen yet, which looks deleted, an `Evicted` Event behind the
   * Job's `Complete`), so both are made on what the API server says now. None: it could not
   * answer; look again shortly.
   */
  const confirm = (run: TrackedRun, source: VerdictSource) =>
    Effect.gen(function* () {
      const live = yield* Effect.either(liveView(run))
      if (Either.isRight(live)) return Option.some(yield* judge(run, live.right))
      yield* Effect.logWarning("could not confirm a judgement with the API server; looking again shortly").pipe(
        Effect.annotateLogs({ event: "verdict_unconfirmed", job: run.jobName, error: live.left.message })
      )
      yield* recheck(run.jobName, confirmRetry, source)
      return Option.none()
    })

  const evaluate = (jobName: string, source: VerdictSource): Effect.Effect<void> =>
    Effect.gen(function* () {
      const tracked = yield* tracker.get(jobName)
      if (Option.isNone(tracked) || tracked.value.settling) return
      const run = tracked.value
      const fromCache = yield* judge(run, yield* cachedView(run))
      const final = fromCache.judgement._tag === "Zombie" || fromCache.judgement._tag === "Succeeded"
      const judged = final ? yield* confirm(run, source) : Option.some(fromCache)
      if (Option.isNone(judged)) return
      const { firstSeen, judgement, now } = judged.value
      yield* tracker.observe(jobName, firstSeen)
      switch (judgement._tag) {
        case "Zombie":
          return yield* convict(run, judgement, source)
        case "Succeeded":
          return yield* succeed(run)
        case "Suspect": {
          // Look again exactly when the grace runs out, whatever the sweeper interval is.
          const recheckSource: VerdictSource = judgement.reason === "job_pod_create_failed" ? "job" : "pod"
          return yield* recheck(jobName, Duration.millis(Math.max(0, judgement.dueAt - now)), recheckSource)
        }
        case "Healthy":
          return yield* FiberMap.remove(rechecks, jobName)
      }
    }).pipe(
      // the hottest span (every watch event, every sweep): its name says where it comes from, so a
      // captured call stack would add only cost
      Effect.withSpan("Verdicts.evaluate", { attributes: { job: jobName, source }, captureStackTrace: false })
    )

  const resume = (run: TrackedRun, mark: VerdictMark, published: boolean) =>
    Effect.gen(function* () {
      yield* dedupe.reserve(run.jobName, dedupeTtlMillis(run.timeoutSeconds))
      if (!(yield* tracker.beginSettling(run.jobName))) return
      const since = yield* Clock.currentTimeMillis
      const placement = mark.publish
      const publish = published
        ? "published"
        : placement === undefined
          ? placeAndPublish(run, mark)
          : publishFailure(run, failureGroup(run, mark), placement)
      yield* FiberSet.run(pipelines, finish(run, mark, since, publish))
    })

  const drain = (timeout: Duration.DurationInput) =>
    FiberSet.awaitEmpty(pipelines).pipe(Effect.interruptible, Effect.timeout(timeout), Effect.ignore)

  return { evaluate, resume, drain } satisfies VerdictsShape
})

export class Verdicts extends Context.Tag("executor/Verdicts")<Verdicts, VerdictsShape>() {
  static readonly layer = Layer.scoped(Verdicts, make)
}
