// The start-up check of `run` against a real kube-apiserver (test/infra/up.sh): each thing that
// keeps the executor from using the API server is named, and the wait ends once it is fixed.
import { randomBytes } from "node:crypto"
import { describe, expect, it } from "@effect/vitest"
import { ApiServerCheck, Crd, KubeConfig } from "@executor/kube"
import { Effect, Fiber, HashMap, Logger, Option, Schedule } from "effect"
import { redirected, tcpProxy } from "./support.js"

const kubeconfig = process.env["KUBECONFIG"] ?? ""
const missingGroup = `absent-${randomBytes(3).toString("hex")}.agent-executor.test`

const admin = KubeConfig.load(KubeConfig.file(kubeconfig))
const connectionTo = (server: string) =>
  Effect.flatMap(admin, (connection) => KubeConfig.load(redirected(connection.kubeConfig, server)))

const problemOf = (connection: KubeConfig.KubeConnectionShape, apiGroup = "agent.benjamin-borbe.de") =>
  Effect.flip(ApiServerCheck.check(connection, { apiGroup, timeout: "5 seconds" }))

describe.skipIf(kubeconfig === "")("ApiServerCheck against a real kube-apiserver", () => {
  it.effect("passes with the admin's credentials once the Config CRD is served", () =>
    Effect.gen(function*() {
      yield* Crd.applyCrd().pipe(Effect.provide(KubeConfig.layer(KubeConfig.file(kubeconfig))))
      yield* ApiServerCheck.check(yield* admin, { apiGroup: "agent.benjamin-borbe.de" })
    }), 60_000)

  it.effect("a group whose CRD is not installed: crd_missing, naming the CRD and what to apply", () =>
    Effect.gen(function*() {
      const problem = yield* problemOf(yield* admin, missingGroup)
      expect(problem.problem).toBe("crd_missing")
      expect(problem.message).toBe(
        `the Config CRD configs.${missingGroup} (version v1) is not installed: apply deploy/crd.yaml (or run with APPLY_CRD=true)`
      )
    }))

  it.effect("a token the API server does not know: unauthorized", () =>
    Effect.gen(function*() {
      const { kubeConfig } = yield* admin
      const cluster = kubeConfig.getCurrentCluster()!
      const connection = yield* KubeConfig.load(KubeConfig.options({
        clusters: [cluster],
        users: [{ name: "stranger", token: "not-a-token" }],
        contexts: [{ name: "stranger", cluster: cluster.name, user: "stranger" }],
        currentContext: "stranger"
      }))
      const problem = yield* problemOf(connection)
      expect(problem.problem).toBe("unauthorized")
      expect(problem.message).toContain(`the API server at ${cluster.server} does not accept the credentials (401 Unauthorized)`)
    }))

  it.effect("nothing listening at the address: unreachable, with the connection error", () =>
    Effect.gen(function*() {
      const proxy = yield* tcpProxy("127.0.0.1", 1)
      yield* proxy.cut
      const server = `https://127.0.0.1:${proxy.port}`
      const problem = yield* problemOf(yield* connectionTo(server))
      expect(problem.problem).toBe("unreachable")
      expect(problem.message).toMatch(new RegExp(`^cannot reach the API server at ${server}: .*ECONNREFUSED`))
    }).pipe(Effect.scoped))

  it.effect("in a pod without a mounted ServiceAccount token: credentials_missing, naming the files and the likely cause", () =>
    Effect.gen(function*() {
      const saved = { host: process.env["KUBERNETES_SERVICE_HOST"], port: process.env["KUBERNETES_SERVICE_PORT"] }
      process.env["KUBERNETES_SERVICE_HOST"] = "127.0.0.1"
      process.env["KUBERNETES_SERVICE_PORT"] = "1"
      const connection = yield* KubeConfig.load(KubeConfig.InCluster).pipe(
        Effect.ensuring(Effect.sync(() => {
          for (const [key, value] of [["KUBERNETES_SERVICE_HOST", saved.host], ["KUBERNETES_SERVICE_PORT", saved.port]] as const) {
            if (value === undefined) delete process.env[key]
            else process.env[key] = value
          }
        }))
      )
      const problem = yield* problemOf(connection)
      expect(problem.problem).toBe("credentials_missing")
      expect(problem.message).toBe(
        "no token at /var/run/secrets/kubernetes.io/serviceaccount/token, no CA certificate at /var/run/secrets/kubernetes.io/serviceaccount/ca.crt: " +
          "no ServiceAccount token is mounted (automountServiceAccountToken is false on the pod or its ServiceAccount?)"
      )
    }))

  it.live("awaitUsable logs the problem as an error until the API server can be reached, then completes", () =>
    Effect.gen(function*() {
      const { kubeConfig } = yield* admin
      const target = new URL(kubeConfig.getCurrentCluster()!.server)
      const proxy = yield* tcpProxy("127.0.0.1", Number(target.port))
      yield* proxy.cut
      const lines: Array<{ readonly level: string; readonly message: string; readonly problem: unknown }> = []
      const capture = Logger.make(({ annotations, logLevel, message }) => {
        const text = Array.isArray(message) ? message[0] : message
        lines.push({ level: logLevel.label, message: String(text), problem: Option.getOrUndefined(HashMap.get(annotations, "problem")) })
      })
      const connection = yield* connectionTo(`https://127.0.0.1:${proxy.port}`)
      const waiting = yield* ApiServerCheck.awaitUsable(connection, {
        apiGroup: "agent.benjamin-borbe.de",
        schedule: Schedule.spaced("200 millis")
      }).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)), Effect.fork)
      yield* Effect.sleep("1 second")
      expect(yield* Fiber.poll(waiting)).toMatchObject({ _tag: "None" })
      expect(lines.length).toBeGreaterThanOrEqual(2)
      expect(lines.every((l) => l.level === "ERROR" && l.problem === "unreachable")).toBe(true)
      expect(lines[0]?.message).toMatch(/^cannot reach the API server at https:\/\/127\.0\.0\.1:\d+: .*; not ready until this is fixed, looking again$/)
      yield* proxy.resume
      yield* Fiber.join(waiting).pipe(Effect.timeout("5 seconds"))
      expect(lines.at(-1)).toMatchObject({ level: "INFO", message: expect.stringContaining("serves configs.agent.benjamin-borbe.de/v1") })
    }).pipe(Effect.scoped), 30_000)
})
