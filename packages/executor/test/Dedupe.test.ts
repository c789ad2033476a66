import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import { Dedupe } from "@executor/executor"

const hour = 3_600_000

describe("Dedupe", () => {
  it.effect("only the first of many concurrent reservations wins", () =>
    Effect.gen(function* () {
      const dedupe = yield* Dedupe
      const results = yield* Effect.all(
        Array.from({ length: 50 }, () => dedupe.reserve("job-a", hour)),
        { concurrency: "unbounded" }
      )
      expect(results.filter((won) => won)).toHaveLength(1)
    }).pipe(Effect.provide(Dedupe.layer)))

  it.effect("a released reservation can be taken again; a confirmed one cannot", () =>
    Effect.gen(function* () {
      const dedupe = yield* Dedupe
      expect(yield* dedupe.reserve("job-a", hour)).toBe(true)
      yield* dedupe.release("job-a")
      expect(yield* dedupe.reserve("job-a", hour)).toBe(true)
      yield* dedupe.confirm("job-a")
      yield* dedupe.release("job-a")
      expect(yield* dedupe.reserve("job-a", hour)).toBe(false)
    }).pipe(Effect.provide(Dedupe.layer)))

  it.effect("a confirmed key expires exactly at its TTL, counted from the confirmation", () =>
    Effect.gen(function* () {
      const dedupe = yield* Dedupe
      yield* dedupe.reserve("job-a", hour)
      yield* TestClock.adjust("10 minutes")
      yield* dedupe.confirm("job-a")
      yield* TestClock.adjust(hour - 1)
      expect(yield* dedupe.reserve("job-a", hour)).toBe(false)
      yield* TestClock.adjust(1)
      expect(yield* dedupe.reserve("job-a", hour)).toBe(true)
    }).pipe(Effect.provide(Dedupe.layer)))

  it.effect("a reservation whose publish is still being retried never expires", () =>
    Effect.gen(function* () {
      const dedupe = yield* Dedupe
      yield* dedupe.reserve("job-a", hour)
      yield* TestClock.adjust(10 * hour)
      expect(yield* dedupe.reserve("job-a", hour)).toBe(false)
    }).pipe(Effect.provide(Dedupe.layer)))

  it.effect("the TTL is per key (twice a long agent timeout outlives the default hour)", () =>
    Effect.gen(function* () {
      const dedupe = yield* Dedupe
      yield* dedupe.reserve("long", 4 * hour)
      yield* dedupe.confirm("long")
      yield* TestClock.adjust(2 * hour)
      expect(yield* dedupe.reserve("long", 4 * hour)).toBe(false)
    }).pipe(Effect.provide(Dedupe.layer)))

  it.effect("when full, the least recently used confirmed key is evicted first", () =>
    Effect.gen(function* () {
      const dedupe = yield* Dedupe
      for (const key of ["a", "b", "c"]) {
        yield* dedupe.reserve(key, hour)
        yield* dedupe.confirm(key)
      }
      // touching "a" makes "b" the least recently used
      yield* dedupe.confirm("a")
      yield* dedupe.reserve("d", hour)
      expect(yield* dedupe.size).toBe(3)
      expect(yield* dedupe.reserve("a", hour)).toBe(false)
      expect(yield* dedupe.reserve("b", hour)).toBe(true)
    }).pipe(Effect.provide(Dedupe.layerWithCapacity(3))))

  it.effect("reservations in flight are never evicted, even past capacity", () =>
    Effect.gen(function* () {
      const dedupe = yield* Dedupe
      yield* dedupe.reserve("a", hour)
      yield* dedupe.reserve("b", hour)
      yield* dedupe.reserve("c", hour)
      expect(yield* dedupe.reserve("a", hour)).toBe(false)
      expect(yield* dedupe.reserve("b", hour)).toBe(false)
    }).pipe(Effect.provide(Dedupe.layerWithCapacity(2))))
})
