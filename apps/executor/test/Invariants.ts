/**
 * Invariants of a simulation run, checked over its JSON Lines (simulation.md "Output"; decisions D4.2,
 * D5, D6). The checker only reads the documented kinds and fields, so it works on the output of any
 * implementation of the contract. It returns every violation it finds (empty = the run is sound), so a
 * test can print them all.
 *
 *   (a) never two active Jobs for one task (active: created, and neither finished nor deleted yet);
 *   (b) every run that ended without a result (Job finished Failed, or deleted without finishing
 *       Complete) has exactly one verdict; a run whose Job finished Complete has none, except one
 *       `pod_evicted` (an eviction whose process exited 0 completes its Job: real-cluster.md); no run
 *       ever has two;
 *   (c) at the end every task is completed, or in the operator inbox (assignee ""), or has an active Job;
 *   (d) every failure verdict (source ≠ dispatch) is published exactly once as the failure pair of D5:
 *       one `update-frontmatter` `{current_job: ""}` whose `## Failure` section names that Job, and one
 *       `increment-frontmatter` `trigger_count` +1 for the same key appended at the same `t` (one
 *       record batch); every type mismatch (dispatch verdict) exactly once as its single update; the
 *       executor never writes phase or status, and assignee/previous_assignee only for a type mismatch;
 *   (e) every command's `key` is its `data.taskIdentifier`.
 *
 * Lines with the same `t` may come in any order (simulation.md), so within one instant Job endings are
 * applied before Job creations.
 */
import { Either, Schema } from "effect"

export type Invariant = "format" | "a" | "b" | "c" | "d" | "e"

export interface Violation {
  readonly invariant: Invariant
  readonly t: number | undefined
  readonly message: string
}

export const formatViolation = (v: Violation): string =>
  `[${v.invariant}]${v.t === undefined ? "" : ` t=${v.t}`} ${v.message}`

// ---------------------------------------------------------------------------------------------------
// The documented lines

const T = Schema.Number.pipe(Schema.finite(), Schema.nonNegative())

const JobCreated = Schema.Struct({
  t: T,
  kind: Schema.Literal("job.created"),
  task: Schema.String,
  job: Schema.String,
  attempt: Schema.Number
})
const JobDeleted = Schema.Struct({ t: T, kind: Schema.Literal("job.deleted"), task: Schema.String, job: Schema.String })
const JobFinished = Schema.Struct({
  t: T,
  kind: Schema.Literal("job.finished"),
  task: Schema.String,
  job: Schema.String,
  outcome: Schema.Literal("Complete", "Failed"),
  reason: Schema.String
})
const VerdictSource = Schema.Literal("pod", "job", "sweeper", "recovery", "dispatch")
const Verdict = Schema.Struct({
  t: T,
  kind: Schema.Literal("verdict"),
  task: Schema.String,
  job: Schema.optional(Schema.String),
  reason: Schema.String,
  detail: Schema.optional(Schema.String),
  source: VerdictSource
})
const Command = Schema.Struct({
  t: T,
  kind: Schema.Literal("command"),
  topic: Schema.String,
  key: Schema.NullOr(Schema.String),
  operation: Schema.String,
  initiator: Schema.optional(Schema.String),
  data: Schema.Unknown
})
const FinalTask = Schema.Struct({
  frontmatter: Schema.Record({ key: Schema.String, value: Schema.Unknown }),
  content: Schema.optional(Schema.String)
})
const Final = Schema.Struct({
  t: T,
  kind: Schema.Literal("final"),
  tasks: Schema.Record({ key: Schema.String, value: FinalTask })
})
/** Any other kind (e.g. `intervention`): kept for ordering only (readers ignore it). */
const Other = Schema.Struct({ t: T, kind: Schema.String })

export const RunLine = Schema.Union(JobCreated, JobDeleted, JobFinished, Verdict, Command, Final)
export type RunLine = typeof RunLine.Type
export type JobCreatedLine = typeof JobCreated.Type
export type VerdictLine = typeof Verdict.Type
export type CommandLine = typeof Command.Type
export type FinalLine = typeof Final.Type

const knownKinds = new Set(["job.created", "job.deleted", "job.finished", "verdict", "command", "final"])

const decodeLine = Schema.decodeUnknownEither(RunLine)
const decodeOther = Schema.decodeUnknownEither(Other)

export interface ParsedRun {
  /** The documented lines, in output order (other kinds dropped). */
  readonly lines: ReadonlyArray<RunLine>
  readonly violations: ReadonlyArray<Violation>
}

