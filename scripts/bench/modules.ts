/**
 * RSS by what is loaded: a bare node, then node with each runtime dependency of `run` imported
 * alone (from the workspace's node_modules), then the bundle's `run` chunk (everything, nothing
 * started). RSS 3 s after the imports, after a full GC.
 *   node scripts/bench/.out/modules.mjs
 */
import { spawn } from "node:child_process"
import { readdirSync } from "node:fs"
import { join } from "node:path"
import { root } from "./built.js"
import { load } from "./proc.js"

const chunks = join(root, "apps/executor/dist/chunks")
const runChunk = readdirSync(chunks).find((f) => f.startsWith("Run-") && f.endsWith(".mjs")) ?? ""
const cases: ReadonlyArray<readonly [string, string]> = [
  ["node alone", ""],
  ["effect", 'await import("effect")'],
  ["@effect/platform-node", 'await import("@effect/platform-node/NodeHttpServer")'],
  ["kafkajs", 'await import("kafkajs")'],
  ["@kubernetes/client-node", 'await import("@kubernetes/client-node")'],
  ["the bundle's run chunk (all of it)", `await import(${JSON.stringify(join(chunks, runChunk))})`]
]
const measure = (code: string) =>
  new Promise<Record<string, number>>((resolve, reject) => {
    const script = `${code}; await new Promise((r) => setTimeout(r, 3000)); globalThis.gc(); const m = process.memoryUsage(); process.stdout.write(JSON.stringify({ rss: m.rss / 1048576, heapUsed: m.heapUsed / 1048576, external: m.external / 1048576 }))`
    const child = spawn(process.execPath, ["--expose-gc", "--input-type=module", "-e", script], { cwd: join(root, "apps/executor"), stdio: ["ignore", "pipe", "inherit"] })
    let out = ""
    child.stdout.on("data", (d: Buffer) => (out += d.toString()))
    child.on("exit", (c) => (c === 0 ? resolve(JSON.parse(out) as Record<string, number>) : reject(new Error(`exit ${c}`))))
  })
for (const [label, code] of cases) {
  process.stdout.write(`${JSON.stringify({ bench: "modules", label, ...(await measure(code)), load: load() })}\n`)
}
