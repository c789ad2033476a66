import { Config, ConfigError, Either, Option, Schema } from "effect"

/** The consumer group of the executor (executor.md §3.1). */
export const executorGroup = "agent-task-executor"

/** Where the mTLS material of a `tls://` broker list is mounted (executor.md §3.4). */
export interface TlsFiles {
  /** PEM of the CA that signed the brokers' certificates. */
  readonly ca: string
  /** PEM of the client certificate. */
  readonly cert: string
  /** PEM of the client key. */
  readonly key: string
}

export const defaultTlsFiles: TlsFiles = {
  ca: "/server-cert/file",
  cert: "/client-cert/file",
  key: "/client-key/file"
}

/** A parsed `KAFKA_BROKERS`: `host:port` addresses for kafkajs, and whether they speak mTLS. */
export interface Brokers {
  readonly addresses: ReadonlyArray<string>
  readonly tls: boolean
}

/**
 * Timeouts and retries. Every kafkajs call of the adapters is bounded by one of these, so a dead or
 * hung broker yields an error instead of a hang.
 */
export interface KafkaTimeouts {
  /** TCP (and TLS) connect timeout per broker connection (kafkajs `connectionTimeout`). */
  readonly connectionTimeoutMs: number
  /** Per-request timeout (kafkajs `requestTimeout`). */
  readonly requestTimeoutMs: number
  /**
   * kafkajs's own retries of a failed request (at least 1: the idempotent producer requires it). A
   * send that kafkajs retries keeps its producer id and sequence, so the broker drops a copy it
   * already has; a send that fails after them all has an unknown outcome and is read back.
   */
  readonly retries: number
  readonly initialRetryTimeMs: number
  readonly maxRetryTimeMs: number
  /**
   * Upper bound of connecting the producer and of each placement and read-back (not of a send:
   * a send in flight is never abandoned, kafkajs's own retries bound it).
   */
  readonly publishTimeoutMs: number
  /**
   * Upper bound of connect + subscribe of the consumer, and of an offset commit. Joining the group
   * has its own bound, `joinTimeoutMs`.
   */
  readonly operationTimeoutMs: number
  /** Upper bound of a clean-up step (abort, disconnect); a clean-up never blocks longer. */
  readonly cleanupTimeoutMs: number
  readonly sessionTimeoutMs: number
  /**
   * How long the group waits for its members to rejoin in a rebalance (kafkajs `rebalanceTimeout`);
   * a member that died without leaving (a crash in a broker outage) holds a rebalance this long.
   */
  readonly rebalanceTimeoutMs: number
  readonly heartbeatIntervalMs: number
  /** How long a fetch waits for new messages (also bounds how long a consumer takes to stop). */
  readonly maxWaitTimeMs: number
}

export const defaultTimeouts: KafkaTimeouts = {
  connectionTimeoutMs: 3_000,
  requestTimeoutMs: 15_000,
  retries: 5,
  initialRetryTimeMs: 300,
  maxRetryTimeMs: 10_000,
  publishTimeoutMs: 30_000,
  operationTimeoutMs: 30_000,
  cleanupTimeoutMs: 5_000,
  sessionTimeoutMs: 30_000,
  rebalanceTimeoutMs: 30_000,
  heartbeatIntervalMs: 3_000,
  maxWaitTimeMs: 1_000
}

export interface KafkaConfig {
  readonly brokers: Brokers
  readonly tlsFiles: TlsFiles
  readonly clientId: string
  /** The consumer group of the task events. */
  readonly groupId: string
  /** `TOPIC_PREFIX`; topics are `Commands.topics(prefix)`. */
  readonly topicPrefix: string
  readonly timeouts: KafkaTimeouts
}

export class KafkaConfigError extends Schema.TaggedError<KafkaConfigError>()("KafkaConfigError", {
  message: Schema.String
}) {}

const schemeAndRest = /^([A-Za-z][A-Za-z0-9+._-]*):\/\/(.*)$/
const hostPort = /^([^\s:/[\]]+):([0-9]{1,5})$/

const parseBroker = (entry: string): Either.Either<{ readonly address: string; readonly tls: boolean }, string> => {
  const scheme = schemeAndRest.exec(entry)
  const name = scheme?.[1]?.toLowerCase()
  const rest = scheme === null ? entry : (scheme[2] ?? "")
  if (name !== undefined && name !== "tls" && name !== "plaintext") {
    return Either.left(`broker ${JSON.stringify(entry)}: unsupported scheme ${name}:// (use tls:// or none)`)
  }
  const match = hostPort.exec(rest)
  const port = Number(match?.[2])
  if (match === null || !(port >= 1 && port <= 65535)) {
    return Either.left(`broker ${JSON.stringify(entry)}: expected host:port`)
  }
  return Either.right({ address: `${match[1]}:${port}`, tls: name === "tls" })
}

/**
 * Parses `KAFKA_BROKERS`: comma-separated `host:port`, each optionally `tls://host:port`. `tls://`
 * means mTLS for the whole client (kafkajs has one TLS setting per client), so mixing `tls://` and
 * plain entries is an error.
 */
export const parseBrokers = (raw: string): Either.Either<Brokers, KafkaConfigError> => {
  const entries = raw
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "")
  if (entries.length === 0) return Either.left(new KafkaConfigError({ message: "no Kafka brokers configured" }))
  const parsed = entries.map(parseBroker)
  const problems = parsed.flatMap((result) => (Either.isLeft(result) ? [result.left] : []))
  if (problems.length > 0) return Either.left(new KafkaConfigError({ message: problems.join("; ") }))
  const brokers = parsed.flatMap((result) => (Either.isRight(result) ? [result.right] : []))
  const tls = brokers.some((broker) => broker.tls)
  if (tls && !brokers.every((broker) => broker.tls)) {
    return Either.left(new KafkaConfigError({ message: "brokers mix tls:// and plaintext entries" }))
  }
  return Either.right({ addresses: brokers.map((broker) => broker.address), tls })
}

