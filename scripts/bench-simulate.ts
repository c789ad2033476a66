/**
 * Benchmark of `simulate`: a generated scenario of 1,000 tasks over 24 simulated hours (mostly
 * healthy runs, some broken images, crashes, hangs, unschedulable pods, evictions, two executor
 * restarts, a broker outage, an operator deleting Jobs, a Config edit, agents with concurrency caps),
 * simulated in-process. Prints wall time, peak RSS, lines, verdicts by reason, and the invariant
 * check of the output.
 *
 *   node --import tsx scripts/bench-simulate.ts [--tasks 1000] [--hours 24] [--write out.jsonl] [--scenario out.json]
 *   node --cpu-prof --cpu-prof-dir=/tmp/prof --import tsx scripts/bench-simulate.ts   # then read the .cpuprofile
 */
import { writeFileSync } from "node:fs"
import { Effect, Either } from "effect"
import { checkInvariants, formatViolation } from "../apps/executor/test/Invariants.js"
import { jsonl } from "../apps/executor/src/simulate/Output.js"
import { validate } from "../apps/executor/src/simulate/Scenario.js"
import { simulate } from "../apps/executor/src/simulate/Simulation.js"

const argument = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`)
  return i < 0 ? undefined : process.argv[i + 1]
}
const taskCount = Number(argument("tasks") ?? 1000)
const hours = Number(argument("hours") ?? 24)

/** A small deterministic generator (mulberry32): the same scenario on every run. */
const rng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = seed
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const random = rng(42)
const between = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1))

const hex = (n: number, width: number) => n.toString(16).padStart(width, "0")
const taskId = (i: number) => `${hex(i, 8)}-${hex(between(0, 0xffff), 4)}-4${hex(between(0, 0xfff), 3)}-8${hex(between(0, 0xfff), 3)}-${hex(i * 7919, 12)}`

/** Agents: a share of the tasks each, some with a concurrency cap sized so the queue drains in the day. */
const agents = [
  { name: "claude", assignee: "claude-agent", share: 0.5, cap: 0, minutes: [2, 30] as const },
  { name: "codex", assignee: "codex-agent", share: 0.25, cap: 10, minutes: [2, 20] as const },
  { name: "gemini", assignee: "gemini-agent", share: 0.15, cap: 5, minutes: [2, 15] as const },
  { name: "reviewer", assignee: "reviewer-agent", share: 0.1, cap: 3, minutes: [1, 8] as const }
]
const specOf = (agent: (typeof agents)[number], timeout = 3600) => ({
  assignee: agent.assignee,
  image: `registry.example/agent-${agent.name}:v1`,
  heartbeat: "1h",
  taskTypes: ["llm"],
  zombieJobTimeoutSeconds: timeout,
  ...(agent.cap > 0 ? { maxConcurrentJobs: agent.cap } : {})
})

const succeed = (agent: (typeof agents)[number]) => ({ succeed: `${between(agent.minutes[0], agent.minutes[1])}m` })

/** The pod behaviours of a task's attempts (the last repeats): mostly healthy. */
const behaviours = (agent: (typeof agents)[number]): ReadonlyArray<unknown> => {
  const roll = random()
  const then = succeed(agent)
  if (roll < 0.7) return [then]
  if (roll < 0.78) return ["image-pull-fails", then]
  if (roll < 0.84) return [{ fail: `${between(1, 10)}m`, exitCode: 1 }, then]
  if (roll < 0.86) return [{ fail: `${between(1, 10)}m`, exitCode: 137, reason: "OOMKilled" }, then]
  if (roll < 0.91) return ["hang", then]
  if (roll < 0.95) return ["unschedulable", then]
  if (roll < 0.97) return [{ evicted: `${between(1, 10)}m` }, then]
  if (roll < 0.98) return ["no-pod", then]
  if (roll < 0.99) return ["invalid-image", then]
  if (roll < 0.995) return ["config-error", then]
  return [{ "image-pull-recovers": `${between(10, 120)}s` }, then]
}

const tasks: Array<{ taskIdentifier: string; at: number; frontmatter: Record<string, unknown>; content: string }> = []
const pods: Record<string, ReadonlyArray<unknown>> = { default: [{ succeed: "5m" }] }
const arrivalWindow = Math.floor(hours * 3600 * 0.8) // arrivals in the first 80 % so the day ends settled
for (let i = 0; i < taskCount; i++) {
  const pick = random()
  let acc = 0
  const agent = agents.find((a) => (acc += a.share) > pick) ?? agents[0]
  if (agent === undefined) throw new Error("no agents")
  const id = taskId(i + 1)
  tasks.push({
    taskIdentifier: id,
    at: between(0, arrivalWindow),
    frontmatter: { status: "in_progress", phase: "execution", assignee: agent.assignee, task_type: "llm", stage: "prod", max_triggers: 3 },
    content: `# Task ${i + 1}`
  })
  pods[id] = behaviours(agent)
}
tasks.sort((a, b) => a.at - b.at)
// A few that the dispatcher rejects (type mismatch).
for (const task of tasks.slice(0, Math.min(5, tasks.length))) task.frontmatter["task_type"] = "backtest"

