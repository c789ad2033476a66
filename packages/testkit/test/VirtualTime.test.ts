import { describe, expect, it } from "@effect/vitest"
import { Clock, Deferred, Duration, Effect, Exit, Fiber, Ref, Schedule } from "effect"
import * as VirtualTime from "../src/VirtualTime.js"

const start = Date.UTC(2026, 0, 5)

describe("VirtualTime", () => {
  it.effect("timers fire in time order, each with the clock at its due time; equal times in the order they were set", () =>
    VirtualTime.run(start, () =>
      Effect.gen(function* () {
        const fired = yield* Ref.make<ReadonlyArray<readonly [string, number]>>([])
        const at = (name: string, millis: number) =>
          Effect.sleep(Duration.millis(millis)).pipe(
            Effect.zipRight(Clock.currentTimeMillis),
            Effect.flatMap((now) => Ref.update(fired, (all) => [...all, [name, now - start] as const]))
          )
        yield* Effect.all([at("c", 3000), at("a", 1000), at("b1", 2000), at("b2", 2000)], {
          concurrency: "unbounded"
        })
        return yield* Ref.get(fired)
      })).pipe(
        Effect.map((fired) =>
          expect(fired).toEqual([["a", 1000], ["b1", 2000], ["b2", 2000], ["c", 3000]])
        )
      ))

  it.effect("settleAt resumes after every timer due at or before its instant, and after what they started", () =>
    VirtualTime.run(start, (time) =>
      Effect.gen(function* () {
        const log = yield* Ref.make<ReadonlyArray<string>>([])
        const note = (what: string) => Ref.update(log, (all) => [...all, what])
        // set after the settle point is requested, due at the same instant
        const settled = yield* Effect.fork(Effect.zipRight(time.settleAt(start + 60_000), note("settled")))
        yield* Effect.fork(
          Effect.sleep("1 minute").pipe(
            Effect.zipRight(note("timer at 60 s")),
            // work started by that timer, through several scheduler turns
            Effect.zipRight(Effect.repeatN(Effect.yieldNow(), 100)),
            Effect.zipRight(note("its follow-up"))
          )
        )
        yield* Effect.fork(Effect.zipRight(Effect.sleep("61 seconds"), note("timer at 61 s")))
        yield* Fiber.join(settled)
        return { log: yield* Ref.get(log), now: (yield* Clock.currentTimeMillis) - start }
      })).pipe(
        Effect.map(({ log, now }) => {
          expect(log).toEqual(["timer at 60 s", "its follow-up", "settled"])
          expect(now).toBe(60_000)
        })
      ))

  it.effect("a day of a Schedule-driven loop runs in virtual time: 1,440 ticks of one minute", () =>
    VirtualTime.run(start, (time) =>
      Effect.gen(function* () {
        const ticks = yield* Ref.make(0)
        yield* Effect.fork(Effect.repeat(Ref.update(ticks, (n) => n + 1), Schedule.spaced("1 minute")))
        yield* time.settleAt(start + Duration.toMillis("1 day"))
        return yield* Ref.get(ticks)
      })).pipe(Effect.map((ticks) => expect(ticks).toBe(1 + 1440))))

  it.effect("an interrupted sleep never fires: a timeout that won the race leaves nothing behind", () =>
    VirtualTime.run(start, (time) =>
      Effect.gen(function* () {
        const fired = yield* Ref.make(false)
        const result = yield* Effect.sleep("1 hour").pipe(
          Effect.zipRight(Ref.set(fired, true)),
          Effect.timeout("1 minute"),
          Effect.exit
        )
        yield* time.settleAt(start + Duration.toMillis("2 hours"))
        return { timedOut: Exit.isFailure(result), fired: yield* Ref.get(fired) }
      })).pipe(Effect.map((outcome) => expect(outcome).toEqual({ timedOut: true, fired: false }))))

  it.effect("a world that waits for something no fiber will ever do fails with WorldStuck instead of hanging", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(
        VirtualTime.run(start, () =>
          Effect.gen(function* () {
            yield* Effect.sleep("5 seconds")
            const never = yield* Deferred.make<void>()
            yield* Deferred.await(never)
          }))
      )
      expect(exit).toStrictEqual(Exit.fail(new VirtualTime.WorldStuck(start + 5000)))
    }))

  it.effect("the world's failures are the run's failures", () =>
    Effect.gen(function* () {
      const exit = yield* Effect.exit(VirtualTime.run(start, () => Effect.zipRight(Effect.sleep("1 second"), Effect.fail("boom"))))
      expect(exit).toStrictEqual(Exit.fail("boom"))
    }))
})

describe("VirtualTime, interrupted from outside", () => {
  it.live("a world that never settles is interrupted by a wall-clock guard and runs its finalizers", () =>
    Effect.gen(function* () {
      const finalized = yield* Ref.make(false)
      const exit = yield* VirtualTime.run(start, () =>
        Effect.scoped(
          Effect.zipRight(
            Effect.addFinalizer(() => Ref.set(finalized, true)),
            Effect.forever(Effect.yieldNow())
          )
        )).pipe(Effect.timeout("200 millis"), Effect.exit)
      expect(Exit.isFailure(exit)).toBe(true)
      expect(yield* Ref.get(finalized)).toBe(true)
    }))
})
