import { existsSync } from "node:fs"
import * as k8s from "@kubernetes/client-node"
import { type Duration, Effect, Option, Schedule, Schema } from "effect"
import * as Api from "./Api.js"
import type { KubeConnectionShape } from "./KubeConfig.js"

/**
 * What stands between the executor and a usable API server, found at start, before any informer
 * lists: credentials that are not there, an API server that cannot be reached or refuses them, or a
 * Config CRD that is not installed. Each is one clear line in the log, repeated with a back-off, and
 * the service stays up and not ready until it is fixed (a crash loop would bury the cause under
 * restarts).
 */
export const Problem = Schema.Literal("credentials_missing", "unreachable", "unauthorized", "forbidden", "crd_missing", "unexpected")
export type Problem = typeof Problem.Type

export class ApiServerUnusable extends Schema.TaggedError<ApiServerUnusable>()("ApiServerUnusable", {
  problem: Problem,
  server: Schema.String,
  message: Schema.String
}) {}

export interface CheckOptions {
  /** The group whose `configs` (v1) must be served. */
  readonly apiGroup: string
  /** Of the discovery request; default 30 s. */
  readonly timeout?: Duration.DurationInput | undefined
}

const TokenFileProvider = Schema.Struct({ config: Schema.Struct({ tokenFile: Schema.String }) })

/** The files a kubeconfig names (the in-cluster one: the ServiceAccount token and CA). */
const namedFiles = (connection: KubeConnectionShape): ReadonlyArray<{ readonly what: string; readonly path: string }> => {
  const cluster = connection.kubeConfig.getCurrentCluster()
  const user = connection.kubeConfig.getCurrentUser()
  const tokenFile = Option.getOrUndefined(
    Option.map(Schema.decodeUnknownOption(TokenFileProvider)(user?.authProvider), (p) => p.config.tokenFile)
  )
  return [
    ...(tokenFile === undefined ? [] : [{ what: "token", path: tokenFile }]),
    ...(cluster?.caFile === undefined ? [] : [{ what: "CA certificate", path: cluster.caFile }]),
    ...(user?.certFile === undefined ? [] : [{ what: "client certificate", path: user.certFile }]),
    ...(user?.keyFile === undefined ? [] : [{ what: "client key", path: user.keyFile }])
  ]
}

const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

/** The API server's answer to the discovery of the Config group, explained. */
const explain = (server: string, apiGroup: string, error: Api.KubeApiError): ApiServerUnusable => {
  const crd = `configs.${apiGroup}`
  switch (error.status) {
    case undefined:
      return new ApiServerUnusable({
        problem: "unreachable",
        server,
        message: `cannot reach the API server at ${server}: ${error.message}`
      })
    case 401:
      return new ApiServerUnusable({
        problem: "unauthorized",
        server,
        message: `the API server at ${server} does not accept the credentials (401 Unauthorized): the ServiceAccount token is invalid, expired or of another cluster`
      })
    case 403:
      return new ApiServerUnusable({
        problem: "forbidden",
        server,
        message: `the API server at ${server} forbids the discovery of ${apiGroup} (403): ${error.message}`
      })
    case 404:
      return new ApiServerUnusable({
        problem: "crd_missing",
        server,
        message: `the Config CRD ${crd} (version v1) is not installed: apply deploy/crd.yaml (or run with APPLY_CRD=true)`
      })
    default:
      return new ApiServerUnusable({
        problem: "unexpected",
        server,
        message: `the API server at ${server} answered the discovery of ${apiGroup}/v1 with ${error.status}: ${error.message}`
      })
  }
}

/** One look: the named files exist, and the API server serves `configs` of the group to these credentials. */
export const check = (connection: KubeConnectionShape, options: CheckOptions): Effect.Effect<void, ApiServerUnusable> =>
  Effect.gen(function*() {
    const { server } = connection
    const missing = namedFiles(connection).filter((file) => !existsSync(file.path))
    if (missing.length > 0) {
      const inCluster = missing.some((file) => file.path.startsWith(serviceAccountDir))
      return yield* new ApiServerUnusable({
        problem: "credentials_missing",
        server,
        message: `no ${missing.map((f) => `${f.what} at ${f.path}`).join(", no ")}` +
          (inCluster ? ": no ServiceAccount token is mounted (automountServiceAccountToken is false on the pod or its ServiceAccount?)" : "")
      })
    }
    const custom = connection.kubeConfig.makeApiClient(k8s.CustomObjectsApi)
    const resources = yield* Api.call(
      "discovery",
      `${options.apiGroup}/v1`,
      (o) => custom.getAPIResources({ group: options.apiGroup, version: "v1" }, o),
      options.timeout === undefined ? {} : { timeout: options.timeout }
    ).pipe(Effect.mapError((error) => explain(server, options.apiGroup, error)))
    if (!resources.resources.some((r) => r.name === "configs")) {
      return yield* explain(server, options.apiGroup, new Api.KubeApiError({
        operation: "discovery",
        target: `${options.apiGroup}/v1`,
        status: 404,
        reason: "NotFound",
        message: "no configs resource",
        transient: false
      }))
    }
  })

/** 1 s, doubling, at most 30 s apart: an operator reading `kubectl logs` soon sees the line again. */
export const retrySchedule: Schedule.Schedule<unknown, ApiServerUnusable> = Schedule.exponential("1 second", 2).pipe(
  Schedule.union(Schedule.spaced("30 seconds"))
)

/**
 * Looks until the API server is usable, logging each failed look as an error with what to fix;
 * completes once it is (and says so once).
 */
export const awaitUsable = (
  connection: KubeConnectionShape,
  options: CheckOptions & { readonly schedule?: Schedule.Schedule<unknown, ApiServerUnusable> | undefined }
): Effect.Effect<void> =>
  check(connection, options).pipe(
    Effect.tapError((problem) =>
      Effect.logError(`${problem.message}; not ready until this is fixed, looking again`).pipe(
        Effect.annotateLogs({ event: "kube_unusable", problem: problem.problem, server: problem.server })
      )
    ),
    Effect.retry(options.schedule ?? retrySchedule),
    Effect.zipRight(
      Effect.logInfo(`the API server at ${connection.server} serves configs.${options.apiGroup}/v1`).pipe(
        Effect.annotateLogs({ event: "kube_usable" })
      )
    ),
    // a schedule that ends leaves the service not ready, as it was: never a crash
    Effect.catchAll(() => Effect.never),
    Effect.annotateLogs({ service: "ApiServerCheck" })
  )
