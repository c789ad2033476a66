// The installed executor with what an operator gets wrong: no ServiceAccount token, a token the API
// server does not accept, an API server that cannot be reached at start, the Config CRD missing,
// a ServiceAccount without the Role. Each gives a clear log line and a pod that runs and is not
// ready (no restarts, /healthz 200, /readiness 503); the recoverable ones become ready once fixed.
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Crd } from "@executor/kube"
import { type ExecutorImage, type Install, install, type InstallOptions, kubectl, readyImage } from "../support/executorInstall.js"
import { type NodeClients, nodeClients } from "../support/nodeCluster.js"
import { requireNode } from "../support/nodeEnv.js"
import { tcpProxy } from "../support/proxy.js"
import { eventually, sleep } from "../support/wait.js"

const node = requireNode("test/node/bad-input.test.ts")

interface LogLine {
  readonly message: string
  readonly logLevel: string
  readonly annotations: Readonly<Record<string, string | number>>
}

const parse = (logs: string): ReadonlyArray<LogLine> =>
  logs.split("\n").flatMap((line) => {
    try {
      return [JSON.parse(line) as LogLine]
    } catch {
      return []
    }
  })

const missingGroup = "missing.agent-executor.test"

describe.skipIf(node === undefined).concurrent("the installed executor with bad input", { timeout: 300_000 }, () => {
  let clients: NodeClients
  let image: ExecutorImage
  const installs: Array<Install> = []
  const cleanups: Array<() => Promise<unknown>> = []

  beforeAll(async () => {
    clients = nodeClients(node!)
    image = await readyImage(node!)
  }, 300_000)
  afterAll(async () => {
    await Promise.all(installs.map((i) => i.uninstall()))
    for (const cleanup of cleanups) await cleanup()
  }, 180_000)

  const installBad = async (label: string, options: Partial<InstallOptions>) => {
    const executor = await install(node!, clients, { label, image, waitReady: false, ...options })
    installs.push(executor)
    return executor
  }

  /**
   * The pod runs and stays not ready for `forMs` (no restart; /healthz 200, /readiness 503), and its
   * log has the line `expected` says, as an error, again and again (it keeps looking).
   */
  const stuck = async (executor: Install, expected: (line: LogLine) => boolean, forMs = 20_000) => {
    const pod = await eventually("the executor pod Running", 120_000, async () =>
      (await executor.pods()).find((p) => p.phase === "Running" && !p.deleting), 250)
    // node up and serving (a start-up takes long on a busy node), then watched for a while
    await eventually("/healthz 200", 120_000, async () => ((await executor.http("/healthz")).status === 200 ? true : undefined), 250)
    await sleep(forMs)
    const now = (await executor.pods()).find((p) => p.name === pod.name)!
    expect(now.phase).toBe("Running")
    expect(now.ready).toBe(false)
    expect(now.restarts).toBe(0)
    expect((await executor.http("/healthz")).status).toBe(200)
    expect((await executor.http("/readiness")).status).toBe(503)
    const lines = parse(await executor.logs(pod.name)).filter(expected)
    expect(lines.length, "the log line, repeated").toBeGreaterThanOrEqual(2)
    return { pod: now, line: lines[0]! }
  }

  const unusable = (problem: string) => (line: LogLine) =>
    line.annotations["event"] === "kube_unusable" && line.annotations["problem"] === problem && line.logLevel === "ERROR"

  it("without a ServiceAccount token (automountServiceAccountToken: false): names the missing files and the likely cause", async () => {
    const executor = await installBad("no-token", { pod: { automountServiceAccountToken: false } })
    const { line } = await stuck(executor, unusable("credentials_missing"))
    expect(line.message).toBe(
      "no token at /var/run/secrets/kubernetes.io/serviceaccount/token, no CA certificate at /var/run/secrets/kubernetes.io/serviceaccount/ca.crt: " +
        "no ServiceAccount token is mounted (automountServiceAccountToken is false on the pod or its ServiceAccount?); " +
        "not ready until this is fixed, looking again"
    )
  })

  it("with a token the API server does not accept: says the credentials are refused (401)", async () => {
    const executor = await installBad("bad-token", {
      pod: {
        automountServiceAccountToken: false,
        volumes: [{
          name: "forged-token",
          projected: {
            sources: [
              { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } },
              { downwardAPI: { items: [{ path: "namespace", fieldRef: { fieldPath: "metadata.namespace" } }] } },
              { secret: { name: "forged-token", items: [{ key: "token", path: "token" }] } }
            ]
          }
        }]
      },
      container: { volumeMounts: [{ name: "forged-token", mountPath: "/var/run/secrets/kubernetes.io/serviceaccount", readOnly: true }] },
      objects: [{ apiVersion: "v1", kind: "Secret", metadata: { name: "forged-token" }, stringData: { token: "eyJhbGciOiJSUzI1NiJ9.e30.forged" } }]
    })
    const { line } = await stuck(executor, unusable("unauthorized"))
    expect(line.message).toBe(
      "the API server at https://127.0.0.1:6443 does not accept the credentials (401 Unauthorized): " +
        "the ServiceAccount token is invalid, expired or of another cluster; not ready until this is fixed, looking again"
    )
  })

  it("with the API server unreachable at start: says so with the connection error, and becomes ready once it can be reached", async () => {
    const proxy = await tcpProxy(Number(new URL(node!.kubeApiserverUrl).port), { startCut: true })
    cleanups.push(proxy.close)
    const executor = await installBad("unreachable", { env: { KUBERNETES_SERVICE_PORT: String(proxy.port) } })
    const { line, pod } = await stuck(executor, unusable("unreachable"))
    expect(line.message).toMatch(
      new RegExp(`^cannot reach the API server at https://127\\.0\\.0\\.1:${proxy.port}: .*ECONNREFUSED.*; not ready until this is fixed, looking again$`)
    )
    await proxy.resume()
    const resumedAt = Date.now()
    const ready = await executor.waitReady(120_000)
    console.log(`[bad-input] API server reachable again: Ready after ${Date.now() - resumedAt} ms`)
    expect(ready.name).toBe(pod.name)
    expect(ready.restarts).toBe(0)
  })

  it("with the Config CRD missing: names the CRD and what to apply, and becomes ready once it is installed", async () => {
    // Another API group, so that the CRD the other test files use stays; its Role grants the group.
    const executor = await installBad("no-crd", {
      env: { API_GROUP: missingGroup },
      patches: [{
        target: { kind: "Role", name: "agent-task-executor" },
        patch: JSON.stringify([{ op: "add", path: "/rules/-", value: { apiGroups: [missingGroup], resources: ["configs"], verbs: ["list", "watch"] } }])
      }]
    })
    const { line, pod } = await stuck(executor, unusable("crd_missing"))
    expect(line.message).toBe(
      `the Config CRD configs.${missingGroup} (version v1) is not installed: apply deploy/crd.yaml (or run with APPLY_CRD=true); ` +
        "not ready until this is fixed, looking again"
    )
    // the operator installs the CRD (of this group)
    cleanups.push(() => kubectl(node!, ["delete", "crd", Crd.crdName(missingGroup), "--ignore-not-found"]))
    const crdFile = join(executor.overlayDir, `crd-${missingGroup}.yaml`)
    writeFileSync(crdFile, Crd.renderYaml(missingGroup))
    const result = await kubectl(node!, ["apply", "-f", crdFile])
    expect(result.code, result.stderr).toBe(0)
    const installedAt = Date.now()
    const ready = await executor.waitReady(120_000)
    console.log(`[bad-input] CRD installed: Ready after ${Date.now() - installedAt} ms`)
    expect(ready.name).toBe(pod.name)
    expect(ready.restarts).toBe(0)
  })

  it("under a ServiceAccount without the Role: the API server's 403 for each list, with the user and the resource", async () => {
    const executor = await installBad("no-role", { pod: { serviceAccountName: "default" } })
    const forbiddenList = (line: LogLine) =>
      line.annotations["event"] === "watch_restart" && line.annotations["kind"] === "Job" && String(line.annotations["status"]) === "403"
    const { line } = await stuck(executor, forbiddenList)
    expect(line.annotations["error"]).toBe(
      `jobs.batch is forbidden: User "system:serviceaccount:${executor.namespace}:default" cannot list resource "jobs" in API group "batch" in the namespace "${executor.namespace}"`
    )
  })
})
