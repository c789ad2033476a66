#!/usr/bin/env node
// Bytes of the executor's bundle by package (what scripts/build.mjs bundles, same options), from
// esbuild's metafile: node scripts/bench/bundle-breakdown.mjs
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"
const root = resolve(import.meta.dirname, "../..")
const esbuild = await import("esbuild")
const outdir = mkdtempSync(join(tmpdir(), "breakdown-"))
const result = await esbuild.build({
  absWorkingDir: root, entryPoints: { main: "apps/executor/src/main.ts" }, outdir, bundle: true, splitting: true, format: "esm",
  platform: "node", target: "node20.19", mainFields: ["module", "main"], external: ["bufferutil", "utf-8-validate"],
  minifyWhitespace: true, minifySyntax: true, metafile: true, logLevel: "warning"
})
rmSync(outdir, { recursive: true, force: true })
const byPackage = new Map()
for (const output of Object.values(result.metafile.outputs)) {
  for (const [input, { bytesInOutput }] of Object.entries(output.inputs)) {
    const m = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)/.exec(input)
    const name = m === null ? (input.startsWith("packages/") || input.startsWith("apps/") ? "(this project)" : input) : m[1]
    byPackage.set(name, (byPackage.get(name) ?? 0) + bytesInOutput)
  }
}
const total = [...byPackage.values()].reduce((a, b) => a + b, 0)
for (const [name, bytes] of [...byPackage].sort((a, b) => b[1] - a[1]).slice(0, 15)) {
  process.stdout.write(`${JSON.stringify({ bench: "bundle", package: name, kib: Math.round(bytes / 1024), share: bytes / total })}\n`)
}
