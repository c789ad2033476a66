// A private, single-node KRaft broker (infra.md Part A) that a test may stop, pause and restart
// without disturbing the shared broker of the other suites. Started from the jars that
// test/infra/prepare.sh caches; stopped by its pid only.
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { closeSync, existsSync, openSync, readdirSync, readFileSync } from "node:fs"
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { Data, Effect, Ref, Schedule } from "effect"
import { cachedEnv, freePort as freeTcpPort } from "../../../../test/support/stack.js"


/** Waits (at most 5 s) until every thread of `pid` is stopped (`T` in /proc/<pid>/task/<tid>/stat). */
const allThreadsStopped = (pid: number) =>
  Effect.sync(() => {
    const threads = readdirSync(`/proc/${pid}/task`)
    return threads.every((tid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8")
        return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "T"
      } catch {
        return true
      }
    })
  }).pipe(
    Effect.repeat({ until: (stopped) => stopped, schedule: Schedule.spaced("10 millis") }),
    Effect.timeout("5 seconds"),
    Effect.ignore
  )

export class BrokerError extends Data.TaggedError("BrokerError")<{ readonly message: string }> {}

export interface Binaries {
  readonly java: string
  readonly libs: string
}

/** `JAVA_BIN` and `KAFKA_LIBS` from the environment, else from the cache's env.sh of prepare.sh. */
export const findBinaries = (): Binaries | undefined => {
  const envSh = cachedEnv()
  const java = process.env["JAVA_BIN"] ?? envSh["JAVA_BIN"]
  const libs = process.env["KAFKA_LIBS"] ?? envSh["KAFKA_LIBS"]
  if (java === undefined || libs === undefined || !existsSync(java) || !existsSync(libs)) return undefined
  return { java, libs }
}

const freePort = Effect.tryPromise({
  try: freeTcpPort,
  catch: (error) => new BrokerError({ message: String(error) })
})

export interface PrivateBroker {
  /** `127.0.0.1:<port>`. */
  readonly brokers: string
  readonly logFile: string
  /** Starts the broker (again) on the same data dir and ports; waits until it serves. */
  readonly start: Effect.Effect<void, BrokerError>
  /** SIGTERM, wait for the exit (SIGKILL after 20 s). */
  readonly stop: Effect.Effect<void>
  /** kill -9: the broker dies at once, with whatever it had not answered yet. */
  readonly kill: Effect.Effect<void>
  /** SIGSTOP / SIGCONT: a broker that hangs instead of refusing connections. */
  readonly pause: Effect.Effect<void>
  readonly resume: Effect.Effect<void>
}

const serverProperties = (dir: string, port: number, controllerPort: number) => `process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:${controllerPort}
listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}
advertised.listeners=PLAINTEXT://127.0.0.1:${port},CONTROLLER://127.0.0.1:${controllerPort}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=${join(dir, "data")}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
num.network.threads=2
num.io.threads=4
`

const log4j = `status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
`

const exited = (child: ChildProcess) =>
  Effect.async<void>((resume) => {
    if (child.exitCode !== null || child.signalCode !== null) return resume(Effect.void)
    child.once("exit", () => resume(Effect.void))
  })

/** Formats a fresh data dir and starts the broker; the scope's end kills it and removes the dir. */
export const privateBroker = (binaries: Binaries) =>
  Effect.gen(function* () {
    const dir = yield* Effect.acquireRelease(
      Effect.promise(() => mkdtemp(join(tmpdir(), "kafka-it-broker-"))),
      (path) => Effect.promise(() => rm(path, { recursive: true, force: true }))
    )
    const port = yield* freePort
    const controllerPort = yield* freePort
    const config = join(dir, "server.properties")
    const log4jFile = join(dir, "log4j2.properties")
    const logFile = join(dir, "kafka.log")
    yield* Effect.promise(async () => {
      await mkdir(join(dir, "data"))
      await writeFile(config, serverProperties(dir, port, controllerPort))
      await writeFile(log4jFile, log4j)
    })
    const classpath = join(binaries.libs, "*")
    // never one that starts with "-": the storage tool would read it as an option (as Kafka's Uuid.randomUuid avoids)
    let clusterId = randomBytes(16).toString("base64url")
    while (clusterId.startsWith("-")) clusterId = randomBytes(16).toString("base64url")
    yield* Effect.tryPromise({
      try: () =>
        promisify(execFile)(binaries.java, [
          "-cp", classpath, `-Dlog4j2.configurationFile=${log4jFile}`,
          "kafka.tools.StorageTool", "format", "--standalone", "-t", clusterId, "-c", config
        ]),
      catch: (cause) => new BrokerError({ message: `storage format failed: ${String(cause)}` })
    })

    const process_ = yield* Ref.make<ChildProcess | undefined>(undefined)

    const start = Effect.gen(function* () {
      const fd = openSync(logFile, "a")
      const child = spawn(
        binaries.java,
        [
          "-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
          `-Dkafka.logs.dir=${join(dir, "logs")}`, `-Dlog4j2.configurationFile=${log4jFile}`,
          "-cp", classpath, "kafka.Kafka", config
        ],
        { stdio: ["ignore", fd, fd] }
      )
      closeSync(fd)
      yield* Ref.set(process_, child)
      const before = (yield* Effect.promise(() => readFile(logFile, "utf8"))).split("Kafka Server started").length
      yield* Effect.promise(() => readFile(logFile, "utf8")).pipe(
        Effect.flatMap((text) =>
          child.exitCode !== null
            ? Effect.fail(new BrokerError({ message: `broker exited: ${text.slice(-2000)}` }))
            : text.split("Kafka Server started").length > before
              ? Effect.void
              : Effect.fail(new BrokerError({ message: "not started yet" }))
        ),
        Effect.retry({
          schedule: Schedule.spaced("100 millis"),
          while: (error) => error.message === "not started yet"
        }),
        Effect.timeoutFail({
          duration: "90 seconds",
          onTimeout: () => new BrokerError({ message: `broker not ready after 90 s (log ${logFile})` })
        })
      )
    })

    const signal = (name: NodeJS.Signals) =>
      Effect.flatMap(Ref.get(process_), (child) =>
        Effect.sync(() => {
          if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill(name)
        })
      )

    const stop = Effect.gen(function* () {
      const child = yield* Ref.get(process_)
      if (child === undefined) return
      yield* signal("SIGCONT")
      yield* signal("SIGTERM")
      yield* exited(child).pipe(
        Effect.timeout("20 seconds"),
        Effect.catchTag("TimeoutException", () => Effect.zipRight(signal("SIGKILL"), exited(child)))
      )
    })

    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        const child = yield* Ref.get(process_)
        if (child === undefined) return
        yield* signal("SIGCONT")
        yield* signal("SIGKILL")
        yield* exited(child)
      })
    )

    yield* start
    return {
      brokers: `127.0.0.1:${port}`,
      logFile,
      start,
      stop,
      kill: Effect.gen(function* () {
        const child = yield* Ref.get(process_)
        if (child === undefined) return
        yield* signal("SIGCONT")
        yield* signal("SIGKILL")
        yield* exited(child)
      }),
      // kill() returns before every thread of the JVM has stopped; under load a network thread can
      // still answer a request sent right after, so wait until each thread shows state T
      pause: Effect.zipRight(
        signal("SIGSTOP"),
        Effect.flatMap(Ref.get(process_), (child) =>
          child?.pid === undefined ? Effect.void : allThreadsStopped(child.pid)
        )
      ),
      resume: signal("SIGCONT")
    } satisfies PrivateBroker
  })
