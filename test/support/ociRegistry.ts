// A read-only container registry (the pull side of the OCI distribution API) over directories of
// OCI image layouts: ROOT/<name>/{oci-layout,index.json,blobs/sha256/...} is served as
// <host>/<name>:<tag> (the tag is the layout's `org.opencontainers.image.ref.name` annotation).
// test/infra/node-up.sh runs it inside the node's network namespace on 127.0.0.1:5001, so that the
// kubelet's `imagePullPolicy: Always` pulls go to it and nowhere else.
//
//   node --import tsx test/support/ociRegistry.ts --root DIR [--listen 127.0.0.1:5001]
//
// Each request is logged to stdout as one line `METHOD path status` (the tests count the pulls).
import { createReadStream, existsSync, readFileSync, statSync } from "node:fs"
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import { join } from "node:path"
import { pathToFileURL } from "node:url"
import { Either, Schema } from "effect"

const Descriptor = Schema.Struct({
  mediaType: Schema.String,
  digest: Schema.String,
  size: Schema.Number,
  annotations: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String }))
})
const ImageIndex = Schema.Struct({ schemaVersion: Schema.Literal(2), manifests: Schema.Array(Descriptor) })
const MediaTyped = Schema.Struct({ mediaType: Schema.optional(Schema.String) })

const refName = "org.opencontainers.image.ref.name"
// the grammar of the distribution spec: it also keeps every path inside ROOT
const namePattern = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/
const tagPattern = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$/
const digestPattern = /^sha256:[a-f0-9]{64}$/
const route = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/
const tagsRoute = /^\/v2\/(.+)\/tags\/list$/

type ErrorCode = "NAME_UNKNOWN" | "MANIFEST_UNKNOWN" | "BLOB_UNKNOWN" | "NAME_INVALID" | "DIGEST_INVALID" | "TAG_INVALID" | "UNSUPPORTED"

const apiHeaders = { "Docker-Distribution-API-Version": "registry/2.0" }