const claude = agents[0]
if (claude === undefined) throw new Error("no agents")
const hangs = tasks.filter((t) => JSON.stringify(pods[t.taskIdentifier]?.[0]) === '"hang"')
const h = (x: number) => Math.floor(hours * 3600 * x)
const events: Array<Record<string, unknown>> = [
  { at: h(0.25), restartExecutor: "2m" },
  ...hangs.slice(0, 2).map((t) => ({ at: t.at + 600, deleteJob: t.taskIdentifier })),
  { at: h(0.42), kafkaDown: "10m" },
  { at: h(0.5), agent: { name: "claude", spec: specOf(claude, 2400) } },
  { at: h(0.625), restartExecutor: "5m" }
].sort((a, b) => Number(a["at"]) - Number(b["at"]))

const scenario = {
  name: `bench: ${taskCount} tasks over ${hours} h`,
  duration: `${hours}h`,
  agents: agents.map((agent) => ({ name: agent.name, spec: specOf(agent) })),
  tasks,
  pods,
  events
}

const scenarioOut = argument("scenario")
if (scenarioOut !== undefined) writeFileSync(scenarioOut, JSON.stringify(scenario, null, 1))

const validated = validate(scenario)
if (Either.isLeft(validated)) {
  process.stderr.write(`generated scenario is invalid: ${validated.left.message}\n`)
  process.exit(2)
}

/**
 * Counts the real timers set while simulating. Virtual time needs none (a TestClock-driven run set
 * three `setTimeout(0)`, at least 1 ms each, per simulated sleep); the few counted come from the
 * host runtime yielding to the event loop between batches.
 */
let realTimers = 0
const realSetTimeout = globalThis.setTimeout
const countingSetTimeout = ((...args: Parameters<typeof setTimeout>) => {
  realTimers++
  return realSetTimeout(...args)
}) as typeof setTimeout
globalThis.setTimeout = Object.assign(countingSetTimeout, realSetTimeout)

const rssBefore = process.memoryUsage().rss
const cpuBefore = process.cpuUsage()
const started = performance.now()
const lines = await Effect.runPromise(simulate(validated.right))
const wall = performance.now() - started
const cpu = process.cpuUsage(cpuBefore)
globalThis.setTimeout = realSetTimeout
const peakRss = process.resourceUsage().maxRSS * 1024 // KiB on Linux
const memory = process.memoryUsage()

const count = <K extends string>(keys: ReadonlyArray<K>) =>
  Object.fromEntries([...keys.reduce((m, k) => m.set(k, (m.get(k) ?? 0) + 1), new Map<K, number>())].sort(([, a], [, b]) => b - a))

const verdicts = lines.flatMap((l) => (l.kind === "verdict" ? [l] : []))
const final = lines[lines.length - 1]
const finalTasks = final?.kind === "final" ? Object.values(final.tasks) : []
const text = jsonl(lines)
const out = argument("write")
if (out !== undefined) writeFileSync(out, text)

const checkStarted = performance.now()
const violations = checkInvariants(text)
const checkWall = performance.now() - checkStarted

const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MB`
process.stdout.write(
  [
    `scenario          ${scenario.name}: ${agents.length} agents, ${events.length} interventions`,
    `wall time         ${(wall / 1000).toFixed(2)} s   (simulate only; target < 10 s)`,
    `CPU time          ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s   (all threads: above the wall time when the GC works in parallel)`,
    `real setTimeouts  ${realTimers}`,
    `peak RSS          ${mb(peakRss)}   (process maxRSS; RSS ${mb(rssBefore)} before, heap used ${mb(memory.heapUsed)} after)`,
    `lines             ${lines.length}   (${(text.length / 1024 / 1024).toFixed(1)} MB of JSON Lines)`,
    `lines by kind     ${JSON.stringify(count(lines.map((l) => l.kind)))}`,
    `Jobs created      ${lines.filter((l) => l.kind === "job.created").length}`,
    `verdicts          ${verdicts.length}`,
    `verdicts by reason ${JSON.stringify(count(verdicts.map((v) => v.reason)))}`,
    `verdicts by source ${JSON.stringify(count(verdicts.map((v) => v.source)))}`,
    `final tasks       ${JSON.stringify(count(finalTasks.map((t) => (t.frontmatter["status"] === "completed" ? "completed" : t.frontmatter["assignee"] === "" ? "inbox" : "other"))))}`,
    `invariants        ${violations.length === 0 ? "all hold" : `${violations.length} violations`}   (checked in ${(checkWall / 1000).toFixed(2)} s)`,
    ...violations.slice(0, 20).map((v) => `  ${formatViolation(v)}`),
    ""
  ].join("\n")
)