/** Parses JSON Lines (or already-parsed objects), checking the shape of every documented line. */
export const parseRun = (input: string | ReadonlyArray<unknown>): ParsedRun => {
  const violations: Array<Violation> = []
  const raw: ReadonlyArray<unknown> =
    typeof input === "string"
      ? input
          .split("\n")
          .filter((text) => text.trim() !== "")
          .map((text, i): unknown => {
            try {
              return JSON.parse(text)
            } catch {
              violations.push({ invariant: "format", t: undefined, message: `line ${i + 1} is not JSON: ${text.slice(0, 80)}` })
              return undefined
            }
          })
      : input
  const lines: Array<RunLine> = []
  let lastT = 0
  let finals = 0
  raw.forEach((value, i) => {
    if (value === undefined) return
    const other = decodeOther(value)
    if (Either.isLeft(other)) {
      violations.push({ invariant: "format", t: undefined, message: `line ${i + 1} lacks a numeric t or a kind: ${JSON.stringify(value).slice(0, 120)}` })
      return
    }
    const { t, kind } = other.right
    if (t < lastT) violations.push({ invariant: "format", t, message: `line ${i + 1} (${kind}) goes back in time from t=${lastT}` })
    lastT = Math.max(lastT, t)
    if (finals > 0) violations.push({ invariant: "format", t, message: `line ${i + 1} (${kind}) comes after the final line` })
    if (!knownKinds.has(kind)) return
    const line = decodeLine(value)
    if (Either.isLeft(line)) {
      violations.push({ invariant: "format", t, message: `line ${i + 1} (${kind}) lacks a required field: ${JSON.stringify(value).slice(0, 160)}` })
      return
    }
    if (line.right.kind === "final") finals++
    lines.push(line.right)
  })
  if (finals !== 1) violations.push({ invariant: "format", t: undefined, message: `expected exactly one final line, got ${finals}` })
  else if (lines[lines.length - 1]?.kind !== "final") violations.push({ invariant: "format", t: undefined, message: "the last line is not the final line" })
  return { lines, violations }
}

// ---------------------------------------------------------------------------------------------------
// Commands, as D5 describes them

const UpdateData = Schema.Struct({
  taskIdentifier: Schema.String,
  updates: Schema.Record({ key: Schema.String, value: Schema.Unknown }),
  body: Schema.optional(Schema.Struct({ heading: Schema.String, section: Schema.String }))
})
const IncrementData = Schema.Struct({ taskIdentifier: Schema.String, field: Schema.String, delta: Schema.Number })
const KeyedData = Schema.Struct({ taskIdentifier: Schema.String })
const decodeUpdate = Schema.decodeUnknownOption(UpdateData)
const decodeIncrement = Schema.decodeUnknownOption(IncrementData)
const decodeKeyed = Schema.decodeUnknownOption(KeyedData)

const sectionField = (section: string, name: string): string | undefined =>
  section.match(new RegExp(`^- \\*\\*${name}:\\*\\* (.*)$`, "m"))?.[1]?.trim()

/** What an executor command is, for the pairing rules of D5. */
export type Classified =
  | { readonly _tag: "FailureUpdate"; readonly line: CommandLine; readonly job: string | undefined; readonly reason: string | undefined; readonly updates: Readonly<Record<string, unknown>> }
  | { readonly _tag: "MismatchUpdate"; readonly line: CommandLine; readonly updates: Readonly<Record<string, unknown>> }
  | { readonly _tag: "SpawnUpdate"; readonly line: CommandLine; readonly job: string; readonly updates: Readonly<Record<string, unknown>> }
  | { readonly _tag: "TriggerIncrement"; readonly line: CommandLine; readonly delta: number }
  | { readonly _tag: "OtherUpdate"; readonly line: CommandLine; readonly updates: Readonly<Record<string, unknown>> }
  | { readonly _tag: "Other"; readonly line: CommandLine }

