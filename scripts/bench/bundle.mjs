// Bundles a benchmark the way scripts/build.mjs bundles the executor (esbuild, ES module, syntax and
// whitespace minified, no keepNames), so the benchmark runs product code as it ships, not through
// tsx (whose keepNames wrapper renames every closure it creates). Prints nothing; returns the path.
import { mkdirSync } from "node:fs"
import { basename, join } from "node:path"

export const bundle = async (root, entry, outdir = join(root, "scripts/bench/.out")) => {
  const esbuild = await import("esbuild")
  mkdirSync(outdir, { recursive: true })
  const outfile = join(outdir, basename(entry).replace(/\.ts$/, ".mjs"))
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: [entry],
    outfile,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20.19",
    mainFields: ["module", "main"],
    external: ["bufferutil", "utf-8-validate", "esbuild", "tsx"],
    banner: { js: 'import { createRequire as __createRequire } from "node:module"; const require = __createRequire(import.meta.url);' },
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: "linked",
    logLevel: "warning"
  })
  return outfile
}
