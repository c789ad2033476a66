import { Effect, Layer, Metric, Option, Stream } from "effect"
import { Kube } from "@executor/domain"
import { ClusterWatch } from "./ClusterWatch.js"
import { ExecutorSettings } from "./ExecutorSettings.js"
import * as Metrics from "./Metrics.js"
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
