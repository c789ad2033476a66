#!/usr/bin/env node
// The production build: apps/executor/src/main.ts bundled by esbuild into apps/executor/dist/
// (ES modules, one chunk per command, source maps beside them), run with plain `node`, without
// node_modules. Fails when the bundle holds a package that is not a production dependency of
// @executor/app. Also writes THIRD-PARTY-LICENSES.txt (the licenses of the bundled packages).
//
//   node scripts/build.mjs [--outdir DIR] [--if-stale]
//
// --if-stale: do nothing when no input of the last build (sources, package.json files, the
// lockfile, this script) changed since; what `pnpm start` and `pnpm simulate` run first.
// Messages go to stderr only: stdout belongs to the command that runs after the build.
import { existsSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..")
const app = join(root, "apps/executor")

const args = process.argv.slice(2)
const option = (name) => {
  const i = args.indexOf(name)
  return i === -1 ? undefined : args[i + 1]
}
const outdir = resolve(root, option("--outdir") ?? "apps/executor/dist")
const stamp = join(outdir, "build-inputs.json")
/** Inputs that are not modules of the bundle but decide what it holds. */
const alwaysInputs = [
  "package.json",
  "pnpm-lock.yaml",
  "pnpm-workspace.yaml",
  "scripts/build.mjs",
  ...["apps", "packages"].flatMap((d) => readdirSync(join(root, d)).map((p) => `${d}/${p}/package.json`))
]

const isStale = () => {
  if (!existsSync(stamp)) return true
  const builtAt = statSync(stamp).mtimeMs
  const { inputs } = JSON.parse(readFileSync(stamp, "utf8"))
  return [...alwaysInputs, ...inputs].some((path) => {
    const file = join(root, path)
    return !existsSync(file) || statSync(file).mtimeMs > builtAt
  })
}

if (args.includes("--if-stale") && !isStale()) process.exit(0)

const started = performance.now()
const esbuild = await import("esbuild")

// kafkajs and client-node's dependencies are CommonJS: in an ES module bundle their `require` of
// Node built-ins needs a real `require`.
const banner = 'import { createRequire as __createRequire } from "node:module"; const require = __createRequire(import.meta.url);'

rmSync(outdir, { recursive: true, force: true })
const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: { main: "apps/executor/src/main.ts" },
  outdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20.19",
  outExtension: { ".js": ".mjs" },
  chunkNames: "chunks/[name]-[hash]",
  mainFields: ["module", "main"],
  sourcemap: "linked",
  sourcesContent: false,
  banner: { js: banner },
  // optional native speed-ups of `ws`, and debug's optional colour detection (pnpm links it as a
  // peer whenever some dev tool has it): all loaded in a try/catch, never needed at run time
  external: ["bufferutil", "utf-8-validate", "supports-color"],
  // Whitespace and syntax only: names stay, so a stack trace names real functions and classes even
  // without the source maps; the run's RSS is 14 MiB lower than unminified (docs/design.md, "Build").
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: "none",
  metafile: true,
  logLevel: "warning"
})

/** The directory of the package.json that owns `file` (a workspace package or one in node_modules). */
const packageRoot = (file) => {
  let dir = dirname(realpathSync(file))
  while (dir !== dirname(dir)) {
    const manifest = join(dir, "package.json")
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, "utf8")).name !== undefined) return dir
    dir = dirname(dir)
  }
  throw new Error(`no package.json above ${file}`)
}

/** Node's lookup of `name` from `dir` (pnpm puts a package's dependencies beside it). */
const lookup = (dir, name) => {
  for (let d = dir; d !== dirname(d); d = dirname(d)) {
    const candidate = join(d, "node_modules", name)
    if (existsSync(join(candidate, "package.json"))) return realpathSync(candidate)
  }
  return undefined
}

/** Every package the app may load at run time: its dependencies and theirs (peers included). */
const productionClosure = () => {
  const seen = new Set()
  const queue = [realpathSync(app)]
  while (queue.length > 0) {
    const dir = queue.pop()
    if (seen.has(dir)) continue
    seen.add(dir)
    const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"))
    const names = new Set([
      ...Object.keys(manifest.dependencies ?? {}),
      ...Object.keys(manifest.optionalDependencies ?? {}),
      ...Object.keys(manifest.peerDependencies ?? {})
    ])
    for (const name of names) {
      const found = lookup(dir, name)
      if (found !== undefined) queue.push(found)
    }
  }
  return seen
}

const inputs = Object.keys(result.metafile.inputs).filter((path) => !path.startsWith("<"))
const bundled = new Map()
for (const path of inputs) {
  const dir = packageRoot(join(root, path))
  if (!bundled.has(dir)) bundled.set(dir, JSON.parse(readFileSync(join(dir, "package.json"), "utf8")))
}
const allowed = productionClosure()
const intruders = [...bundled.entries()].filter(([dir]) => !allowed.has(dir)).map(([, m]) => `${m.name}@${m.version}`)
if (intruders.length > 0) {
  rmSync(outdir, { recursive: true, force: true })
  process.stderr.write(`build: not production dependencies of @executor/app, yet bundled: ${intruders.join(", ")}\n`)
  process.exit(1)
}

const licenseText = (dir) => {
  const file = readdirSync(dir).find((name) => /^(licen[cs]e|copying)(\.|$)/i.test(name))
  return file === undefined ? undefined : readFileSync(join(dir, file), "utf8").trim()
}
const thirdParty = [...bundled.entries()]
  .filter(([dir]) => !dir.startsWith(join(root, "packages")) && !dir.startsWith(join(root, "apps")))
  .map(([dir, m]) => ({ id: `${m.name}@${m.version}`, license: m.license ?? "see text", text: licenseText(dir) }))
  .sort((a, b) => a.id.localeCompare(b.id))
writeFileSync(
  join(outdir, "THIRD-PARTY-LICENSES.txt"),
  thirdParty.map((p) => `${p.id} (${p.license})\n\n${p.text ?? "(no license file in the package)"}\n`).join(`\n${"-".repeat(72)}\n\n`)
)
writeFileSync(
  stamp,
  `${JSON.stringify({ packages: thirdParty.map((p) => p.id), inputs: inputs.filter((p) => !p.startsWith("node_modules/")) }, null, 1)}\n`
)

const bytes = Object.entries(result.metafile.outputs)
  .filter(([path]) => path.endsWith(".mjs"))
  .reduce((sum, [, o]) => sum + o.bytes, 0)
process.stderr.write(
  `build: ${relative(root, outdir)}/main.mjs, ${(bytes / 2 ** 20).toFixed(1)} MiB of JavaScript, ` +
    `${thirdParty.length} packages, ${((performance.now() - started) / 1000).toFixed(1)} s\n`
)
