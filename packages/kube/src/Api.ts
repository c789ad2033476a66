import {
  type ConfigurationOptions,
  Observable,
  type ObservableMiddleware,
  type PatchStrategy,
  type RequestContext,
  type ResponseContext
} from "@kubernetes/client-node"
import { Data, Duration, Effect } from "effect"
import { ClusterError, NotFound } from "@executor/executor"

/**
 * A failed call to the API server, classified once: `status` is the HTTP status (absent for
 * transport failures), `message` the API server's own `Status.message` when it sent one.
 */
export class KubeApiError extends Data.TaggedError("KubeApiError")<{
  readonly operation: string
  readonly target: string
  readonly status: number | undefined
  /** `Status.reason` of the API server (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...). */
  readonly reason: string | undefined
  readonly message: string
  /** 5xx, 429, timeouts and connection failures: worth retrying unchanged. */
  readonly transient: boolean
}> {}

export const isNotFound = (e: KubeApiError): boolean => e.status === 404
export const isConflict = (e: KubeApiError): boolean => e.status === 409

export const toClusterError = (e: KubeApiError): ClusterError =>
  new ClusterError({ operation: e.operation, target: e.target, transient: e.transient, message: e.message })

/** 404 becomes `NotFound` of `kind`; everything else a `ClusterError`. */
export const toPortError = (kind: string, name: string) => (e: KubeApiError): ClusterError | NotFound =>
  isNotFound(e) ? new NotFound({ kind, name }) : toClusterError(e)

/** Per-request timeout unless the caller sets one. */
export const defaultRequestTimeout: Duration.Duration = Duration.seconds(30)

/** Transport failures that heal by themselves (node-fetch `FetchError.code`). */
const transientCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "EHOSTDOWN",
  "ENETUNREACH",
  "ENETDOWN",
  "EAI_AGAIN",
  "ENOTFOUND",
  "UND_ERR_SOCKET",
  "ERR_STREAM_PREMATURE_CLOSE"
])

type Rec = Readonly<Record<string, unknown>>
const rec = (value: unknown): Rec =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Rec) : {}
const str = (value: unknown): string | undefined => (typeof value === "string" ? value : undefined)

/** The API server answers errors with a `Status` object; client-node hands us its raw text. */
const parseStatus = (body: unknown): { readonly message?: string; readonly reason?: string } => {
  const parsed: unknown = (() => {
    if (typeof body !== "string") return body
    try {
      return JSON.parse(body) as unknown
    } catch {
      return { message: body }
    }
  })()
  if (typeof parsed === "string") return parsed.trim() === "" ? {} : { message: parsed.trim() }
  const status = rec(parsed)
  const message = str(status["message"])
  const reason = str(status["reason"])
  return { ...(message === undefined ? {} : { message }), ...(reason === undefined ? {} : { reason }) }
}

const httpStatusText: Readonly<Record<number, string>> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  409: "Conflict",
  410: "Gone",
  422: "Unprocessable Entity",
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout"
}

/** Classifies anything a client-node call can reject with (`ApiException`, node-fetch `FetchError`, ...). */
export const classify = (operation: string, target: string, error: unknown): KubeApiError => {
  const e = rec(error)
  const code = e["code"]
  // ApiException: numeric `code` (the HTTP status) and the raw response `body`.
  if (typeof code === "number" && code > 0) {
    const status = parseStatus(e["body"])
    return new KubeApiError({
      operation,
      target,
      status: code,
      reason: status.reason,
      message: status.message ?? `HTTP ${code} ${httpStatusText[code] ?? ""}`.trim(),
      transient: code >= 500 || code === 429
    })
  }
  // The watch rejects with `Error(statusText)` plus `statusCode`.
  const statusCode = e["statusCode"]
  if (typeof statusCode === "number") {
    return new KubeApiError({
      operation,
      target,
      status: statusCode,
      reason: undefined,
      message: `HTTP ${statusCode} ${str(e["message"]) ?? ""}`.trim(),
      transient: statusCode >= 500 || statusCode === 429
    })
  }
  const message = str(e["message"]) ?? String(error)
  const name = str(e["name"])
  const transient =
    name === "AbortError" ||
    (typeof code === "string" && transientCodes.has(code)) ||
    (typeof e["errno"] === "string" && transientCodes.has(e["errno"])) ||
    /socket hang up|network timeout|premature close/i.test(message)
  return new KubeApiError({ operation, target, status: undefined, reason: undefined, message, transient })
}

const middleware = (pre: (context: RequestContext) => void): ObservableMiddleware => ({
  pre: (context: RequestContext) => {
    pre(context)
    return new Observable(Promise.resolve(context))
  },
  post: (context: ResponseContext) => new Observable(Promise.resolve(context))
})

export interface CallOptions {
  /** `Content-Type` of a PATCH; client-node 1.4 otherwise sends `application/json-patch+json`. */
  readonly contentType?: PatchStrategy
  readonly timeout?: Duration.DurationInput
}

/**
 * One API call. The request carries the fiber's abort signal, so interruption and the timeout
 * cancel the HTTP request itself. A timeout is a transient `KubeApiError`.
 */
export const call = <A>(
  operation: string,
  target: string,
  request: (options: ConfigurationOptions) => Promise<A>,
  options: CallOptions = {}
): Effect.Effect<A, KubeApiError> => {
  const timeout = options.timeout ?? defaultRequestTimeout
  return Effect.tryPromise({
    try: (signal) => {
      const contentType = options.contentType
      const configuration: ConfigurationOptions = {
        // A fresh array per call: client-node reverses the middleware list in place after each response.
        middleware: [
          middleware((context) => context.setSignal(signal)),
          ...(contentType === undefined ? [] : [middleware((context) => context.setHeaderParam("Content-Type", contentType))])
        ],
        middlewareMergeStrategy: "append"
      }
      return request(configuration)
    },
    catch: (error) => classify(operation, target, error)
  }).pipe(
    Effect.timeoutFail({
      duration: timeout,
      onTimeout: () =>
        new KubeApiError({
          operation,
          target,
          status: undefined,
          reason: "Timeout",
          message: `no answer from the API server within ${Duration.format(Duration.decode(timeout))}`,
          transient: true
        })
    })
  )
}
