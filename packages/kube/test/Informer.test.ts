import { describe, expect, it } from "@effect/vitest"
import { Informer } from "@executor/kube"
import { Duration, Effect, Schedule } from "effect"

const failure = (healthyMs: number) =>
  new Informer.InformerFailure({ kind: "Job", message: "connect ECONNREFUSED", status: undefined, healthyFor: Duration.millis(healthyMs) })

describe("Informer.restartSchedule", () => {
  it.effect("backs off exponentially up to the cap, jittered, and starts over after a healthy session", () =>
    Effect.gen(function*() {
      const schedule = Informer.restartSchedule({ base: "100 millis", cap: "1 second", healthyAfter: "1 minute" })
      const inputs = [0, 0, 0, 0, 0, 0, 0, 120_000, 0].map(failure)
      const delays = [...(yield* Schedule.run(Schedule.delays(schedule), 0, inputs))].map(Duration.toMillis)
      const expected = [100, 200, 400, 800, 1000, 1000, 1000, 100, 200]
      expect(delays).toHaveLength(expected.length)
      delays.forEach((delay, i) => {
        expect(delay, `retry ${i + 1}`).toBeGreaterThanOrEqual(expected[i]! * 0.8)
        expect(delay, `retry ${i + 1}`).toBeLessThanOrEqual(expected[i]! * 1.2)
      })
    }))
})
