// Process figures from /proc (Linux): RSS and CPU time of a pid, the machine's load average.
import { readFileSync } from "node:fs"
import { loadavg } from "node:os"

const ticksPerSecond = 100 // CLK_TCK on Linux

/** Resident set size in MiB (VmRSS). */
export const rssMiB = (pid: number): number => {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"))
  return Number(line?.split(/\s+/)[1] ?? "0") / 1024
}

/** Peak resident set size in MiB (VmHWM). */
export const peakRssMiB = (pid: number): number => {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmHWM:"))
  return Number(line?.split(/\s+/)[1] ?? "0") / 1024
}

/** User + system CPU seconds of a pid (all its threads). */
export const cpuSeconds = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
  return (Number(fields[11]) + Number(fields[12])) / ticksPerSecond
}

export const load = (): string => loadavg().map((l) => l.toFixed(2)).join(" ")

export interface Sample {
  readonly at: number
  readonly rss: number
  readonly cpu: number
}

/** Samples a pid every `everyMs` until `stop` is called; CPU % of one core per interval. */
export const sampler = (pid: number, everyMs = 1_000) => {
  const samples: Array<Sample> = []
  const take = () => {
    try {
      samples.push({ at: performance.now(), rss: rssMiB(pid), cpu: cpuSeconds(pid) })
    } catch {
      // the process is gone
    }
  }
  take()
  const timer = setInterval(take, everyMs)
  return {
    samples,
    stop: () => {
      clearInterval(timer)
      take()
      return summarise(samples)
    }
  }
}

export interface Summary {
  readonly seconds: number
  readonly rssMin: number
  readonly rssMax: number
  readonly rssLast: number
  readonly cpuAvg: number
  readonly cpuPeak: number
  /** CPU seconds used in the window. */
  readonly cpuSeconds: number
}

/** CPU % of one core: average over the window, peak over 5-sample windows. */
export const summarise = (samples: ReadonlyArray<Sample>): Summary => {
  const first = samples[0]
  const last = samples[samples.length - 1]
  if (first === undefined || last === undefined || samples.length < 2) {
    return { seconds: 0, rssMin: 0, rssMax: 0, rssLast: 0, cpuAvg: 0, cpuPeak: 0, cpuSeconds: 0 }
  }
  const seconds = (last.at - first.at) / 1000
  let cpuPeak = 0
  const w = Math.min(5, samples.length - 1)
  for (let i = w; i < samples.length; i++) {
    const a = samples[i - w]
    const b = samples[i]
    if (a === undefined || b === undefined) continue
    cpuPeak = Math.max(cpuPeak, (100 * (b.cpu - a.cpu)) / ((b.at - a.at) / 1000))
  }
  const rss = samples.map((s) => s.rss)
  return {
    seconds,
    rssMin: Math.min(...rss),
    rssMax: Math.max(...rss),
    rssLast: last.rss,
    cpuAvg: (100 * (last.cpu - first.cpu)) / seconds,
    cpuPeak,
    cpuSeconds: last.cpu - first.cpu
  }
}
