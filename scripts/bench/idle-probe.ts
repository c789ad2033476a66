import { startBuilt, stack, log } from "./built.js"
import { sampler, load } from "./proc.js"
import { sleep } from "../../test/support/wait.js"
const s = await stack()
const extra = (process.env["NODE_EXTRA"] ?? "").split(" ").filter((x) => x !== "")
const b = await startBuilt(s, { namespace: "default", prefix: `idle${process.pid}`, logDir: "/tmp/idle-logs", nodeArgs: extra })
const ms = await b.ready()
log(`ready in ${ms.toFixed(0)} ms`)
await sleep(5000)
const sm = sampler(b.pid)
await sleep(Number(process.env["IDLE_S"] ?? 60) * 1000)
const r = sm.stop()
console.log(JSON.stringify({ extra, ...r, load: load() }))
if (process.env["SHOW_METRICS"] !== undefined) console.log((await b.metrics()).split("\n").filter((l) => /^(process|nodejs)_/.test(l)).join("\n"))
await b.stop()
