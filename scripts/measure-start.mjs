#!/usr/bin/env node
// Start-up of the executor, from the sources (tsx) and from the build, in one run:
//   --help; `simulate examples/succeed.yaml` (one task); `run` until /readiness answers 200, and
//   its RSS then. Median of several runs each (wall time from spawn to exit / to the first 200).
//
//   node scripts/measure-start.mjs [--before DIR] [--repeat N] [--variant "LABEL=NODE ARGS"]...
//
// --before DIR: also measure `node --import tsx apps/executor/src/main.ts` in DIR (a checkout of
// an older commit with its node_modules installed), e.g. the tree before the build existed; tsx
// "cold" transpiles every file (TSX_DISABLE_CACHE=1, as in a container), "cached" reuses its cache.
// --variant "LABEL=NODE ARGS": measure these instead (repeatable), e.g.
//   --variant "source maps=--enable-source-maps apps/executor/dist/main.mjs"
// `run` needs the test stack: INFRA_RUN_DIR=<dir started by test/infra/up.sh>, or else this starts
// one on free ports under a temp dir and stops it (by its pids, test/infra/down.sh) at the end.
// Builds first (scripts/build.mjs --if-stale). Prints a Markdown table on stdout.
import { execFileSync, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { request } from "node:http"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const args = process.argv.slice(2)
const option = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined)
const repeat = Number(option("--repeat") ?? 5)
const before = option("--before")
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const log = (s) => process.stderr.write(`[measure] ${s}\n`)

execFileSync(process.execPath, [join(root, "scripts/build.mjs"), "--if-stale"], { stdio: "inherit" })

const tsx = ["--import", "tsx", "apps/executor/src/main.ts"]
// TSX_DISABLE_CACHE: what a container's every start is (a fresh /tmp, nothing transpiled yet)
const cold = { ...process.env, TSX_DISABLE_CACHE: "1" }
const given = args.flatMap((a, i) => (a === "--variant" ? [args[i + 1]] : []))
const variants =
  given.length > 0
    ? given.map((v) => ({ label: v.split("=")[0], cwd: root, argv: v.slice(v.indexOf("=") + 1).split(" ") }))
    : [
        ...(before === undefined
          ? []
          : [
              { label: "before: tsx, cold", cwd: resolve(before), argv: tsx, env: cold },
              { label: "before: tsx, cached", cwd: resolve(before), argv: tsx }
            ]),
        { label: "sources: tsx, cold", cwd: root, argv: tsx, env: cold },
        { label: "build: node apps/executor/dist/main.mjs", cwd: root, argv: ["apps/executor/dist/main.mjs"] }
      ]

const timed = (cwd, argv, env = process.env) =>
  new Promise((resolvePromise, reject) => {
    const started = performance.now()
    const child = spawn(process.execPath, argv, { cwd, env, stdio: ["ignore", "ignore", "pipe"] })
    let stderr = ""
    child.stderr.on("data", (d) => (stderr += d))
    child.on("exit", (code) =>
      code === 0 ? resolvePromise(performance.now() - started) : reject(new Error(`${argv.join(" ")}: exit ${code}\n${stderr}`))
    )
  })

const freePort = () =>
  new Promise((r) => {
    const server = createServer()
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address()
      server.close(() => r(port))
    })
  })

const status = (port, path) =>
  new Promise((r) => {
    const req = request({ host: "127.0.0.1", port, path, timeout: 1_000 }, (res) => {
      res.resume()
      r(res.statusCode ?? 0)
    })
    req.on("timeout", () => req.destroy())
    req.on("error", () => r(0))
    req.end()
  })

const rssMiB = (pid) => {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"))
  return Number(line?.split(/\s+/)[1]) / 1024
}

