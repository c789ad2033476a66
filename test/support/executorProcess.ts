// The real `run` service as a child process: `node --import tsx apps/executor/src/main.ts run`,
// detached (its own process group), output to a log file, stopped by its pid only.
import { type ChildProcess, spawn } from "node:child_process"
import { closeSync, existsSync, mkdirSync, openSync, readFileSync } from "node:fs"
import { request } from "node:http"
import { join } from "node:path"
import { freePort, repoRoot, tail } from "./stack.js"
import { eventually, sleep } from "./wait.js"

export interface HttpAnswer {
  readonly status: number
  readonly body: string
  readonly headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>
}

/** One HTTP call; a refused connection is `status: 0`. */
export const http = (
  port: number,
  path: string,
  options: { readonly method?: string; readonly headers?: Record<string, string>; readonly timeoutMs?: number } = {}
) =>
  new Promise<HttpAnswer>((resolvePromise) => {
    const req = request(
      { host: "127.0.0.1", port, path, method: options.method ?? "GET", headers: options.headers, timeout: options.timeoutMs ?? 5_000 },
      (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (c: Buffer) => chunks.push(c))
        res.on("end", () =>
          resolvePromise({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8"), headers: res.headers })
        )
        res.on("error", () => resolvePromise({ status: 0, body: "", headers: {} }))
      }
    )
    req.on("timeout", () => req.destroy(new Error("timeout")))
    req.on("error", (error) => resolvePromise({ status: 0, body: String(error), headers: {} }))
    req.end()
  })

export interface Exit {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

export interface ExecutorProcess {
  readonly name: string
  readonly pid: number
  readonly port: number
  readonly logFile: string
  readonly env: Readonly<Record<string, string>>
  readonly exited: Promise<Exit>
  readonly isRunning: () => boolean
  readonly http: (path: string, options?: Parameters<typeof http>[2]) => Promise<HttpAnswer>
  /** Polls /readiness until 200. */
  readonly ready: (timeoutMs?: number) => Promise<void>
  readonly signal: (signal: NodeJS.Signals) => void
  /** SIGKILL, and wait for the exit. */
  readonly kill9: () => Promise<Exit>
  /** SIGTERM, wait up to `graceMs`, then SIGKILL; the exit and how long it took. */
  readonly stop: (graceMs?: number) => Promise<{ readonly exit: Exit; readonly ms: number; readonly killed: boolean }>
  /** One value of /metrics (the sum over series whose labels contain every `labels` pair). */
  readonly metric: (name: string, labels?: Record<string, string>) => Promise<number>
  readonly logTail: (lines?: number) => string
}

/** The environment of `run` (executor.md §3.4): only what is given, plus PATH/HOME. */
export interface ExecutorEnv {
  readonly KAFKA_BROKERS: string
  readonly KUBECONFIG: string
  readonly NAMESPACE: string
  readonly TOPIC_PREFIX: string
  readonly BRANCH?: string
  readonly KAFKA_GROUP_ID: string
  readonly [key: string]: string | undefined
}

/** One value of a /metrics body: the sum over the series whose labels contain every `labels` pair. */
export const metricSum = (body: string, metricName: string, labels: Record<string, string> = {}) => {
  let sum = 0
  for (const line of body.split("\n")) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line)
    if (match === null || match[1] !== metricName) continue
    const series = match[2] ?? ""
    if (Object.entries(labels).every(([k, v]) => series.includes(`${k}="${v}"`))) sum += Number(match[3])
  }
  return sum
}

const live = new Set<ChildProcess>()

