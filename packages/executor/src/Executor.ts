import { Layer } from "effect"
import { AgentRegistry } from "./AgentRegistry.js"
import { Dedupe } from "./Dedupe.js"
import { JobWatcherLive, PodWatcherLive } from "./JobWatcher.js"
import { recover } from "./Recovery.js"
import { RunTracker } from "./RunTracker.js"
import { SweeperLive } from "./Sweeper.js"
import { Verdicts } from "./Verdicts.js"

/** The executor's own state: runs, dedupe, agents, and the verdict pipeline over them. */
export const layerState = Verdicts.layer.pipe(
  Layer.provideMerge(Layer.mergeAll(RunTracker.layer, Dedupe.layer, AgentRegistry.layer))
)

/** Restart recovery, then the detectors: so no detector judges a run before it is rebuilt. */
export const layerDetectors = Layer.mergeAll(JobWatcherLive, PodWatcherLive, SweeperLive).pipe(
  Layer.provide(Layer.effectDiscard(recover))
)

/**
 * Zombie detection on whatever cluster, broker, settings and journal are provided: in-memory for
 * tests and simulations, real in `run`.
 */
export const layerZombieDetection = layerDetectors.pipe(Layer.provideMerge(layerState))
