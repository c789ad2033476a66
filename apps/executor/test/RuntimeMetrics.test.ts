import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Prometheus from "../src/run/Prometheus.js"
import { RuntimeMetrics } from "../src/run/RuntimeMetrics.js"

const value = (body: string, series: string): number => {
  const line = body.split("\n").find((l) => l.startsWith(`${series} `))
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1))
}

/** Holds the event loop, as a long synchronous step of a handler would. */
const block = (ms: number) =>
  Effect.sync(() => {
    const until = performance.now() + ms
    while (performance.now() < until) {
      // busy
    }
  })

describe("RuntimeMetrics", () => {
  // real time: the event-loop delay monitor samples the real loop
  it.live("exposes resident memory, heap, CPU time and the event-loop delay of the last interval", () =>
    Effect.gen(function* () {
      const runtime = yield* RuntimeMetrics
      yield* Effect.sleep("50 millis")
      yield* block(150)
      yield* Effect.sleep("50 millis")
      yield* runtime.collect
      const body = yield* Prometheus.render
      expect(value(body, "process_resident_memory_bytes")).toBeGreaterThan(10 * 1024 * 1024)
      expect(value(body, "nodejs_heap_used_bytes")).toBeGreaterThan(1024 * 1024)
      expect(value(body, "process_cpu_seconds_total")).toBeGreaterThan(0.1)
      const blocked = value(body, 'nodejs_eventloop_lag_seconds{quantile="1"}')
      expect(blocked).toBeGreaterThan(0.1)
      expect(body).toContain("# TYPE nodejs_eventloop_lag_seconds gauge")

      // the next interval starts over: a quiet loop shows a small delay
      yield* Effect.sleep("200 millis")
      yield* runtime.collect
      expect(value(yield* Prometheus.render, 'nodejs_eventloop_lag_seconds{quantile="1"}')).toBeLessThan(blocked)
    }).pipe(Effect.provide(RuntimeMetrics.layer)))
})
