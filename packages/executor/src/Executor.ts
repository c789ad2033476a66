import { Layer } from "effect"
import { AgentRegistry } from "./AgentRegistry.js"
import { ConsumerLive } from "./Consumer.js"
import { Dispatcher } from "./Dispatcher.js"
import { Dedupe } from "./Dedupe.js"
import { EvictionWatcherLive, JobWatcherLive, PodWatcherLive } from "./JobWatcher.js"
import { Readiness } from "./Readiness.js"
import { recover } from "./Recovery.js"
import { RunTracker } from "./RunTracker.js"
import { SweeperLive } from "./Sweeper.js"
import { Verdicts } from "./Verdicts.js"

/** The executor's own state: runs, dedupe, agents, and the verdict pipeline over them. */
export const layerState = Verdicts.layer.pipe(
  Layer.provideMerge(Layer.mergeAll(RunTracker.layer, Dedupe.layer, AgentRegistry.layer, Readiness.layer))
)

/** Restart recovery, then the detectors: so no detector judges a run before it is rebuilt. */
export const layerDetectors = Layer.mergeAll(JobWatcherLive, PodWatcherLive, EvictionWatcherLive, SweeperLive).pipe(
  Layer.provide(Layer.effectDiscard(recover))
)

/**
 * Zombie detection on whatever cluster, broker, settings and journal are provided: in-memory for
 * tests and simulations, real in `run`.
 */
export const layerZombieDetection = layerDetectors.pipe(Layer.provideMerge(layerState))

/**
 * The whole executor: recovery, detectors, then dispatch. The consumer starts only after the
 * caches synced and the runs were rebuilt (D4.8), so no early event is judged on an empty registry.
 */
export const layerExecutor = ConsumerLive.pipe(
  Layer.provideMerge(Dispatcher.layer),
  Layer.provide(layerDetectors),
  Layer.provideMerge(layerState)
)
