// Starting and stopping a stack of test/infra (etcd + kube-apiserver + Kafka) from TypeScript: used by
// test/globalSetup.ts for the shared stack, and by suites that need a private one.
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { createServer } from "node:net"
import { homedir, tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { type InfraInfo, readState } from "./infraEnv.js"

export const repoRoot = resolve(fileURLToPath(new URL(".", import.meta.url)), "../..")
export const infraDir = join(repoRoot, "test", "infra")

export const upTimeoutMs = Number(process.env["UP_TIMEOUT_MS"] ?? 5 * 60_000)
export const downTimeoutMs = 90_000

export interface Ran {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly output: string
  readonly ms: number
}

/**
 * Runs a script of test/infra in its own process group; its output is kept (and echoed to stderr as
 * it comes when `echo`); after `timeoutMs` the group gets SIGTERM.
 */
export const runScript = (
  script: string,
  args: ReadonlyArray<string>,
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
  echo = false
) =>
  new Promise<Ran>((resolvePromise) => {
    const started = Date.now()
    const chunks: Array<string> = []
    const child = spawn("bash", [join(infraDir, script), ...args], {
      cwd: repoRoot,
      env,
      stdio: ["ignore", "pipe", "pipe"],
      detached: true
    })
    const onData = (data: Buffer) => {
      const text = data.toString("utf8")
      chunks.push(text)
      if (echo) process.stderr.write(text)
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    const timer = setTimeout(() => {
      chunks.push(`\n[${script}] timed out after ${timeoutMs} ms: SIGTERM to its process group\n`)
      try {
        if (child.pid !== undefined) process.kill(-child.pid, "SIGTERM")
      } catch {
        // already gone
      }
    }, timeoutMs)
    child.on("error", (error) => chunks.push(`\n[${script}] cannot run: ${String(error)}\n`))
    child.on("close", (code, signal) => {
      clearTimeout(timer)
      resolvePromise({ code, signal, output: chunks.join(""), ms: Date.now() - started })
    })
  })

export const tail = (text: string, lines = 80) => text.trimEnd().split("\n").slice(-lines).join("\n")

export const freePort = () =>
  new Promise<number>((resolvePromise, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolvePromise(port))
    })
  })

/** `KEY=value` lines (what prepare.sh prints last). */
export const keyValues = (output: string): Record<string, string> =>
  Object.fromEntries(
    output.split("\n").flatMap((line) => {
      const match = /^([A-Z_]+)=(.*)$/.exec(line.trim())
      return match?.[1] !== undefined && match[2] !== undefined ? [[match[1], match[2]] as const] : []
    })
  )

/** The exports of prepare.sh's `$CACHE/env.sh`. */
export const cachedEnv = (): Record<string, string> => {
  const cache = process.env["INFRA_CACHE"] ?? join(process.env["XDG_CACHE_HOME"] ?? join(homedir(), ".cache"), "agent-executor-infra")
  const file = join(cache, "env.sh")
  if (!existsSync(file)) return {}
  return Object.fromEntries(
    readFileSync(file, "utf8")
      .split("\n")
      .flatMap((line) => {
        const match = /^export ([A-Z_]+)='([^']*)'$/.exec(line.trim())
        return match?.[1] !== undefined && match[2] !== undefined ? [[match[1], match[2]] as const] : []
      })
  )
}

/** The InfraInfo of a running stack's RUN_DIR. */
export const infoOf = (runDir: string, binaries: { readonly kafkaLibs: string; readonly javaBin: string }): InfraInfo => {
  const state = readState(runDir)
  return {
    runDir,
    kubeconfig: state.kubeconfig,
    kafkaBrokers: state.kafkaBrokers,
    kubeApiserverUrl: state.kubeApiserverUrl,
    ...binaries
  }
}

export interface RunningStack {
  readonly info: InfraInfo
  readonly upMs: number
  /** down.sh (recorded pids only), then removes RUN_DIR unless `keep`. */
  readonly stop: (options?: { readonly keep?: boolean }) => Promise<Ran>
}

/**
 * up.sh into a fresh RUN_DIR (under the OS temp dir) with five free ports on 127.0.0.1. `binaries`
 * are exported to up.sh (it reads the rest from the cache's env.sh). Throws with up.sh's output
 * (it prints each server's log tail) when it fails.
 */
export const upStack = async (
  prefix: string,
  binaries: Readonly<Record<string, string>> = {}
): Promise<RunningStack> => {
  const runDir = mkdtempSync(join(tmpdir(), prefix))
  const ports = {
    ETCD_PORT: await freePort(),
    ETCD_PEER_PORT: await freePort(),
    KUBE_APISERVER_PORT: await freePort(),
    KAFKA_PORT: await freePort(),
    KAFKA_CONTROLLER_PORT: await freePort()
  }
  if (new Set(Object.values(ports)).size !== 5) throw new Error(`could not pick 5 distinct free ports: ${JSON.stringify(ports)}`)
  const env: NodeJS.ProcessEnv = { ...process.env, ...binaries }
  for (const [key, value] of Object.entries(ports)) env[key] = String(value)
  const up = await runScript("up.sh", [runDir], env, upTimeoutMs)
  if (up.code !== 0) {
    rmSync(runDir, { recursive: true, force: true })
    throw new Error(`test/infra/up.sh failed (exit ${up.code ?? up.signal}) after ${up.ms} ms:\n${tail(up.output, 200)}`)
  }
  const cached = cachedEnv()
  const info = infoOf(runDir, {
    kafkaLibs: binaries["KAFKA_LIBS"] ?? process.env["KAFKA_LIBS"] ?? cached["KAFKA_LIBS"] ?? "",
    javaBin: binaries["JAVA_BIN"] ?? process.env["JAVA_BIN"] ?? cached["JAVA_BIN"] ?? ""
  })
  return {
    info,
    upMs: up.ms,
    stop: async (options = {}) => {
      const down = await runScript("down.sh", [runDir], process.env, downTimeoutMs)
      if (options.keep !== true) rmSync(runDir, { recursive: true, force: true })
      return down
    }
  }
}
