// Detection latency of the failure-mode suite: per mode, the time from the first bad status
// Kubernetes wrote (as the suite's watch saw it) to the failure pair readable in Kafka.
import { appendFileSync, readFileSync } from "node:fs"
import { pathToFileURL } from "node:url"

export interface Sample {
  readonly mode: string
  /** First bad status (watch) to the failure update read from the request topic. */
  readonly ms: number
  /** The grace the verdict had to wait for (ms). */
  readonly graceMs: number
}

const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2
}

const seconds = (ms: number) => (ms / 1000).toFixed(1)

/** A markdown table: per mode the grace, p50 and max of the latency, and of the latency beyond the grace. */
export const latencyTable = (samples: ReadonlyArray<Sample>): string => {
  const modes = [...new Set(samples.map((s) => s.mode))]
  const rows = modes.map((mode) => {
    const mine = samples.filter((s) => s.mode === mode)
    const ms = mine.map((s) => s.ms)
    const beyond = mine.map((s) => s.ms - s.graceMs)
    return `| ${mode} | ${mine.length} | ${seconds(mine[0]?.graceMs ?? 0)} | ${seconds(median(ms))} | ${seconds(Math.max(...ms))} | ${seconds(median(beyond))} | ${seconds(Math.max(...beyond))} |`
  })
  return [
    "| mode | n | grace (s) | p50 (s) | max (s) | p50 beyond the grace (s) | max beyond the grace (s) |",
    "|---|---|---|---|---|---|---|",
    ...rows
  ].join("\n")
}

/** NODE_LATENCY_OUT=<file>: the samples as JSON lines, appended (several runs add up). */
export const saveSamples = (samples: ReadonlyArray<Sample>) => {
  const file = process.env["NODE_LATENCY_OUT"]
  if (file === undefined || file === "" || samples.length === 0) return
  appendFileSync(file, samples.map((s) => `${JSON.stringify(s)}\n`).join(""))
}

/** `npx tsx test/node/latency.ts FILE...`: the table of the samples NODE_LATENCY_OUT wrote. */
const main = (files: ReadonlyArray<string>) => {
  const samples = files.flatMap((file) =>
    readFileSync(file, "utf8").split("\n").filter((line) => line.trim() !== "").map((line) => JSON.parse(line) as Sample))
  console.log(latencyTable(samples))
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) main(process.argv.slice(2))
