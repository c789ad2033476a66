// The registry inside the node's namespace (test/support/ociRegistry.ts), as a client of the OCI
// distribution API sees it: what containerd needs to pull with imagePullPolicy Always, and nothing
// that would let a test push or reach outside the image layouts.
import { createHash } from "node:crypto"
import { connect } from "node:net"
import { describe, expect, it } from "vitest"
import { requireNode } from "../support/nodeEnv.js"

const node = requireNode("test/node/registry.test.ts")
const ociManifest = "application/vnd.oci.image.manifest.v1+json"

const sha256 = (bytes: ArrayBuffer) => `sha256:${createHash("sha256").update(Buffer.from(bytes)).digest("hex")}`

describe.skipIf(node === undefined)("the node's registry", () => {
  const base = `http://${node?.registry}/v2`

  it("answers the API version check", async () => {
    const res = await fetch(`${base}/`)
    expect(res.status).toBe(200)
    expect(res.headers.get("docker-distribution-api-version")).toBe("registry/2.0")
  })

  it("serves the agent's manifest by tag and by digest, with its media type and digest, and its blobs", async () => {
    const head = await fetch(`${base}/agent/manifests/1`, { method: "HEAD" })
    expect(head.status).toBe(200)
    expect(head.headers.get("content-type")).toBe(ociManifest)
    const digest = head.headers.get("docker-content-digest")!

    const byTag = await fetch(`${base}/agent/manifests/1`)
    const body = await byTag.arrayBuffer()
    expect(sha256(body)).toBe(digest)
    expect(Number(head.headers.get("content-length"))).toBe(body.byteLength)
    const byDigest = await fetch(`${base}/agent/manifests/${digest}`)
    expect(byDigest.headers.get("content-type")).toBe(ociManifest)
    expect(sha256(await byDigest.arrayBuffer())).toBe(digest)

    const manifest = JSON.parse(Buffer.from(body).toString("utf8")) as {
      readonly config: { readonly digest: string }
      readonly layers: ReadonlyArray<{ readonly digest: string; readonly size: number }>
    }
    for (const blob of [manifest.config, ...manifest.layers]) {
      const blobHead = await fetch(`${base}/agent/blobs/${blob.digest}`, { method: "HEAD" })
      expect(blobHead.status).toBe(200)
      expect(blobHead.headers.get("docker-content-digest")).toBe(blob.digest)
      expect(sha256(await (await fetch(`${base}/agent/blobs/${blob.digest}`)).arrayBuffer())).toBe(blob.digest)
    }
  })

  it("answers unknown names, tags and blobs with the distribution API's 404 errors, and refuses writes", async () => {
    const code = async (path: string, init?: RequestInit) => {
      const res = await fetch(`${base}${path}`, init)
      return [res.status, ((await res.json()) as { errors: ReadonlyArray<{ code: string }> }).errors[0]?.code] as const
    }
    expect(await code("/agent/manifests/2")).toEqual([404, "MANIFEST_UNKNOWN"])
    expect(await code("/nope/manifests/1")).toEqual([404, "NAME_UNKNOWN"])
    expect(await code(`/agent/blobs/sha256:${"0".repeat(64)}`)).toEqual([404, "BLOB_UNKNOWN"])
    expect(await code("/agent/blobs/../../index.json")).toEqual([404, "UNSUPPORTED"])
    expect(await code("/agent/manifests/1", { method: "PUT", body: "{}" })).toEqual([405, "UNSUPPORTED"])
  })

  it("leaves 127.0.0.1:5999 unused (the unreachable image's registry)", async () => {
    const refused = await new Promise<boolean>((resolve) => {
      const socket = connect(5999, "127.0.0.1")
      socket.once("connect", () => {
        socket.destroy()
        resolve(false)
      })
      socket.once("error", () => resolve(true))
    })
    expect(refused).toBe(true)
  })
})