export interface KafkaConfigInput {
  /** `KAFKA_BROKERS` verbatim. */
  readonly brokers: string
  readonly topicPrefix?: string
  readonly tlsFiles?: Partial<TlsFiles>
  readonly clientId?: string
  readonly groupId?: string
  readonly timeouts?: Partial<KafkaTimeouts>
}

/** A config with defaults for everything but the brokers. */
export const make = (input: KafkaConfigInput): Either.Either<KafkaConfig, KafkaConfigError> =>
  Either.flatMap(parseBrokers(input.brokers), (brokers) => {
    const timeouts = { ...defaultTimeouts, ...input.timeouts }
    if (!(Number.isInteger(timeouts.retries) && timeouts.retries >= 1)) {
      // kafkajs throws synchronously for an idempotent producer without retries
      return Either.left(new KafkaConfigError({ message: `timeouts.retries must be an integer >= 1, got ${timeouts.retries}` }))
    }
    if (timeouts.heartbeatIntervalMs >= timeouts.sessionTimeoutMs) {
      return Either.left(new KafkaConfigError({ message: "timeouts.heartbeatIntervalMs must be below sessionTimeoutMs" }))
    }
    return Either.right({
      brokers,
      tlsFiles: { ...defaultTlsFiles, ...input.tlsFiles },
      clientId: input.clientId ?? executorGroup,
      groupId: input.groupId ?? executorGroup,
      topicPrefix: input.topicPrefix ?? "",
      timeouts
    })
  })

const optionalString = (name: string, description: string) =>
  Config.string(name).pipe(Config.withDescription(description), Config.option)

/**
 * From the environment: `KAFKA_BROKERS` (required), `TOPIC_PREFIX`, `KAFKA_CLIENT_ID`, `KAFKA_GROUP_ID`,
 * `KAFKA_TLS_CA_FILE`, `KAFKA_TLS_CERT_FILE`, `KAFKA_TLS_KEY_FILE`, and the consumer's
 * `KAFKA_SESSION_TIMEOUT_MS` and `KAFKA_REBALANCE_TIMEOUT_MS` (default 30 000 each; the broker's
 * floor is 6 000): a restarted executor waits up to about that long for the member its
 * predecessor left behind before it gets its partitions back.
 */
export const fromEnv: Config.Config<KafkaConfig> = Config.all({
  brokers: Config.string("KAFKA_BROKERS").pipe(
    Config.withDescription("comma-separated host:port; tls://host:port means mTLS")
  ),
  topicPrefix: Config.string("TOPIC_PREFIX").pipe(Config.withDefault("")),
  clientId: optionalString("KAFKA_CLIENT_ID", "kafkajs client id"),
  groupId: optionalString("KAFKA_GROUP_ID", "consumer group of the task events"),
  ca: optionalString("KAFKA_TLS_CA_FILE", "PEM of the brokers' CA (tls:// only)"),
  cert: optionalString("KAFKA_TLS_CERT_FILE", "PEM of the client certificate (tls:// only)"),
  key: optionalString("KAFKA_TLS_KEY_FILE", "PEM of the client key (tls:// only)"),
  sessionTimeoutMs: Config.integer("KAFKA_SESSION_TIMEOUT_MS").pipe(
    Config.withDescription("consumer session timeout (ms)"),
    Config.validate({ message: "expected an integer from 6000 to 300000", validation: (n) => n >= 6_000 && n <= 300_000 }),
    Config.option
  ),
  rebalanceTimeoutMs: Config.integer("KAFKA_REBALANCE_TIMEOUT_MS").pipe(
    Config.withDescription("consumer rebalance timeout (ms)"),
    Config.validate({ message: "expected an integer from 6000 to 300000", validation: (n) => n >= 6_000 && n <= 300_000 }),
    Config.option
  )
}).pipe(
  Config.mapOrFail((env) => {
    const tlsFiles: Partial<{ -readonly [K in keyof TlsFiles]: TlsFiles[K] }> = {}
    const ca = Option.getOrUndefined(env.ca)
    const cert = Option.getOrUndefined(env.cert)
    const key = Option.getOrUndefined(env.key)
    if (ca !== undefined) tlsFiles.ca = ca
    if (cert !== undefined) tlsFiles.cert = cert
    if (key !== undefined) tlsFiles.key = key
    const clientId = Option.getOrUndefined(env.clientId)
    const groupId = Option.getOrUndefined(env.groupId)
    const timeouts: { -readonly [K in keyof KafkaTimeouts]?: KafkaTimeouts[K] } = {}
    if (Option.isSome(env.sessionTimeoutMs)) {
      timeouts.sessionTimeoutMs = env.sessionTimeoutMs.value
      // heartbeats at a third of the session, as Kafka's clients do
      timeouts.heartbeatIntervalMs = Math.min(defaultTimeouts.heartbeatIntervalMs, Math.floor(env.sessionTimeoutMs.value / 3))
    }
    if (Option.isSome(env.rebalanceTimeoutMs)) timeouts.rebalanceTimeoutMs = env.rebalanceTimeoutMs.value
    return make({
      brokers: env.brokers,
      topicPrefix: env.topicPrefix,
      tlsFiles,
      timeouts,
      ...(clientId === undefined ? {} : { clientId }),
      ...(groupId === undefined ? {} : { groupId })
    }).pipe(Either.mapLeft((error) => ConfigError.InvalidData(["KAFKA_BROKERS"], error.message)))
  })
)
