import { Config, ConfigError, Cron, Either, Option, Redacted } from "effect"
import { Labels } from "@executor/domain"
import { defaultCronExpression, type ExecutorSettingsShape, parseCron } from "@executor/executor"

/** The settings of `run`, from the environment with the reference names (executor.md §3.4). */
export interface RunConfig {
  readonly listen: { readonly host: string; readonly port: number }
  readonly settings: ExecutorSettingsShape
  readonly healthcheckCron: Cron.Cron
  readonly agentsAuthSecret: Option.Option<Redacted.Redacted>
  readonly applyCrd: boolean
  readonly build: { readonly version: string; readonly commit: string; readonly date: Option.Option<string> }
  readonly logLevel: string
}

const invalid = (path: string, message: string) => ConfigError.InvalidData([path], message)

/** `:9090`, `127.0.0.1:9090` or `9090`. */
export const parseListen = (raw: string): Either.Either<RunConfig["listen"], string> => {
  const match = raw.match(/^(?:(\[[^\]]+\]|[^:]*):)?(\d{1,5})$/)
  const port = Number(match?.[2])
  if (match === null || !Number.isInteger(port) || port < 1 || port > 65535) {
    return Either.left(`expected [host]:port, e.g. :9090, got "${raw}"`)
  }
  const host = match[1] === undefined || match[1] === "" ? "0.0.0.0" : match[1].replace(/^\[|\]$/g, "")
  return Either.right({ host, port })
}

const required = (name: string) =>
  Config.string(name).pipe(
    Config.mapOrFail((s) => (s.trim() !== "" ? Either.right(s) : Either.left(invalid(name, "must not be empty"))))
  )

export const runConfig: Config.Config<RunConfig> = Config.all({
  listen: required("LISTEN").pipe(
    Config.mapOrFail((raw) => Either.mapLeft(parseListen(raw), (message) => invalid("LISTEN", message)))
  ),
  kafkaBrokers: required("KAFKA_BROKERS"),
  branch: required("BRANCH"),
  namespace: required("NAMESPACE"),
  topicPrefix: Config.string("TOPIC_PREFIX").pipe(Config.withDefault("")),
  apiGroup: Config.string("API_GROUP").pipe(Config.withDefault(Labels.DefaultApiGroup)),
  jobTtl: Config.integer("JOB_TTL_SECONDS_AFTER_FINISHED").pipe(
    Config.withDefault(1800),
    Config.mapOrFail((n) =>
      n >= 0
        ? Either.right(n)
        : Either.left(
            invalid("JOB_TTL_SECONDS_AFTER_FINISHED", `job-ttl-seconds-after-finished must be >= 0 (0 deletes immediately), got ${n}`)
          )
    )
  ),
  clientCertSecret: Config.string("JOB_KAFKA_CLIENT_CERT_SECRET").pipe(Config.withDefault("")),
  caCertSecret: Config.string("JOB_KAFKA_CA_CERT_SECRET").pipe(Config.withDefault("")),
  // `docker` like the reference executor (its clusters have that Secret); empty: agent pods name none
  imagePullSecret: Config.string("IMAGE_PULL_SECRET").pipe(Config.withDefault("docker")),
  cron: Config.string("HEALTHCHECK_CRON_EXPRESSION").pipe(
    Config.withDefault(defaultCronExpression),
    Config.mapOrFail((expression) =>
      Either.mapLeft(parseCron(expression), (error) => invalid("HEALTHCHECK_CRON_EXPRESSION", error.message))
    )
  ),
  agentsAuthSecret: Config.option(Config.redacted("AGENTS_AUTH_SECRET")).pipe(
    Config.map(Option.filter((secret) => Redacted.value(secret) !== ""))
  ),
  applyCrd: Config.boolean("APPLY_CRD").pipe(Config.withDefault(false)),
  version: Config.string("BUILD_GIT_VERSION").pipe(Config.withDefault("dev")),
  commit: Config.string("BUILD_GIT_COMMIT").pipe(Config.withDefault("none")),
  date: Config.option(Config.string("BUILD_DATE")),
  logLevel: Config.string("LOG_LEVEL").pipe(Config.withDefault("info"))
  // SENTRY_DSN is accepted (as any unread variable is) for compatibility; errors go to the logs
}).pipe(
  Config.map((c): RunConfig => ({
    listen: c.listen,
    settings: {
      namespace: c.namespace,
      branch: c.branch,
      topicPrefix: c.topicPrefix,
      kafkaBrokers: c.kafkaBrokers,
      jobTtlSecondsAfterFinished: c.jobTtl,
      kafkaClientCertSecret: c.clientCertSecret,
      kafkaCaCertSecret: c.caCertSecret,
      imagePullSecret: c.imagePullSecret.trim(),
      names: Labels.names(c.apiGroup)
    },
    healthcheckCron: c.cron,
    agentsAuthSecret: c.agentsAuthSecret,
    applyCrd: c.applyCrd,
    build: { version: c.version, commit: c.commit, date: c.date },
    logLevel: c.logLevel
  }))
)
