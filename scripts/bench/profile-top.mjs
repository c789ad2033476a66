#!/usr/bin/env node
// Self time by function (and by file) of a V8 .cpuprofile: node scripts/bench/profile-top.mjs FILE [N]
import { readFileSync } from "node:fs"
const [file, n = "25"] = process.argv.slice(2)
const profile = JSON.parse(readFileSync(file, "utf8"))
const byId = new Map(profile.nodes.map((node) => [node.id, node]))
const self = new Map()
const total = profile.samples.length
const dt = (profile.endTime - profile.startTime) / 1000 / total
for (const id of profile.samples) {
  const node = byId.get(id)
  const f = node.callFrame
  const key = `${f.functionName || "(anon)"} ${f.url.split("/").slice(-1)[0]}:${f.lineNumber}`
  self.set(key, (self.get(key) ?? 0) + 1)
}
const rows = [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(n))
console.log(`samples ${total}, ${((profile.endTime - profile.startTime) / 1e6).toFixed(1)} s, ~${dt.toFixed(2)} ms each`)
for (const [k, v] of rows) console.log(`${((100 * v) / total).toFixed(2).padStart(6)} %  ${(v * dt).toFixed(0).padStart(6)} ms  ${k}`)
if (process.argv.includes("--inclusive")) {
  const parent = new Map()
  for (const node of profile.nodes) for (const c of node.children ?? []) parent.set(c, node.id)
  const incl = new Map()
  for (const id of profile.samples) {
    const seen = new Set()
    for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
      const f = byId.get(cur).callFrame
      const key = `${f.functionName || "(anon)"} ${f.url.split("/").slice(-1)[0]}:${f.lineNumber}:${f.columnNumber}`
      if (seen.has(key)) continue
      seen.add(key)
      incl.set(key, (incl.get(key) ?? 0) + 1)
    }
  }
  console.log("inclusive:")
  for (const [k, v] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, Number(n))) console.log(`${((100 * v) / total).toFixed(2).padStart(6)} %  ${k}`)
}
