import { Clock, Duration, Effect, Layer, Metric, Schedule } from "effect"
import { AgentRegistry } from "./AgentRegistry.js"
import * as Metrics from "./Metrics.js"
import { RunTracker } from "./RunTracker.js"
import { Verdicts } from "./Verdicts.js"

/** One sweep: every tracked run is classified again from the caches (never a live API list). */
export const sweepOnce = Effect.gen(function* () {
  yield* RunTracker
  const verdicts = yield* Verdicts
  const started = yield* Clock.currentTimeMillis
  yield* verdicts.evaluateAll("sweeper")
  const ended = yield* Clock.currentTimeMillis
  yield* Metric.update(Metrics.sweeperTickSeconds, (ended - started) / 1000)
})

/**
 * The safety net behind the watchers (decisions D4.7). The interval is read from the current
 * Configs before every tick, so an edited `zombieSweeperIntervalSeconds` applies to the next one.
 */
export const SweeperLive = Layer.scopedDiscard(
  Effect.gen(function* () {
    const registry = yield* AgentRegistry
    const tracker = yield* RunTracker
    const verdicts = yield* Verdicts
    const interval = Effect.map(registry.sweeperIntervalSeconds, (s) => Duration.seconds(s))
    const tick = sweepOnce.pipe(
      Effect.provideService(RunTracker, tracker),
      Effect.provideService(Verdicts, verdicts),
      Effect.catchAllCause((cause) => Effect.logWarning("sweep failed", cause))
    )
    yield* Effect.logInfo(`zombie sweeper started interval=${Duration.format(yield* interval)}`)
    yield* tick.pipe(
      Effect.schedule(Schedule.forever.pipe(Schedule.modifyDelayEffect(() => interval))),
      Effect.forkScoped
    )
  }).pipe(Effect.annotateLogs({ service: "Sweeper" }))
)
