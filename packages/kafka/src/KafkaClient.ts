import { readFile } from "node:fs/promises"
import type { ConnectionOptions } from "node:tls"
import { Data, Deferred, Duration, Effect, Fiber, LogLevel, Runtime } from "effect"
import { Kafka, type LogEntry, logLevel } from "kafkajs"
import { type KafkaConfig, KafkaConfigError } from "./KafkaConfig.js"

/** A failed (or timed out) kafkajs call; the adapters map it to their port's error. */
export class KafkaCallError extends Data.TaggedError("KafkaCallError")<{
  readonly operation: string
  readonly cause: unknown
}> {
  override get message(): string {
    return `${this.operation}: ${describeError(this.cause)}`
  }
}

/** `Name: message` of an error and its causes (kafkajs nests the original error as `cause`). */
export const describeError = (error: unknown): string => {
  const parts: Array<string> = []
  let current: unknown = error
  for (let depth = 0; depth < 4 && current !== undefined && current !== null; depth++) {
    if (current instanceof Error) {
      parts.push(current.name === "Error" ? current.message : `${current.name}: ${current.message}`)
      current = (current as { readonly cause?: unknown }).cause
    } else {
      parts.push(String(current))
      current = undefined
    }
  }
  return [...new Set(parts)].join(" <- ")
}

/** A kafkajs promise as an Effect; interruption abandons the promise (kafkajs cannot cancel). */
export const attempt = <A>(operation: string, call: () => Promise<A>): Effect.Effect<A, KafkaCallError> =>
  Effect.tryPromise({ try: call, catch: (cause) => new KafkaCallError({ operation, cause }) })

/** `effect` failing with `KafkaCallError` (`operation: timed out after <ms> ms`) unless it completes within `ms`. */
export const withDeadline = <A, E, R>(
  operation: string,
  effect: Effect.Effect<A, E, R>,
  ms: number
): Effect.Effect<A, E | KafkaCallError, R> =>
  Effect.timeoutFail(effect, {
    duration: Duration.millis(ms),
    onTimeout: () => new KafkaCallError({ operation, cause: `timed out after ${ms} ms` })
  })

/**
 * A best-effort clean-up step (abort, disconnect) that never blocks longer than `timeoutMs`, also
 * inside a finalizer: `Effect.timeout` cannot cut an uninterruptible region short, so the call runs
 * on a daemon fiber and we wait for it or for the deadline, whichever comes first.
 */
export const cleanup = (operation: string, call: () => Promise<unknown>, timeoutMs: number): Effect.Effect<void> =>
  Effect.gen(function* () {
    const outcome = yield* Deferred.make<string>()
    const work = yield* Effect.forkDaemon(
      Effect.interruptible(
        attempt(operation, call).pipe(
          Effect.match({ onFailure: (error) => `failed: ${error.message}`, onSuccess: () => "ok" }),
          Effect.flatMap((result) => Deferred.succeed(outcome, result))
        )
      )
    )
    const deadline = yield* Effect.forkDaemon(
      Effect.interruptible(
        Effect.sleep(Duration.millis(timeoutMs)).pipe(
          Effect.zipRight(Deferred.succeed(outcome, `timed out after ${timeoutMs} ms`))
        )
      )
    )
    const result = yield* Deferred.await(outcome)
    yield* Fiber.interruptFork(deadline)
    yield* Fiber.interruptFork(work)
    if (result !== "ok") yield* Effect.logDebug(`kafka ${operation} ${result}`)
  })

const readPem = (path: string): Effect.Effect<string, KafkaConfigError> =>
  Effect.tryPromise({
    try: () => readFile(path, "utf8"),
    catch: (cause) => new KafkaConfigError({ message: `cannot read ${path}: ${describeError(cause)}` })
  })

/** The mTLS options of a `tls://` broker list, read from the files now (so a rotated cert is picked up on reconnect). */
export const tlsOptions = (config: KafkaConfig): Effect.Effect<ConnectionOptions | undefined, KafkaConfigError> =>
  config.brokers.tls
    ? Effect.all({
        ca: readPem(config.tlsFiles.ca),
        cert: readPem(config.tlsFiles.cert),
        key: readPem(config.tlsFiles.key)
      }).pipe(Effect.map(({ ca, cert, key }) => ({ ca: [ca], cert, key })))
    : Effect.succeed(undefined)

// kafkajs logs at ERROR every failed response and every retry it then makes itself (e.g. the
// CONCURRENT_TRANSACTIONS answer right after a commit); those are debug noise. What really failed
// reaches the caller as a PublishError / ConsumeError, and a consumer crash is logged as a warning.
const effectLevel = (entry: LogEntry): LogLevel.LogLevel => {
  const retried = entry.namespace === "Connection" || entry.log["retryCount"] !== undefined
  if (entry.level === logLevel.ERROR) return retried ? LogLevel.Debug : LogLevel.Warning
  return entry.level === logLevel.WARN ? LogLevel.Info : LogLevel.Debug
}

const loggedFields = ["broker", "clientId", "groupId", "topic", "partition", "retryCount", "retryTime"] as const

/** kafkajs log lines go to Effect's logger (kafkajs level ERROR only; no payloads, no stacks). */
const logCreator =
  (runtime: Runtime.Runtime<never>) =>
  () =>
  (entry: LogEntry): void => {
    const annotations: Record<string, string> = { logger: "kafkajs", namespace: entry.namespace }
    for (const field of loggedFields) {
      const value: unknown = entry.log[field]
      if (typeof value === "string" || typeof value === "number") annotations[field] = String(value)
    }
    const error: unknown = entry.log["error"]
    if (typeof error === "string") annotations["error"] = error
    Runtime.runSync(runtime)(
      Effect.logWithLevel(effectLevel(entry), `kafkajs: ${entry.log.message}`).pipe(
        Effect.annotateLogs(annotations)
      )
    )
  }

/** A fresh kafkajs client (own connections) for one producer, consumer or admin. */
export const makeKafka = (config: KafkaConfig, role: string): Effect.Effect<Kafka, KafkaConfigError> =>
  Effect.gen(function* () {
    const runtime = yield* Effect.runtime<never>()
    const ssl = yield* tlsOptions(config)
    const { timeouts } = config
    return yield* Effect.try({
      try: () =>
        new Kafka({
          clientId: `${config.clientId}-${role}`,
          brokers: [...config.brokers.addresses],
          ...(ssl === undefined ? {} : { ssl }),
          connectionTimeout: timeouts.connectionTimeoutMs,
          requestTimeout: timeouts.requestTimeoutMs,
          enforceRequestTimeout: true,
          retry: {
            retries: timeouts.retries,
            initialRetryTime: timeouts.initialRetryTimeMs,
            maxRetryTime: timeouts.maxRetryTimeMs
          },
          logLevel: logLevel.ERROR,
          logCreator: logCreator(runtime)
        }),
      catch: (cause) => new KafkaConfigError({ message: `kafkajs client: ${describeError(cause)}` })
    })
  })
