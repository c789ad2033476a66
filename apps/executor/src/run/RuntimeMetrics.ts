import { monitorEventLoopDelay } from "node:perf_hooks"
import { Context, Effect, Layer, Metric } from "effect"

const residentMemory = Metric.gauge("process_resident_memory_bytes", { description: "Resident memory size in bytes" })
const cpuSeconds = Metric.counter("process_cpu_seconds_total", {
  description: "User and system CPU time spent in seconds"
})
const heapUsed = Metric.gauge("nodejs_heap_used_bytes", { description: "V8 heap in use, in bytes" })
const heapTotal = Metric.gauge("nodejs_heap_total_bytes", { description: "V8 heap reserved, in bytes" })
const external = Metric.gauge("nodejs_external_memory_bytes", {
  description: "Memory of C++ objects bound to JavaScript objects (buffers included), in bytes"
})
const lag = Metric.gauge("nodejs_eventloop_lag_seconds", {
  description: "Event-loop delay since the previous scrape, by quantile (1 is the maximum)"
})

/** Sampling resolution of the event-loop delay monitor: its own libuv timer, in C++, no JavaScript. */
const resolutionMs = 20

export interface RuntimeMetricsShape {
  /** Brings the process gauges up to date; run before every exposition. */
  readonly collect: Effect.Effect<void>
}

/**
 * Memory, CPU and event-loop delay of this process for /metrics, read when scraped: no timer of
 * ours runs between scrapes. The delay histogram starts over after each scrape.
 */
export class RuntimeMetrics extends Context.Tag("executor/app/RuntimeMetrics")<RuntimeMetrics, RuntimeMetricsShape>() {
  static readonly layer = Layer.scoped(
    RuntimeMetrics,
    Effect.gen(function* () {
      const delay = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const histogram = monitorEventLoopDelay({ resolution: resolutionMs })
          histogram.enable()
          return histogram
        }),
        (histogram) => Effect.sync(() => histogram.disable())
      )
      let cpuReported = 0
      const quantile = (q: string) => Metric.tagged(lag, "quantile", q)
      const collect = Effect.gen(function* () {
        const memory = process.memoryUsage()
        const cpu = process.cpuUsage()
        const cpuNow = (cpu.user + cpu.system) / 1e6
        yield* Metric.set(residentMemory, memory.rss)
        yield* Metric.set(heapUsed, memory.heapUsed)
        yield* Metric.set(heapTotal, memory.heapTotal)
        yield* Metric.set(external, memory.external)
        yield* Metric.incrementBy(cpuSeconds, Math.max(0, cpuNow - cpuReported))
        cpuReported = Math.max(cpuReported, cpuNow)
        // Nanoseconds; the monitor's samples include its own resolution, which is not lag.
        const seconds = (ns: number) => Math.max(0, ns / 1e6 - resolutionMs) / 1000
        if (delay.count > 0) {
          yield* Metric.set(quantile("0.5"), seconds(delay.percentile(50)))
          yield* Metric.set(quantile("0.99"), seconds(delay.percentile(99)))
          yield* Metric.set(quantile("1"), seconds(delay.max))
        }
        delay.reset()
      })
      return { collect }
    })
  )
}
