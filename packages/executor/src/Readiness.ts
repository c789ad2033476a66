import { Context, Deferred, Effect, Layer, Option } from "effect"

/** `/readiness` turns 200 once the caches synced, the runs were rebuilt and the consumer runs (D4.8). */
export interface ReadinessShape {
  readonly markReady: Effect.Effect<void>
  readonly isReady: Effect.Effect<boolean>
}

export class Readiness extends Context.Tag("executor/Readiness")<Readiness, ReadinessShape>() {
  static readonly layer = Layer.effect(
    Readiness,
    Effect.map(Deferred.make<void>(), (ready) => ({
      markReady: Deferred.succeed(ready, undefined).pipe(Effect.asVoid),
      isReady: Effect.map(Deferred.poll(ready), Option.isSome)
    }))
  )
}