const sendError = (res: ServerResponse, status: number, code: ErrorCode, message: string) => {
  const body = JSON.stringify({ errors: [{ code, message, detail: null }] })
  res.writeHead(status, { ...apiHeaders, "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) })
  res.end(body)
}

const readIndex = (layout: string) => {
  const file = join(layout, "index.json")
  if (!existsSync(file)) return undefined
  const decoded = Schema.decodeUnknownEither(Schema.parseJson(ImageIndex))(readFileSync(file, "utf8"))
  return Either.getOrUndefined(decoded)
}

const blobPath = (layout: string, digest: string) => join(layout, "blobs", "sha256", digest.slice("sha256:".length))

/** The manifest's media type: the index's descriptor says it; a child manifest says it itself. */
const manifestMediaType = (path: string): string | undefined => {
  const decoded = Schema.decodeUnknownEither(Schema.parseJson(MediaTyped))(readFileSync(path, "utf8"))
  return Either.getOrUndefined(decoded)?.mediaType
}

const handle = (root: string, req: IncomingMessage, res: ServerResponse) => {
  const path = new URL(req.url ?? "/", "http://registry").pathname
  const method = req.method ?? "GET"
  if (method !== "GET" && method !== "HEAD") return sendError(res, 405, "UNSUPPORTED", "this registry is read-only")
  if (path === "/v2/" || path === "/v2") {
    res.writeHead(200, { ...apiHeaders, "Content-Type": "application/json", "Content-Length": 2 })
    return res.end(method === "HEAD" ? undefined : "{}")
  }

  const tags = tagsRoute.exec(path)
  if (tags?.[1] !== undefined) {
    const name = tags[1]
    const index = namePattern.test(name) ? readIndex(join(root, name)) : undefined
    if (index === undefined) return sendError(res, 404, "NAME_UNKNOWN", `repository ${name} not known`)
    const names = index.manifests.flatMap((m) => (m.annotations?.[refName] !== undefined ? [m.annotations[refName]] : []))
    const body = JSON.stringify({ name, tags: names })
    res.writeHead(200, { ...apiHeaders, "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) })
    return res.end(method === "HEAD" ? undefined : body)
  }

  const match = route.exec(path)
  const [, name, kind, reference] = match ?? []
  if (name === undefined || kind === undefined || reference === undefined) return sendError(res, 404, "UNSUPPORTED", `no route ${path}`)
  if (!namePattern.test(name)) return sendError(res, 400, "NAME_INVALID", `invalid repository name ${name}`)
  const layout = join(root, name)
  const index = readIndex(layout)
  if (index === undefined) return sendError(res, 404, "NAME_UNKNOWN", `repository ${name} not known`)

  let digest: string
  let contentType = "application/octet-stream"
  if (kind === "manifests") {
    const byDigest = digestPattern.test(reference)
    if (!byDigest && !tagPattern.test(reference)) return sendError(res, 400, "TAG_INVALID", `invalid tag ${reference}`)
    const described = index.manifests.find((m) => (byDigest ? m.digest === reference : m.annotations?.[refName] === reference))
    if (described === undefined && !(byDigest && existsSync(blobPath(layout, reference)))) {
      return sendError(res, 404, "MANIFEST_UNKNOWN", `manifest ${name}:${reference} not known`)
    }
    digest = described?.digest ?? reference
    const mediaType = described?.mediaType ?? manifestMediaType(blobPath(layout, digest))
    if (mediaType === undefined) return sendError(res, 404, "MANIFEST_UNKNOWN", `${name}@${digest} is not a manifest`)
    contentType = mediaType
  } else {
    if (!digestPattern.test(reference)) return sendError(res, 400, "DIGEST_INVALID", `invalid digest ${reference}`)
    digest = reference
  }

  const file = blobPath(layout, digest)
  if (!existsSync(file)) {
    return kind === "manifests"
      ? sendError(res, 404, "MANIFEST_UNKNOWN", `manifest ${name}@${digest} is missing from the layout`)
      : sendError(res, 404, "BLOB_UNKNOWN", `blob ${name}@${digest} not known`)
  }
  res.writeHead(200, {
    ...apiHeaders,
    "Content-Type": contentType,
    "Content-Length": statSync(file).size,
    "Docker-Content-Digest": digest,
    ETag: `"${digest}"`
  })
  if (method === "HEAD") return res.end()
  createReadStream(file).pipe(res)
}

/** Serves `root` on host:port; resolves once listening. */
export const startOciRegistry = (options: { readonly root: string; readonly host: string; readonly port: number; readonly log?: (line: string) => void }) =>
  new Promise<Server>((resolve, reject) => {
    const server = createServer((req, res) => {
      res.on("finish", () => options.log?.(`${req.method ?? "?"} ${req.url ?? "?"} ${res.statusCode}`))
      try {
        handle(options.root, req, res)
      } catch (error) {
        if (!res.headersSent) sendError(res, 500, "UNSUPPORTED", String(error))
        else res.destroy()
      }
    })
    server.once("error", reject)
    server.listen(options.port, options.host, () => resolve(server))
  })

const main = async (argv: ReadonlyArray<string>) => {
  const flag = (name: string) => {
    const at = argv.indexOf(name)
    return at >= 0 ? argv[at + 1] : undefined
  }
  const root = flag("--root")
  const [host = "127.0.0.1", port = "5001"] = (flag("--listen") ?? "127.0.0.1:5001").split(":")
  if (root === undefined || !existsSync(root)) throw new Error(`usage: ociRegistry.ts --root DIR [--listen HOST:PORT] (root: ${root})`)
  const server = await startOciRegistry({ root, host, port: Number(port), log: (line) => process.stdout.write(`${line}\n`) })
  process.stdout.write(`oci registry: serving ${root} on http://${host}:${port}\n`)
  const stop = () => {
    server.close(() => process.exit(0))
    server.closeAllConnections()
  }
  process.once("SIGTERM", stop)
  process.once("SIGINT", stop)
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(1)
  })
}
