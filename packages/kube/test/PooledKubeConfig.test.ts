import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import * as k8s from "@kubernetes/client-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { PooledKubeConfig } from "../src/PooledKubeConfig.js"

let server: Server
let connections = 0
let port = 0

beforeAll(async () => {
  server = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "application/json" })
    res.end(JSON.stringify({ apiVersion: "v1", kind: "PodList", metadata: { resourceVersion: "1" }, items: [] }))
  })
  server.on("connection", () => void connections++)
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  port = (server.address() as AddressInfo).port
})
afterAll(async () => {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

const load = <K extends k8s.KubeConfig>(kc: K): K => {
  kc.loadFromOptions({
    clusters: [{ name: "c", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: "u", token: "t" }],
    contexts: [{ name: "x", cluster: "c", user: "u" }],
    currentContext: "x"
  })
  return kc
}

const threeCalls = async (kc: k8s.KubeConfig) => {
  const core = kc.makeApiClient(k8s.CoreV1Api)
  const before = connections
  for (let i = 0; i < 3; i++) await core.listNamespacedPod({ namespace: "n" })
  return connections - before
}

describe("PooledKubeConfig", () => {
  it("API calls share one keep-alive connection (client-node alone opens one per call)", async () => {
    expect(await threeCalls(load(new k8s.KubeConfig()))).toBe(3)
    expect(await threeCalls(load(new PooledKubeConfig()))).toBe(1)
  })
})
