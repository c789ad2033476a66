// Plain HTTPS calls to the test stack's API server (its token and CA from state.json), for creating
// many objects fast: one keep-alive agent, a bounded number of calls at once.
import { readFileSync } from "node:fs"
import * as https from "node:https"
import { join } from "node:path"
import { jobWire, podWire } from "./fixtures.js"

export const rawApi = (stackDir: string) => {
  const state = JSON.parse(readFileSync(join(stackDir, "state.json"), "utf8")) as { kubeApiserverUrl: string; caFile: string; token: string }
  const agent = new https.Agent({ keepAlive: true, ca: readFileSync(state.caFile), maxSockets: 32 })
  const call = (method: string, path: string, body?: unknown, contentType = "application/json") =>
    new Promise<number>((resolve, reject) => {
      const req = https.request(
        new URL(path, state.kubeApiserverUrl),
        { method, agent, headers: { authorization: `Bearer ${state.token}`, "content-type": contentType } },
        (res) => {
          res.resume()
          res.on("end", () => resolve(res.statusCode ?? 0))
        }
      )
      req.on("error", reject)
      req.end(body === undefined ? undefined : JSON.stringify(body))
    })
  const expect = async (what: string, code: Promise<number>, ok: number) => {
    const got = await code
    if (got !== ok) throw new Error(`${what}: HTTP ${got}`)
  }
  return { call, expect, close: () => agent.destroy() }
}

export const pool = async (count: number, width: number, task: (i: number) => Promise<unknown>) => {
  let next = 0
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < count) await task(next++)
  }))
}

const strip = (o: { metadata: Record<string, unknown>; status?: unknown }) => {
  const { uid: _u, resourceVersion: _r, creationTimestamp: _c, ...metadata } = o.metadata
  const { status: _s, ...rest } = o
  return { ...rest, metadata }
}

/** A namespace with `n` Jobs of the executor's shape and their Running pods (statuses written). */
export const populate = async (api: ReturnType<typeof rawApi>, namespace: string, n: number, options: { readonly createNamespace?: boolean } = {}) => {
  if (options.createNamespace !== false) {
    await api.expect("namespace", api.call("POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } }), 201)
  }
  await pool(n, 32, (i) => api.expect("create Job", api.call("POST", `/apis/batch/v1/namespaces/${namespace}/jobs`, strip(jobWire(namespace, i))), 201))
  await pool(n, 32, async (i) => {
    const wire = podWire(namespace, i)
    await api.expect("create pod", api.call("POST", `/api/v1/namespaces/${namespace}/pods`, strip(wire)), 201)
    await api.expect(
      "pod status",
      api.call("PATCH", `/api/v1/namespaces/${namespace}/pods/${wire.metadata.name}/status`, { status: wire.status }, "application/merge-patch+json"),
      200
    )
  })
}
