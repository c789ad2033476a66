#!/usr/bin/env node
// `pnpm bench`: every benchmark of scripts/bench/ in one run against one test stack, each figure
// beside its floor measured in the same run; the results replace the generated part of
// docs/benchmarks.md (between the `bench:results` markers). Never part of `pnpm test`.
//
//   pnpm bench [--only sweep,informer,detect,dispatch,simulate,load,soak,modules]
//              [--soak-minutes 5]   the soak's length (120 for the full one)
//              [--objects 10000]    Jobs and pods of the informer benchmark
//              [--fake-informer]    informer lists from memory (seconds, not minutes)
//              [--before DIR]       the load benchmark also runs DIR's build (a checkout before a change)
//              [--no-write]         print the Markdown, leave docs/benchmarks.md alone
// INFRA_RUN_DIR reuses a stack started by test/infra/up.sh; else one is started on free ports and
// stopped at the end. Builds first (scripts/build.mjs --if-stale).
import { execFileSync, spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { cpus, loadavg, tmpdir, totalmem } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { bundle } from "./bundle.mjs"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..")
const args = process.argv.slice(2)
const option = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined)
const only = option("--only")?.split(",")
const wanted = (name) => only === undefined || only.includes(name)
const log = (s) => process.stderr.write(`[bench] ${s}\n`)

execFileSync(process.execPath, [join(root, "scripts/build.mjs"), "--if-stale"], { stdio: "inherit" })

const freePort = () =>
  new Promise((r) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address()
      server.close(() => r(port))
    })
  })

let stackDir = process.env["INFRA_RUN_DIR"]
let ownStack = false
const needsStack = ["informer", "detect", "load", "soak"].some(wanted)
if (stackDir === undefined && needsStack) {
  stackDir = mkdtempSync(join(tmpdir(), "bench-"))
  const env = {}
  for (const name of ["ETCD_PORT", "ETCD_PEER_PORT", "KUBE_APISERVER_PORT", "KAFKA_PORT", "KAFKA_CONTROLLER_PORT"]) env[name] = String(await freePort())
  log(`starting the test stack in ${stackDir}`)
  execFileSync("bash", [join(root, "test/infra/up.sh"), stackDir], { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "inherit"] })
  ownStack = true
}

const results = []
const runBench = async (name, entry, benchArgs, nodeArgs = []) => {
  if (!wanted(name)) return
  log(`${name}: ${benchArgs.join(" ")}`)
  const file = entry.endsWith(".ts") ? await bundle(root, entry) : join(root, entry)
  const started = performance.now()
  const r = spawnSync(process.execPath, [...nodeArgs, file, ...benchArgs], {
    cwd: root,
    env: { ...process.env, ...(stackDir === undefined ? {} : { INFRA_RUN_DIR: stackDir }) },
    stdio: ["ignore", "pipe", "inherit"],
    maxBuffer: 64 * 1024 * 1024
  })
  const lines = r.stdout.toString().split("\n").filter((l) => l.startsWith("{"))
  for (const l of lines) results.push(JSON.parse(l))
  log(`${name}: ${lines.length} results in ${((performance.now() - started) / 1000).toFixed(0)} s${r.status === 0 ? "" : `, exit ${r.status}`}`)
}

