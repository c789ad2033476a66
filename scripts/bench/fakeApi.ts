// An API server stand-in for in-memory benchmarks: answers the executor's LISTs (Jobs, pods,
// Configs, Events) from prepared JSON and holds every watch open without events. 127.0.0.1 only.
import { createServer, type Server } from "node:http"
import { writeFileSync } from "node:fs"
import { join } from "node:path"

export interface FakeApi {
  readonly kubeconfig: string
  readonly close: () => Promise<void>
}

const list = (kind: string, items: ReadonlyArray<unknown>) =>
  JSON.stringify({ apiVersion: "v1", kind: `${kind}List`, metadata: { resourceVersion: "999999999" }, items })

export const start = async (dir: string, namespace: string, objects: { readonly jobs: ReadonlyArray<unknown>; readonly pods: ReadonlyArray<unknown> }): Promise<FakeApi> => {
  const bodies = new Map<string, string>([
    [`/apis/batch/v1/namespaces/${namespace}/jobs`, list("Job", objects.jobs)],
    [`/api/v1/namespaces/${namespace}/pods`, list("Pod", objects.pods)],
    [`/api/v1/namespaces/${namespace}/events`, list("Event", [])]
  ])
  const watches = new Set<import("node:http").ServerResponse>()
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1")
    if (url.searchParams.get("watch") === "true" || url.searchParams.get("watch") === "1") {
      res.writeHead(200, { "content-type": "application/json" })
      res.flushHeaders()
      watches.add(res)
      res.on("close", () => watches.delete(res))
      return
    }
    const body = bodies.get(url.pathname) ?? (url.pathname.endsWith("/configs") ? list("Config", []) : undefined)
    if (body === undefined) {
      res.writeHead(404, { "content-type": "application/json" }).end(JSON.stringify({ kind: "Status", code: 404 }))
      return
    }
    res.writeHead(200, { "content-type": "application/json" }).end(body)
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()))
  const address = server.address()
  const port = typeof address === "object" && address !== null ? address.port : 0
  const kubeconfig = join(dir, "fake-kubeconfig.yaml")
  writeFileSync(
    kubeconfig,
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters: [{name: fake, cluster: {server: 'http://127.0.0.1:" + String(port) + "', insecure-skip-tls-verify: true}}]",
      "users: [{name: fake, user: {token: fake}}]",
      "contexts: [{name: fake, context: {cluster: fake, user: fake, namespace: " + namespace + "}}]",
      "current-context: fake",
      ""
    ].join("\n")
  )
  return {
    kubeconfig,
    close: () =>
      new Promise<void>((r) => {
        for (const w of watches) w.destroy()
        server.close(() => r())
      })
  }
}