export const classify = (line: CommandLine): Classified => {
  if (line.operation === "increment-frontmatter") {
    const data = decodeIncrement(line.data)
    if (data._tag === "Some" && data.value.field === "trigger_count") return { _tag: "TriggerIncrement", line, delta: data.value.delta }
    return { _tag: "Other", line }
  }
  if (line.operation !== "update-frontmatter") return { _tag: "Other", line }
  const data = decodeUpdate(line.data)
  if (data._tag === "None") return { _tag: "Other", line }
  const { updates, body } = data.value
  const reason = body === undefined ? undefined : sectionField(body.section, "Reason")
  if (reason === "type_mismatch") return { _tag: "MismatchUpdate", line, updates }
  const currentJob = updates["current_job"]
  if (currentJob === "") {
    return { _tag: "FailureUpdate", line, job: body === undefined ? undefined : sectionField(body.section, "Job"), reason, updates }
  }
  if (typeof currentJob === "string") return { _tag: "SpawnUpdate", line, job: currentJob, updates }
  return { _tag: "OtherUpdate", line, updates }
}

// ---------------------------------------------------------------------------------------------------
// Jobs over time

export interface JobHistory {
  readonly task: string
  readonly job: string
  readonly created: number
  readonly attempt: number
  finished: { readonly t: number; readonly outcome: "Complete" | "Failed"; readonly reason: string } | undefined
  deleted: number | undefined
}

export interface JobTimeline {
  readonly jobs: ReadonlyMap<string, JobHistory>
  /** Jobs active at the end, by task. */
  readonly activeAtEnd: ReadonlyMap<string, ReadonlySet<string>>
  /** The largest number of Jobs active at one instant, over all tasks. */
  readonly maxActive: number
  readonly violations: ReadonlyArray<Violation>
}

const short = (id: string) => id.slice(0, 8)

/** Replays the Job lines in `t` order (endings before creations within one instant): invariant (a). */
export const jobTimeline = (lines: ReadonlyArray<RunLine>): JobTimeline => {
  const violations: Array<Violation> = []
  const jobs = new Map<string, JobHistory>()
  const active = new Map<string, Set<string>>()
  let maxActive = 0
  let activeCount = 0
  const rank = (line: RunLine) => (line.kind === "job.created" ? 1 : 0)
  const jobLines = lines
    .filter((l) => l.kind === "job.created" || l.kind === "job.deleted" || l.kind === "job.finished")
    .map((line, i) => ({ line, i }))
    .sort((a, b) => a.line.t - b.line.t || rank(a.line) - rank(b.line) || a.i - b.i)
    .map(({ line }) => line)
  const end = (task: string, job: string) => {
    const set = active.get(task)
    if (set?.delete(job) === true) activeCount--
  }
  for (const line of jobLines) {
    switch (line.kind) {
      case "job.created": {
        if (jobs.has(line.job)) {
          violations.push({ invariant: "a", t: line.t, message: `Job ${line.job} created twice` })
          continue
        }
        jobs.set(line.job, { task: line.task, job: line.job, created: line.t, attempt: line.attempt, finished: undefined, deleted: undefined })
        const set = active.get(line.task) ?? new Set<string>()
        if (set.size > 0) {
          violations.push({
            invariant: "a",
            t: line.t,
            message: `task ${short(line.task)}: Job ${line.job} created while ${[...set].join(", ")} still active`
          })
        }
        set.add(line.job)
        active.set(line.task, set)
        activeCount++
        maxActive = Math.max(maxActive, activeCount)
        break
      }
      case "job.finished": {
        const job = jobs.get(line.job)
        if (job === undefined) {
          violations.push({ invariant: "a", t: line.t, message: `Job ${line.job} finished but was never created` })
          continue
        }
        if (job.finished !== undefined) violations.push({ invariant: "a", t: line.t, message: `Job ${line.job} finished twice` })
        else job.finished = { t: line.t, outcome: line.outcome, reason: line.reason }
        end(job.task, line.job)
        break
      }
      case "job.deleted": {
        const job = jobs.get(line.job)
        if (job === undefined) {
          violations.push({ invariant: "a", t: line.t, message: `Job ${line.job} deleted but was never created` })
          continue
        }
        if (job.deleted !== undefined) violations.push({ invariant: "a", t: line.t, message: `Job ${line.job} deleted twice` })
        else job.deleted = line.t
        end(job.task, line.job)
        break
      }
    }
  }
  const activeAtEnd = new Map([...active].filter(([, set]) => set.size > 0))
  return { jobs, activeAtEnd, maxActive, violations }
}

// ---------------------------------------------------------------------------------------------------
// The checker

const forbiddenForZombie = ["phase", "status", "assignee", "previous_assignee"] as const
const allowedForMismatch = new Set(["assignee", "current_job", "previous_assignee"])

