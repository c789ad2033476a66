// Stopping and restarting the servers of test/infra/up.sh from a test: by the pid recorded in
// RUN_DIR/<name>.pid, restarted with the same command line (from /proc/<pid>/cmdline), the same data
// dir and ports, detached into its own session, the new pid written back so that down.sh stops it.
import { spawn } from "node:child_process"
import { closeSync, existsSync, openSync, readFileSync, readlinkSync, writeFileSync } from "node:fs"
import { connect } from "node:net"
import { join } from "node:path"
import { eventually, sleep } from "./wait.js"

export type ServerName = "kafka" | "kube-apiserver"

const pidFile = (runDir: string, name: ServerName) => join(runDir, `${name}.pid`)

export const serverPid = (runDir: string, name: ServerName): number => Number(readFileSync(pidFile(runDir, name), "utf8").trim())

/** Alive and not a zombie. */
export const isAlive = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return !/^\d+ \(.*\) [ZX] /.test(stat)
  } catch {
    return false
  }
}

const signalGroup = (pid: number, signal: NodeJS.Signals) => {
  try {
    process.kill(-pid, signal)
  } catch {
    try {
      process.kill(pid, signal)
    } catch {
      // gone
    }
  }
}

export interface StoppedServer {
  readonly name: ServerName
  readonly argv: ReadonlyArray<string>
  readonly cwd: string
  readonly stoppedInMs: number
  readonly killed: boolean
}

/**
 * SIGTERM to the server's process group; SIGKILL after `graceMs` (at once with `kill9`). Keeps its
 * command line for `restart`.
 */
export const stopServer = async (runDir: string, name: ServerName, graceMs = 20_000, kill9 = false): Promise<StoppedServer> => {
  const pid = serverPid(runDir, name)
  if (!isAlive(pid)) throw new Error(`${name} (pid ${pid}) is not running`)
  const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((a) => a !== "")
  if (!argv.join(" ").includes(`${runDir}/`)) throw new Error(`pid ${pid} does not look like the ${name} of ${runDir}: ${argv.join(" ")}`)
  let cwd = runDir
  try {
    cwd = readlinkSync(`/proc/${pid}/cwd`)
  } catch {
    // the data paths are absolute anyway
  }
  const started = Date.now()
  signalGroup(pid, kill9 ? "SIGKILL" : "SIGTERM")
  let killed = kill9
  while (isAlive(pid)) {
    if (Date.now() - started > graceMs && !killed) {
      signalGroup(pid, "SIGKILL")
      killed = true
    }
    await sleep(100)
  }
  return { name, argv, cwd, stoppedInMs: Date.now() - started, killed }
}

/** Starts the server again exactly as before; returns the new pid (also written to RUN_DIR/<name>.pid). */
export const restartServer = (runDir: string, stopped: StoppedServer): number => {
  const log = openSync(join(runDir, `${stopped.name}.log`), "a")
  const child = spawn(stopped.argv[0]!, stopped.argv.slice(1), {
    cwd: stopped.cwd,
    detached: true,
    stdio: ["ignore", log, log],
    env: process.env
  })
  closeSync(log)
  child.unref()
  if (child.pid === undefined) throw new Error(`could not restart ${stopped.name}`)
  writeFileSync(pidFile(runDir, stopped.name), `${child.pid}\n`)
  return child.pid
}

const portOpen = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, "127.0.0.1")
    socket.once("connect", () => {
      socket.destroy()
      resolve(true)
    })
    socket.once("error", () => resolve(false))
  })

const startedCount = (runDir: string) => {
  const file = join(runDir, "kafka.log")
  return existsSync(file) ? readFileSync(file, "utf8").split("Kafka Server started").length - 1 : 0
}

/**
 * Stops the broker (SIGTERM, or kill -9 with `kill9`); `start()` brings it back on the same data
 * dir and waits until it serves.
 */
export const stopKafka = async (runDir: string, port: number, kill9 = false) => {
  const before = startedCount(runDir)
  const stopped = await stopServer(runDir, "kafka", 20_000, kill9)
  return {
    stopped,
    start: async () => {
      const pid = restartServer(runDir, stopped)
      await eventually("the restarted Kafka broker", 90_000, async () => {
        if (!isAlive(pid)) throw new Error(`kafka exited: ${readFileSync(join(runDir, "kafka.log"), "utf8").slice(-2000)}`)
        return startedCount(runDir) > before && (await portOpen(port)) ? true : undefined
      })
      return pid
    }
  }
}

/**
 * Stops kube-apiserver (a graceful stop keeps open watches for a long time: SIGKILL after `graceMs`)
 * and starts it again; `ready` must answer once it serves.
 */
export const restartApiServer = async (
  runDir: string,
  ready: () => Promise<boolean>,
  options: { readonly graceMs?: number; readonly whileDown?: () => Promise<void> } = {}
) => {
  const stopped = await stopServer(runDir, "kube-apiserver", options.graceMs ?? 5_000)
  const downAt = Date.now()
  await options.whileDown?.()
  const pid = restartServer(runDir, stopped)
  await eventually("the restarted kube-apiserver", 120_000, async () => {
    if (!isAlive(pid)) throw new Error(`kube-apiserver exited: ${readFileSync(join(runDir, "kube-apiserver.log"), "utf8").slice(-2000)}`)
    return (await ready().catch(() => false)) ? true : undefined
  }, 250)
  return { pid, stopped, downMs: Date.now() - downAt }
}