// ---- the stack for `run`
let stackDir = process.env["INFRA_RUN_DIR"]
let ownStack = false
if (stackDir === undefined) {
  stackDir = mkdtempSync(join(tmpdir(), "measure-start-"))
  const ports = {}
  for (const name of ["ETCD_PORT", "ETCD_PEER_PORT", "KUBE_APISERVER_PORT", "KAFKA_PORT", "KAFKA_CONTROLLER_PORT"]) {
    ports[name] = String(await freePort())
  }
  log(`starting the test stack in ${stackDir}`)
  execFileSync("bash", [join(root, "test/infra/up.sh"), stackDir], { env: { ...process.env, ...ports }, stdio: ["ignore", "ignore", "inherit"] })
  ownStack = true
}
const stopStack = () => {
  if (!ownStack) return
  log("stopping the test stack")
  execFileSync("bash", [join(root, "test/infra/down.sh"), stackDir], { stdio: ["ignore", "ignore", "inherit"] })
  rmSync(stackDir, { recursive: true, force: true })
}

try {
  const state = JSON.parse(readFileSync(join(stackDir, "state.json"), "utf8"))
  const topicPrefix = `measure-${process.pid}`
  execFileSync(process.execPath, [join(root, "scripts/create-topics.mjs"), state.kafkaBrokers, topicPrefix], { cwd: root, stdio: "inherit" })

  const runUntilReady = async (variant, i) => {
    const port = await freePort()
    const env = {
      PATH: process.env["PATH"],
      HOME: process.env["HOME"],
      LISTEN: `127.0.0.1:${port}`,
      KUBECONFIG: state.kubeconfig,
      KAFKA_BROKERS: state.kafkaBrokers,
      NAMESPACE: "default",
      BRANCH: "dev",
      TOPIC_PREFIX: topicPrefix,
      KAFKA_TRANSACTIONAL_ID: `${topicPrefix}-${i}`,
      KAFKA_GROUP_ID: topicPrefix,
      APPLY_CRD: "true",
      LOG_LEVEL: "warning",
      ...(variant.env?.["TSX_DISABLE_CACHE"] === undefined ? {} : { TSX_DISABLE_CACHE: "1" })
    }
    const started = performance.now()
    const child = spawn(process.execPath, [...variant.argv, "run"], { cwd: variant.cwd, env, stdio: "ignore", detached: true })
    let exited = false
    child.on("exit", () => (exited = true))
    try {
      for (;;) {
        if (exited) throw new Error(`${variant.label}: run exited before /readiness answered 200`)
        if ((await status(port, "/readiness")) === 200) break
        if (performance.now() - started > 120_000) throw new Error(`${variant.label}: not ready after 120 s`)
        await sleep(20)
      }
      const ms = performance.now() - started
      await sleep(5_000)
      return { ms, rss: rssMiB(child.pid) }
    } finally {
      if (!exited) {
        const gone = new Promise((r) => child.once("exit", r))
        process.kill(child.pid, "SIGTERM")
        await Promise.race([gone, sleep(15_000)])
        if (!exited) process.kill(-child.pid, "SIGKILL")
      }
      // tsx's esbuild service is in the same group
      try {
        process.kill(-child.pid, "SIGKILL")
      } catch {
        // gone
      }
    }
  }

  const rows = []
  for (const variant of variants) {
    log(variant.label)
    const help = []
    const simulate = []
    const ready = []
    const rss = []
    for (let i = 0; i < repeat; i++) help.push(await timed(variant.cwd, [...variant.argv, "--help"], variant.env))
    for (let i = 0; i < repeat; i++) {
      simulate.push(await timed(variant.cwd, [...variant.argv, "simulate", join(root, "examples/succeed.yaml")], variant.env))
    }
    for (let i = 0; i < Math.min(repeat, 3); i++) {
      const r = await runUntilReady(variant, i)
      ready.push(r.ms)
      rss.push(r.rss)
    }
    rows.push([variant.label, median(help), median(simulate), median(ready), median(rss)])
  }
  const s = (ms) => `${(ms / 1000).toFixed(2)} s`
  process.stdout.write(
    `| start | \`--help\` | \`simulate examples/succeed.yaml\` | \`run\` until /readiness 200 | RSS of \`run\`, ready + 5 s |\n|---|---|---|---|---|\n` +
      rows.map(([label, h, sim, r, m]) => `| ${label} | ${s(h)} | ${s(sim)} | ${s(r)} | ${m.toFixed(0)} MiB |`).join("\n") +
      `\n\nmedians of ${repeat} (\`run\`: ${Math.min(repeat, 3)}); node ${process.version}, ${new Date().toISOString().slice(0, 10)}\n`
  )
} finally {
  stopStack()
}