/** Starts `run`; fails fast when it exits before answering /healthz (with its log). */
export const startExecutor = async (
  name: string,
  env: ExecutorEnv,
  options: { readonly logDir: string; readonly port?: number; readonly waitListening?: boolean } = { logDir: "" }
): Promise<ExecutorProcess> => {
  const port = options.port ?? (await freePort())
  mkdirSync(options.logDir, { recursive: true })
  const logFile = join(options.logDir, `${name}.log`)
  const fullEnv: Record<string, string> = {
    PATH: process.env["PATH"] ?? "/usr/bin:/bin",
    HOME: process.env["HOME"] ?? "/tmp",
    LISTEN: `127.0.0.1:${port}`,
    BRANCH: "dev",
    APPLY_CRD: "true",
    JOB_TTL_SECONDS_AFTER_FINISHED: "600",
    LOG_LEVEL: "info",
    ...(process.env["TSX_TSCONFIG_PATH"] === undefined ? {} : { TSX_TSCONFIG_PATH: process.env["TSX_TSCONFIG_PATH"] }),
    // TSX_DISABLE_CACHE=1: every start transpiles all of the sources, as a fresh container would
    ...(process.env["TSX_DISABLE_CACHE"] === undefined ? {} : { TSX_DISABLE_CACHE: process.env["TSX_DISABLE_CACHE"] })
  }
  for (const [key, value] of Object.entries(env)) if (value !== undefined) fullEnv[key] = value
  const fd = openSync(logFile, "a")
  const child = spawn(process.execPath, ["--import", "tsx", "apps/executor/src/main.ts", "run"], {
    cwd: repoRoot,
    env: fullEnv,
    detached: true,
    stdio: ["ignore", fd, fd]
  })
  closeSync(fd)
  if (child.pid === undefined) throw new Error(`could not start ${name}`)
  live.add(child)
  const pid = child.pid
  const exited = new Promise<Exit>((resolvePromise) => {
    child.once("exit", (code, signal) => {
      live.delete(child)
      resolvePromise({ code, signal })
    })
  })
  let done = false
  void exited.then(() => (done = true))
  const isRunning = () => !done
  const logTail = (lines = 60) =>
    existsSync(logFile) ? tail(readFileSync(logFile, "utf8"), lines) : "(no log)"
  /** To the process (as the kubelet does); SIGKILL to its whole group (tsx's esbuild service too). */
  const signal = (sig: NodeJS.Signals) => {
    if (!done) {
      try {
        process.kill(sig === "SIGKILL" ? -pid : pid, sig)
      } catch {
        // gone
      }
    }
  }
  const waitExit = (ms: number) =>
    Promise.race([exited, sleep(ms).then(() => undefined)])

  const self: ExecutorProcess = {
    name,
    pid,
    port,
    logFile,
    env: fullEnv,
    exited,
    isRunning,
    http: (path, opts) => http(port, path, opts),
    ready: async (timeoutMs = 90_000) => {
      await eventually(`${name} /readiness 200`, timeoutMs, async () => {
        if (done) throw new Error(`${name} exited: ${JSON.stringify(await exited)}\n${logTail()}`)
        return (await http(port, "/readiness", { timeoutMs: 2_000 })).status === 200 ? true : undefined
      })
    },
    signal,
    kill9: async () => {
      signal("SIGKILL")
      return exited
    },
    stop: async (graceMs = 10_000) => {
      const started = Date.now()
      if (done) return { exit: await exited, ms: 0, killed: false }
      signal("SIGTERM")
      const exit = await waitExit(graceMs)
      if (exit !== undefined) return { exit, ms: Date.now() - started, killed: false }
      signal("SIGKILL")
      return { exit: await exited, ms: Date.now() - started, killed: true }
    },
    metric: async (metricName, labels = {}) => {
      const { body, status } = await http(port, "/metrics")
      if (status !== 200) throw new Error(`/metrics answered ${status}`)
      return metricSum(body, metricName, labels)
    },
    logTail
  }
  if (options.waitListening !== false) {
    await eventually(`${name} listening on ${port}`, 120_000, async () => {
      if (done) throw new Error(`${name} exited before listening: ${JSON.stringify(await exited)}\n${logTail()}`)
      return (await http(port, "/healthz", { timeoutMs: 2_000 })).status === 200 ? true : undefined
    }).catch((error: unknown) => {
      signal("SIGKILL")
      throw error
    })
  }
  return self
}

/** Last resort for a test file's afterAll: SIGKILL every `run` this worker started and is still alive. */
export const killAllStarted = async () => {
  const waits: Array<Promise<void>> = []
  for (const child of live) {
    if (child.pid === undefined) continue
    waits.push(new Promise((r) => child.once("exit", () => r())))
    try {
      process.kill(-child.pid, "SIGKILL")
    } catch {
      // gone
    }
  }
  await Promise.race([Promise.all(waits), sleep(5_000)])
}
