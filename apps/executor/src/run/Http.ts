import { createHash, timingSafeEqual } from "node:crypto"
import * as HttpRouter from "@effect/platform/HttpRouter"
import * as HttpServerRequest from "@effect/platform/HttpServerRequest"
import * as HttpServerResponse from "@effect/platform/HttpServerResponse"
import { Effect, Option, Redacted } from "effect"
import { AgentRegistry, Healthcheck, Readiness } from "@executor/executor"
import { LogLevelControl, parseLevel } from "./LogLevelControl.js"
import * as Prometheus from "./Prometheus.js"

const digest = (value: string) => createHash("sha256").update(value).digest()

/** Constant-time comparison of a presented secret (D4.11). */
export const secretMatches = (presented: string, secret: Redacted.Redacted) =>
  timingSafeEqual(digest(presented), digest(Redacted.value(secret)))

const presentedSecret = (headers: Readonly<Record<string, string | undefined>>): string | undefined => {
  const direct = headers["x-agent-auth"]
  if (direct !== undefined) return direct
  const bearer = headers["authorization"]?.match(/^Bearer\s+(.+)$/i)?.[1]
  return bearer
}

const authorized = (secret: Option.Option<Redacted.Redacted>) =>
  Effect.map(HttpServerRequest.HttpServerRequest, (request) => {
    if (Option.isNone(secret)) return true
    const presented = presentedSecret(request.headers)
    return presented !== undefined && secretMatches(presented, secret.value)
  })

const unauthorized = HttpServerResponse.text("unauthorized", { status: 401 })
const postOnly = Effect.succeed(
  HttpServerResponse.text("method not allowed; use POST", { status: 405, headers: { allow: "POST" } })
)

/** The reference's endpoints (executor.md §3.3) with the fixes of D4.8 and D4.11. */
export const router = (options: { readonly agentsAuthSecret: Option.Option<Redacted.Redacted> }) =>
  HttpRouter.empty.pipe(
    HttpRouter.get("/healthz", Effect.succeed(HttpServerResponse.text("OK"))),
    HttpRouter.get(
      "/readiness",
      Effect.flatMap(Readiness, (r) => r.isReady).pipe(
        Effect.map((ready) =>
          ready ? HttpServerResponse.text("OK") : HttpServerResponse.text("not ready", { status: 503 })
        )
      )
    ),
    HttpRouter.get(
      "/metrics",
      Effect.map(Prometheus.render, (body) =>
        HttpServerResponse.text(body, { contentType: "text/plain; version=0.0.4; charset=utf-8" })
      )
    ),
    HttpRouter.all(
      "/setloglevel/:level",
      Effect.gen(function* () {
        const { level } = yield* HttpRouter.params
        const parsed = parseLevel(level ?? "")
        if (Option.isNone(parsed)) return HttpServerResponse.text(`unknown log level "${level}"`, { status: 400 })
        yield* Effect.flatMap(LogLevelControl, (c) => c.set(parsed.value))
        return HttpServerResponse.text(`set log level to ${parsed.value.label} for 5 minutes`)
      })
    ),
    HttpRouter.all(
      "/agents",
      Effect.gen(function* () {
        if (!(yield* authorized(options.agentsAuthSecret))) return unauthorized
        const agents = yield* Effect.flatMap(AgentRegistry, (r) => r.all)
        const body = agents.map((a) => ({
          name: a.name,
          assignee: a.spec.assignee,
          image: a.spec.image,
          heartbeat: a.spec.heartbeat,
          ...(a.spec.secretName === "" ? {} : { secretName: a.spec.secretName }),
          ...(a.spec.volumeClaim === "" ? {} : { volumeClaim: a.spec.volumeClaim }),
          ...(a.spec.volumeMountPath === "" ? {} : { volumeMountPath: a.spec.volumeMountPath })
        }))
        return HttpServerResponse.unsafeJson(body)
      })
    ),
    HttpRouter.post(
      "/healthcheck-trigger",
      Effect.gen(function* () {
        if (!(yield* authorized(options.agentsAuthSecret))) return unauthorized
        const healthcheck = yield* Healthcheck
        // Fire and forget, single flight: the probe runs apart from the request.
        yield* Effect.forkDaemon(healthcheck.trigger)
        return HttpServerResponse.text("run triggered. Check logs for progress.")
      })
    ),
    HttpRouter.get("/healthcheck-trigger", postOnly),
    HttpRouter.put("/healthcheck-trigger", postOnly),
    HttpRouter.del("/healthcheck-trigger", postOnly),
    HttpRouter.patch("/healthcheck-trigger", postOnly)
  )
