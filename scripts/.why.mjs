import * as esbuild from "esbuild"
const r = await esbuild.build({ absWorkingDir: process.cwd(), entryPoints: { main: "apps/executor/src/main.ts" }, outdir: "/tmp/an-out", bundle: true, splitting: true, format: "esm", platform: "node", target: "node20.19", outExtension: { ".js": ".mjs" }, mainFields: ["module", "main"], external: ["bufferutil", "utf-8-validate"], metafile: true, logLevel: "warning", write: false })
console.log(await esbuild.analyzeMetafile(r.metafile, { verbose: true }))
for (const [out, o] of Object.entries(r.metafile.outputs)) if (!out.endsWith('.map')) console.log('OUT', out.split('/').pop(), (o.bytes/1024).toFixed(0)+'K', 'imports:', o.imports.map(i=>i.path.split('/').pop()+(i.kind==='dynamic-import'?'(dyn)':'')).join(' '))
