// The built `run` (apps/executor/dist/main.mjs) as a child process against a test stack, and the
// stack itself: RUN_DIR of test/infra/up.sh (INFRA_RUN_DIR), or one started here on free ports.
import { execFileSync, spawn } from "node:child_process"
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { createTopics } from "../../test/support/kafka.js"
import { http } from "../../test/support/executorProcess.js"
import { freePort } from "../../test/support/stack.js"
import { sleep } from "../../test/support/wait.js"

/** The repository (this file runs from scripts/bench/ through tsx, or bundled from scripts/bench/.out/). */
export const root = ((): string => {
  for (let dir = import.meta.dirname; dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(join(dir, "pnpm-workspace.yaml"))) return dir
  }
  throw new Error("not inside the repository")
})()
export const log = (s: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`)

export interface Stack {
  readonly dir: string
  readonly kubeconfig: string
  readonly kafkaBrokers: string
  readonly stop: () => void
}

export const stack = async (): Promise<Stack> => {
  const given = process.env["INFRA_RUN_DIR"]
  let dir = given
  if (dir === undefined) {
    dir = mkdtempSync(join(tmpdir(), "bench-stack-"))
    const env: Record<string, string> = {}
    for (const name of ["ETCD_PORT", "ETCD_PEER_PORT", "KUBE_APISERVER_PORT", "KAFKA_PORT", "KAFKA_CONTROLLER_PORT"]) {
      env[name] = String(await freePort())
    }
    log(`starting the test stack in ${dir}`)
    execFileSync("bash", [join(root, "test/infra/up.sh"), dir], { env: { ...process.env, ...env }, stdio: ["ignore", "ignore", "inherit"] })
  }
  const state = JSON.parse(readFileSync(join(dir, "state.json"), "utf8")) as { kubeconfig: string; kafkaBrokers: string }
  const own = dir
  return {
    dir,
    kubeconfig: state.kubeconfig,
    kafkaBrokers: state.kafkaBrokers,
    stop: () => {
      if (given !== undefined) return
      log("stopping the test stack")
      execFileSync("bash", [join(root, "test/infra/down.sh"), own], { stdio: ["ignore", "ignore", "inherit"] })
      rmSync(own, { recursive: true, force: true })
    }
  }
}

export const topicsOf = (prefix: string) => ({ event: `${prefix}-agent-task-v1-event`, request: `${prefix}-agent-task-v1-request` })

export interface Built {
  readonly pid: number
  readonly port: number
  readonly ready: (timeoutMs?: number) => Promise<number>
  readonly metrics: () => Promise<string>
  readonly stop: () => Promise<void>
}

/** Starts `node [nodeArgs] apps/executor/dist/main.mjs run` with the reference environment. */
export const startBuilt = async (
  s: Stack,
  options: {
    readonly namespace: string
    readonly prefix: string
    readonly nodeArgs?: ReadonlyArray<string>
    readonly env?: Record<string, string>
    readonly logDir: string
    /** Another checkout whose build to run (e.g. the tree before a change); default this one. */
    readonly tree?: string
  }
): Promise<Built> => {
  await createTopics(s.kafkaBrokers, Object.values(topicsOf(options.prefix)))
  const port = await freePort()
  mkdirSync(options.logDir, { recursive: true })
  const fd = openSync(join(options.logDir, `${options.prefix}.log`), "a")
  const started = performance.now()
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), join(options.tree ?? root, "apps/executor/dist/main.mjs"), "run"], {
    cwd: root,
    env: {
      PATH: process.env["PATH"] ?? "/usr/bin:/bin",
      HOME: process.env["HOME"] ?? "/tmp",
      LISTEN: `127.0.0.1:${port}`,
      KUBECONFIG: s.kubeconfig,
      KAFKA_BROKERS: s.kafkaBrokers,
      NAMESPACE: options.namespace,
      BRANCH: "dev",
      TOPIC_PREFIX: options.prefix,
      KAFKA_TRANSACTIONAL_ID: `${options.prefix}-tx`,
      KAFKA_GROUP_ID: `${options.prefix}-group`,
      APPLY_CRD: "true",
      LOG_LEVEL: "warning",
      ...options.env
    },
    detached: true,
    stdio: ["ignore", fd, fd]
  })
  closeSync(fd)
  const pid = child.pid
  if (pid === undefined) throw new Error("could not start run")
  let exited = false
  const gone = new Promise<void>((r) => child.once("exit", () => ((exited = true), r())))
  return {
    pid,
    port,
    ready: async (timeoutMs = 120_000) => {
      for (;;) {
        if (exited) throw new Error(`run exited before /readiness 200 (log ${options.logDir}/${options.prefix}.log)`)
        if ((await http(port, "/readiness", { timeoutMs: 2_000 })).status === 200) return performance.now() - started
        if (performance.now() - started > timeoutMs) throw new Error("run not ready in time")
        await sleep(50)
      }
    },
    metrics: async () => (await http(port, "/metrics")).body,
    stop: async () => {
      if (exited) return
      process.kill(pid, "SIGTERM")
      await Promise.race([gone, sleep(15_000)])
      if (!exited) process.kill(-pid, "SIGKILL")
      await gone
    }
  }
}

/** One value of a Prometheus text exposition (summed over the series that carry every label). */
export const metricValue = (body: string, name: string, labels: Record<string, string> = {}): number => {
  let sum = 0
  for (const line of body.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line)
    if (match === null || match[1] !== name) continue
    if (Object.entries(labels).every(([k, v]) => (match[2] ?? "").includes(`${k}="${v}"`))) sum += Number(match[3])
  }
  return sum
}