const startLoad = loadavg()
try {
  await runBench("sweep", "scripts/bench/sweep.ts", ["--runs", "1000,10000,100000", "--ticks", "5"], ["--max-old-space-size=8192"])
  await runBench("informer", "scripts/bench/informer.ts", ["--objects", option("--objects") ?? "10000", ...(args.includes("--fake-informer") ? ["--fake"] : [])])
  await runBench("detect", "scripts/bench/detect.ts", ["--runs", "1000", "--samples", "30"])
  await runBench("dispatch", "scripts/bench/dispatch.ts", ["--events", "1000"])
  if (wanted("simulate")) {
    log("simulate: scripts/bench-simulate.ts through the build")
    const started = performance.now()
    const r = spawnSync(process.execPath, ["--import", "tsx", join(root, "scripts/bench-simulate.ts")], { cwd: root, stdio: ["ignore", "pipe", "inherit"] })
    const out = r.stdout.toString()
    const wall = /wall time\s+([\d.]+) s/.exec(out)?.[1]
    const rss = /peak RSS\s+(\d+) MB/.exec(out)?.[1]
    const invariants = /invariants\s+(.*?)\s{3}/.exec(out)?.[1]
    results.push({ bench: "simulate", wallSeconds: Number(wall), processSeconds: (performance.now() - started) / 1000, peakRssMB: Number(rss), invariants, load: loadavg().map((l) => l.toFixed(2)).join(" ") })
  }
  await runBench("load", "scripts/bench/load.ts", [
    "burst",
    ...(option("--before") === undefined ? [] : ["--before", option("--before")]),
    "--variant", "default=",
    "--variant", "semi-space 1 MiB, old space 64 MiB=--max-semi-space-size=1 --max-old-space-size=64",
    "--variant", "lite mode=--lite-mode"
  ])
  await runBench("soak", "scripts/bench/load.ts", ["soak", "--minutes", option("--soak-minutes") ?? "5", "--rate", "2"])
  await runBench("modules", "scripts/bench/modules.ts", [])
  await runBench("modules", "scripts/bench/bundle-breakdown.mjs", [])
} finally {
  if (ownStack) {
    log("stopping the test stack")
    execFileSync("bash", [join(root, "test/infra/down.sh"), stackDir], { stdio: ["ignore", "ignore", "inherit"] })
    rmSync(stackDir, { recursive: true, force: true })
  }
}

