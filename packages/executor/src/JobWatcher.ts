import { Effect, Layer, Metric, Option, Stream } from "effect"
import { Kube } from "@executor/domain"
import { ClusterWatch } from "./ClusterWatch.js"
import { ExecutorSettings } from "./ExecutorSettings.js"
import * as Metrics from "./Metrics.js"
import { RunTracker } from "./RunTracker.js"
import { Verdicts } from "./Verdicts.js"

/**
 * Follows Job changes. Only the Job a run is tracked under can touch that run: an older Job of the
 * same task (kept for its TTL, re-delivered on resync) never does (decisions D4.1, REF §8.2).
 */
export const JobWatcherLive = Layer.scopedDiscard(
  Effect.gen(function* () {
    const watch = yield* ClusterWatch
    const verdicts = yield* Verdicts
    const { names } = yield* ExecutorSettings
    const skipped = Metric.tagged(Metrics.skippedObjects, "kind", "job")

    yield* watch.jobEvents.pipe(
      Stream.runForEach((event) => {
        if (event._tag === "Synced") return Effect.void
        if (Kube.label(event.object.metadata, names.taskIdLabel) === "") return Metric.increment(skipped)
        return verdicts.evaluate(event.object.metadata.name, "job")
      }),
      Effect.catchAllCause((cause) => Effect.logError("job watch ended", cause)),
      Effect.forkScoped
    )
  }).pipe(Effect.annotateLogs({ service: "JobWatcher" }))
)

/** Pod changes, routed to the run of the pod's owner Job. */
export const PodWatcherLive = Layer.scopedDiscard(
  Effect.gen(function* () {
    const watch = yield* ClusterWatch
    const verdicts = yield* Verdicts
    const { names } = yield* ExecutorSettings
    const skipped = Metric.tagged(Metrics.skippedObjects, "kind", "pod")

    yield* watch.podEvents.pipe(
      Stream.runForEach((event) => {
        if (event._tag === "Synced") return Effect.void
        const pod = event.object
        const owner = Kube.ownerJobName(pod)
        if (Kube.label(pod.metadata, names.taskIdLabel) === "" || Option.isNone(owner)) {
          return Metric.increment(skipped)
        }
        return verdicts.evaluate(owner.value, "pod")
      }),
      Effect.catchAllCause((cause) => Effect.logError("pod watch ended", cause)),
      Effect.forkScoped
    )
  }).pipe(Effect.annotateLogs({ service: "PodWatcher" }))
)

/**
 * The kubelet's `Evicted` Events, routed to the run whose Job the pod belongs to (by its
 * generated name or the cached pods, so an Event about a pod already gone still finds it). An
 * eviction is judged when the kubelet announces it, before the pod ends: whether it then ends
 * `Failed` or `Succeeded` depends only on how its process answers SIGTERM.
 */
export const EvictionWatcherLive = Layer.scopedDiscard(
  Effect.gen(function* () {
    const watch = yield* ClusterWatch
    const verdicts = yield* Verdicts
    const tracker = yield* RunTracker

    const ownsPod = (jobName: string, podName: string) =>
      Kube.isPodNameOfJob(podName, jobName)
        ? Effect.succeed(true)
        : Effect.map(watch.podsOfJob(jobName), (pods) => pods.some((pod) => pod.metadata.name === podName))

    yield* watch.evictionEvents.pipe(
      Stream.runForEach((event) => {
        if (event._tag !== "Upsert") return Effect.void
        const podName = event.object.involvedObject.name ?? ""
        return Effect.flatMap(tracker.all, (runs) =>
          Effect.forEach(
            runs,
            (run) => Effect.flatMap(ownsPod(run.jobName, podName), (owns) => (owns ? verdicts.evaluate(run.jobName, "pod") : Effect.void)),
            { discard: true }
          )
        )
      }),
      Effect.catchAllCause((cause) => Effect.logError("eviction watch ended", cause)),
      Effect.forkScoped
    )
  }).pipe(Effect.annotateLogs({ service: "EvictionWatcher" }))
)
