import { createServer } from "node:http"
import * as HttpServer from "@effect/platform/HttpServer"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import { Effect, Layer, LogLevel, Metric, Option } from "effect"
import { Gates } from "@executor/domain"
import {
  Executor,
  ExecutorSettings,
  Healthcheck,
  HealthcheckCronLive,
  Journal,
  Metrics,
  Verdicts
} from "@executor/executor"
import { KafkaEventSource, KafkaRequestLog } from "@executor/kafka"
import { Crd, KubeCluster, KubeConfig } from "@executor/kube"
import { router } from "./Http.js"
import * as LogLevelControl from "./LogLevelControl.js"
import type { RunConfig } from "./RunConfig.js"

const buildInfo = Metric.gauge("build_info", { description: "Build information; the value is the build date in Unix seconds" })

/** Reference metrics exist from the start, with every `result` at 0 (executor.md §4.3, REF §8.26). */
const initialiseMetrics = (config: RunConfig) =>
  Effect.gen(function* () {
    for (const result of Gates.eventResults) {
      yield* Metric.incrementBy(Metric.tagged(Metrics.taskEvents, "result", result), 0)
    }
    yield* Metric.incrementBy(Metrics.jobsSpawned, 0)
    const built = Option.match(config.build.date, { onNone: () => 0, onSome: (d) => Date.parse(d) / 1000 })
    yield* Metric.set(
      Metric.tagged(Metric.tagged(buildInfo, "version", config.build.version), "commit", config.build.commit),
      Number.isFinite(built) ? built : 0
    )
  })

/**
 * The composition root of the service: the executor's layers over the real cluster and broker,
 * the HTTP endpoints, the healthcheck cron, and logging.
 */
export const layer = (config: RunConfig) => {
  const settings = ExecutorSettings.layer(config.settings)
  const kube = KubeCluster.layerFromSettings().pipe(Layer.provide(KubeConfig.layerFromEnv), Layer.provide(settings))
  const crd = config.applyCrd
    ? Layer.effectDiscard(Crd.applyCrd({ apiGroup: config.settings.names.apiGroup })).pipe(Layer.provide(KubeConfig.layerFromEnv))
    : Layer.empty
  const infra = Layer.mergeAll(
    kube,
    KafkaRequestLog.layerPublisherFromEnv(),
    KafkaEventSource.layerFromEnv,
    settings,
    Journal.layerLog
  ).pipe(Layer.provide(crd))
  const executor = Executor.layerExecutor.pipe(Layer.provideMerge(infra))
  // The HTTP server needs only the executor's state, not its start-up: /healthz answers and
  // /readiness says 503 while the caches sync and runs are recovered.
  const serving = Healthcheck.layer.pipe(Layer.provideMerge(Executor.layerState), Layer.provideMerge(infra))
  // SIGTERM: before the layers close, verdicts being published get up to 10 s to finish.
  const drain = Layer.scopedDiscard(
    Effect.flatMap(Verdicts, (verdicts) => Effect.addFinalizer(() => verdicts.drain("10 seconds")))
  ).pipe(Layer.provide(executor))
  const cron = HealthcheckCronLive(config.healthcheckCron).pipe(Layer.provide(serving))
  const http = router({ agentsAuthSecret: config.agentsAuthSecret }).pipe(
    HttpServer.serve(),
    HttpServer.withLogAddress,
    Layer.provide(NodeHttpServer.layer(createServer, { port: config.listen.port, host: config.listen.host })),
    Layer.provide(serving)
  )
  const level = Option.getOrElse(LogLevelControl.parseLevel(config.logLevel), () => LogLevel.Info)
  return Layer.mergeAll(http, cron, drain, Layer.effectDiscard(initialiseMetrics(config))).pipe(
    Layer.provide(LogLevelControl.layer(level))
  )
}