// ---- Markdown
const f = (n, digits = 0) => (typeof n === "number" && Number.isFinite(n) ? n.toFixed(digits) : "–")
const of = (bench) => results.filter((r) => r.bench === bench)
const table = (header, rows) => rows.length === 0 ? "" : [`| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.join(" | ")} |`), ""].join("\n")
const md = []
md.push(`Generated by \`pnpm bench\` on ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC: node ${process.version}, ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB; load average at the start ${startLoad.map((l) => l.toFixed(2)).join(" ")}. Each row's load average is the machine's (1, 5, 15 min) when it was measured.`, "")
md.push("### Sweep tick (in memory)", "", table(
  ["runs", "tick (median of 5, wall)", "tick CPU", "first tick", "floor: cache reads only", "ratio", "load"],
  of("sweep").map((r) => [r.runs, `${f(r.tickMs, 1)} ms`, `${f(r.tickCpuMs, 1)} ms`, `${f(r.firstTickMs, 1)} ms`, `${f(r.floorMs, 1)} ms`, f(r.ratio, 1), r.load])
))
md.push("### Informer sync", "", table(
  ["what", "objects", "to Synced / listed", "RSS after", "RSS after GC", "heap after GC", "load"],
  of("informer").map((r) => [r.mode === "floor" ? "floor: paginated LIST (client-node)" : "executor: KubeCluster informers", r.objects, `${f(r.syncMs / 1000, 2)} s`, `${f(r.rssSynced)} MiB`, `${f(r.rssAfterGc)} MiB`, `${f(r.heapUsedAfterGc)} MiB`, r.load])
))
md.push("### Detection latency", "", table(
  ["in-flight runs", "samples", "p50", "p99", "max", "floor p50", "floor p99", "ratio p99", "load"],
  of("detect").map((r) => [r.runs, r.samples, `${f(r.p50ms)} ms`, `${f(r.p99ms)} ms`, `${f(r.maxMs)} ms`, `${f(r.floorP50ms)} ms`, `${f(r.floorP99ms)} ms`, f(r.ratioP99, 1), r.load])
))
md.push("### Dispatch throughput (in memory)", "", table(
  ["events", "executor", "floor: consume + create", "ratio", "load"],
  of("dispatch-memory").map((r) => [r.events, `${f(r.perSecond)} /s`, `${f(r.floorPerSecond)} /s`, f(r.ratio, 1), r.load])
))
md.push("### simulate, 1,000 tasks over 24 simulated hours", "", table(
  ["simulate wall", "process wall (with start-up)", "peak RSS", "invariants", "load"],
  of("simulate").map((r) => [`${f(r.wallSeconds, 2)} s`, `${f(r.processSeconds, 2)} s`, `${f(r.peakRssMB)} MB`, r.invariants ?? "–", r.load])
))
const bursts = of("burst")
const floors = of("floor")
md.push("### `run` under load: 50 runs that succeed after 20 s + 10 with an unreachable image", "", table(
  ["build, node flags", "RSS ready", "idle CPU", "RSS idle", "RSS under load (max)", "CPU under load: avg / peak (5 s)", "CPU seconds for the load", "RSS after", "floor RSS (bare, same bundle)", "RSS / floor", "load"],
  bursts.map((r) => {
    const fl = floors.find((x) => x.label === r.label)
    return [`${r.label}${r.flags.length > 0 ? ` (\`${r.flags.join(" ")}\`)` : ""}`, `${f(r.readyRss)} MiB`, `${f(r.idle.cpuAvg, 2)} %`, `${f(r.idle.rssMax)} MiB`, `${f(r.underLoad.rssMax)} MiB`, `${f(r.underLoad.cpuAvg, 1)} % / ${f(r.underLoad.cpuPeak, 1)} %`, `${f(r.underLoad.cpuSeconds, 2)} s in ${f(r.underLoad.seconds)} s`, `${f(r.after.rssLast)} MiB`, fl === undefined ? "–" : `${f(fl.rssMax)} MiB`, fl === undefined ? "–" : f(r.underLoad.rssMax / fl.rssMax, 2), r.load]
  })
))
const soak = of("soak")
const soakSummary = of("soak-summary")[0]
if (soak.length > 0) {
  const pick = soak.filter((_, i) => i % Math.max(1, Math.floor(soak.length / 12)) === 0 || _ === soak[soak.length - 1])
  md.push(`### Soak: 2 task events/s, a tenth with an unreachable image, ${soakSummary?.minutes ?? "?"} min`, "", table(
    ["minute", "RSS", "heap used", "event-loop lag p99 / max (10 s)", "tracked runs", "Jobs spawned", "verdicts", "load"],
    pick.map((r) => [f(r.minute, 1), `${f(r.rssMiB)} MiB`, `${f(r.heapUsedMiB)} MiB`, `${f(r.lagP99ms, 1)} / ${f(r.lagMaxMs, 1)} ms`, r.tracked, r.spawned, r.verdicts, r.load])
  ))
  if (soakSummary !== undefined) md.push(`Whole soak: RSS ${f(soakSummary.rssMin)}-${f(soakSummary.rssMax)} MiB, CPU ${f(soakSummary.cpuAvg, 1)} % of one core on average; ${soakSummary.sent} task events, ${soakSummary.settled} runs settled.`, "")
}
md.push("### RSS by what is loaded (bare node processes, after a full GC)", "", table(
  ["loaded", "RSS", "heap used"],
  of("modules").map((r) => [r.label, `${f(r.rss)} MiB`, `${f(r.heapUsed)} MiB`])
))
md.push("### The bundle by package (bytes of JavaScript)", "", table(
  ["package", "KiB", "share"],
  of("bundle").map((r) => [r.package, r.kib, `${f(100 * r.share, 1)} %`])
))
const generated = md.join("\n")
if (args.includes("--no-write")) {
  process.stdout.write(`${generated}\n`)
} else {
  const path = join(root, "docs/benchmarks.md")
  const doc = readFileSync(path, "utf8")
  const start = "<!-- bench:results -->"
  const end = "<!-- /bench:results -->"
  const a = doc.indexOf(start)
  const b = doc.indexOf(end)
  if (a < 0 || b < 0) throw new Error("docs/benchmarks.md has no bench:results markers")
  writeFileSync(path, `${doc.slice(0, a + start.length)}\n${generated}\n${doc.slice(b)}`)
  writeFileSync(join(root, "docs/benchmarks.json"), `${JSON.stringify(results, null, 1)}\n`)
  log("docs/benchmarks.md written")
}