/** Every invariant violated by a run (its JSON Lines text, or its parsed lines). Empty when sound. */
export const checkInvariants = (input: string | ReadonlyArray<unknown>): ReadonlyArray<Violation> => {
  const parsed = parseRun(input)
  const violations: Array<Violation> = [...parsed.violations]
  const { lines } = parsed
  const timeline = jobTimeline(lines)
  violations.push(...timeline.violations)

  const verdicts = lines.filter((l): l is VerdictLine => l.kind === "verdict")
  const commands = lines.filter((l): l is CommandLine => l.kind === "command")

  // (b) one verdict per run that ended without a result, none for a run that succeeded
  const verdictsByJob = new Map<string, Array<VerdictLine>>()
  for (const verdict of verdicts) {
    if (verdict.source === "dispatch") {
      if (verdict.job !== undefined) violations.push({ invariant: "b", t: verdict.t, message: `dispatch verdict ${verdict.reason} names Job ${verdict.job}` })
      if (verdict.reason !== "type_mismatch") violations.push({ invariant: "b", t: verdict.t, message: `dispatch verdict with reason ${verdict.reason}` })
      continue
    }
    if (verdict.job === undefined) {
      violations.push({ invariant: "b", t: verdict.t, message: `task ${short(verdict.task)}: ${verdict.source} verdict ${verdict.reason} names no Job` })
      continue
    }
    const job = timeline.jobs.get(verdict.job)
    if (job === undefined) violations.push({ invariant: "b", t: verdict.t, message: `verdict ${verdict.reason} for Job ${verdict.job}, which was never created` })
    else if (job.task !== verdict.task) violations.push({ invariant: "b", t: verdict.t, message: `verdict for Job ${verdict.job} names task ${short(verdict.task)}, the Job belongs to ${short(job.task)}` })
    verdictsByJob.set(verdict.job, [...(verdictsByJob.get(verdict.job) ?? []), verdict])
  }
  for (const job of timeline.jobs.values()) {
    const count = verdictsByJob.get(job.job)?.length ?? 0
    const succeeded = job.finished?.outcome === "Complete"
    const endedWithoutResult = !succeeded && (job.finished !== undefined || job.deleted !== undefined)
    const endedAt = job.finished?.t ?? job.deleted
    // Status alone cannot tell a good run from an eviction whose process exited 0 on SIGTERM
    // (pod Succeeded, Job Complete): a Complete Job may have one verdict, pod_evicted.
    const evictedWhileComplete = succeeded && count === 1 && verdictsByJob.get(job.job)?.[0]?.reason === "pod_evicted"
    if (succeeded && count > 0 && !evictedWhileComplete) {
      violations.push({ invariant: "b", t: job.finished?.t, message: `Job ${job.job} succeeded but got ${count} verdict(s): ${verdictsByJob.get(job.job)?.map((v) => v.reason).join(", ")}` })
    } else if (endedWithoutResult && count !== 1) {
      violations.push({ invariant: "b", t: endedAt, message: `Job ${job.job} (task ${short(job.task)}) ended without a result and got ${count} verdicts (expected exactly 1)` })
    } else if (count > 1) {
      violations.push({ invariant: "b", t: undefined, message: `Job ${job.job} got ${count} verdicts` })
    }
  }

  // (c) the end state
  const final = lines.find((l): l is FinalLine => l.kind === "final")
  if (final !== undefined) {
    for (const [task, state] of Object.entries(final.tasks)) {
      const status = state.frontmatter["status"]
      const assignee = state.frontmatter["assignee"]
      const activeJobs = timeline.activeAtEnd.get(task)?.size ?? 0
      if (status !== "completed" && assignee !== "" && activeJobs === 0) {
        violations.push({
          invariant: "c",
          t: final.t,
          message: `task ${short(task)} ends neither completed (status ${JSON.stringify(status)}) nor in the inbox (assignee ${JSON.stringify(assignee)}) nor with an active Job`
        })
      }
    }
  }

  // (e) keys
  for (const command of commands) {
    const data = decodeKeyed(command.data)
    if (data._tag === "None") violations.push({ invariant: "e", t: command.t, message: `${command.operation} has no data.taskIdentifier (key ${command.key})` })
    else if (data.value.taskIdentifier !== command.key) {
      violations.push({ invariant: "e", t: command.t, message: `${command.operation} keyed ${command.key} for task ${data.value.taskIdentifier}` })
    }
  }

  // (d) verdict publication
  const executorCommands = commands.filter((c) => c.initiator === undefined || c.initiator === "executor").map(classify)
  const failureUpdates = executorCommands.filter((c): c is Extract<Classified, { _tag: "FailureUpdate" }> => c._tag === "FailureUpdate")
  const mismatchUpdates = executorCommands.filter((c): c is Extract<Classified, { _tag: "MismatchUpdate" }> => c._tag === "MismatchUpdate")
  const matchedFailures = new Set<CommandLine>()
  const matchedMismatches = new Set<CommandLine>()

  for (const verdict of verdicts) {
    if (verdict.source === "dispatch") {
      // In order: the first type mismatch update of the task at or after the verdict, not yet taken.
      const update = mismatchUpdates.find((u) => u.line.key === verdict.task && u.line.t >= verdict.t && !matchedMismatches.has(u.line))
      if (update === undefined) violations.push({ invariant: "d", t: verdict.t, message: `type mismatch of task ${short(verdict.task)} was never published` })
      else matchedMismatches.add(update.line)
      continue
    }
    const pair = failureUpdates.filter((u) => u.line.key === verdict.task && u.job === verdict.job)
    const after = pair.filter((u) => u.line.t >= verdict.t)
    if (pair.length !== 1 || after.length !== 1) {
      violations.push({
        invariant: "d",
        t: verdict.t,
        message: `verdict ${verdict.reason} for Job ${verdict.job} published ${after.length} time(s) at or after it (${pair.length} in all), expected exactly once`
      })
    }
    for (const update of after) {
      matchedFailures.add(update.line)
      if (update.reason !== verdict.reason) {
        violations.push({ invariant: "d", t: update.line.t, message: `failure for Job ${verdict.job} says Reason ${update.reason}, the verdict said ${verdict.reason}` })
      }
    }
  }
  for (const update of failureUpdates) {
    if (!matchedFailures.has(update.line)) {
      violations.push({ invariant: "d", t: update.line.t, message: `failure update for task ${short(update.line.key ?? "")} (Job ${update.job}) without a verdict line` })
    }
    const written = forbiddenForZombie.filter((key) => key in update.updates)
    if (written.length > 0) violations.push({ invariant: "d", t: update.line.t, message: `zombie failure for Job ${update.job} writes ${written.join(", ")}` })
  }
  for (const update of mismatchUpdates) {
    if (!matchedMismatches.has(update.line)) violations.push({ invariant: "d", t: update.line.t, message: `type mismatch update for task ${short(update.line.key ?? "")} without a verdict line` })
    const extra = Object.keys(update.updates).filter((key) => !allowedForMismatch.has(key))
    if (extra.length > 0) violations.push({ invariant: "d", t: update.line.t, message: `type mismatch update writes ${extra.join(", ")}` })
  }
  for (const command of executorCommands) {
    if (command._tag === "SpawnUpdate" || command._tag === "OtherUpdate") {
      const written = forbiddenForZombie.filter((key) => key in command.updates)
      if (written.length > 0) violations.push({ invariant: "d", t: command.line.t, message: `executor ${command._tag === "SpawnUpdate" ? "spawn notification" : "update"} writes ${written.join(", ")}` })
    }
    if (command._tag === "TriggerIncrement" && command.delta !== 1) {
      violations.push({ invariant: "d", t: command.line.t, message: `trigger_count incremented by ${command.delta}` })
    }
  }
  // One batch: at one (key, t), every failure update and every spawn notification has its own
  // trigger_count increment, and no increment is alone.
  const groups = new Map<string, { failures: number; spawns: number; increments: number; key: string; t: number }>()
  for (const command of executorCommands) {
    if (command._tag !== "FailureUpdate" && command._tag !== "SpawnUpdate" && command._tag !== "TriggerIncrement") continue
    const id = `${command.line.key}@${command.line.t}`
    const group = groups.get(id) ?? { failures: 0, spawns: 0, increments: 0, key: command.line.key ?? "", t: command.line.t }
    if (command._tag === "FailureUpdate") group.failures++
    else if (command._tag === "SpawnUpdate") group.spawns++
    else group.increments++
    groups.set(id, group)
  }
  for (const group of groups.values()) {
    if (group.increments !== group.failures + group.spawns) {
      violations.push({
        invariant: "d",
        t: group.t,
        message: `task ${short(group.key)}: ${group.increments} trigger_count increment(s) committed with ${group.failures} failure update(s) and ${group.spawns} spawn notification(s)`
      })
    }
  }

  return violations
}
