/**
 * The checker itself: a sound run passes, and each broken variant of it is caught by the invariant
 * it breaks (a checker that never fails proves nothing).
 */
import { describe, expect, it } from "@effect/vitest"
import { checkInvariants, type Invariant } from "./Invariants.js"

const task = "4aa57614-8835-4992-87e9-ca483ddbeae6"
const job1 = "claude-agent-4aa57614-1111111111"
const job2 = "claude-agent-4aa57614-2222222222"
const topic = "agent-task-v1-request"

type Obj = Record<string, unknown>

const command = (t: number, operation: string, data: Obj, initiator = "executor"): Obj => ({
  t,
  kind: "command",
  topic,
  key: task,
  operation,
  initiator,
  data: { taskIdentifier: task, ...data }
})
const increment = (t: number) => command(t, "increment-frontmatter", { field: "trigger_count", delta: 1 })
const spawned = (t: number, job: string) =>
  command(t, "update-frontmatter", { updates: { current_job: job, job_started_at: "x", spawn_notification: true } })
const failure = (t: number, job: string, reason: string, updates: Obj = {}) =>
  command(t, "update-frontmatter", {
    updates: { current_job: "", ...updates },
    body: { heading: "## Failure", section: `## Failure\n\n- **Timestamp:** x\n- **Job:** ${job}\n- **Reason:** ${reason}\n- **Detail:** d\n` }
  })
const verdict = (t: number, job: string, reason = "image_pull_backoff", source = "pod"): Obj => ({ t, kind: "verdict", task, job, reason, source })
const final = (t: number, frontmatter: Obj): Obj => ({ t, kind: "final", tasks: { [task]: { frontmatter, content: "" } } })

/** A zombie attempt, then a successful one. */
const sound: ReadonlyArray<Obj> = [
  { t: 0, kind: "job.created", task, job: job1, attempt: 1 },
  increment(0),
  spawned(0, job1),
  { t: 66000, kind: "job.deleted", task, job: job1 },
  verdict(66000, job1),
  failure(66000, job1, "image_pull_backoff"),
  increment(66000),
  { t: 67000, kind: "job.created", task, job: job2, attempt: 2 },
  increment(67000),
  spawned(67000, job2),
  { t: 100000, kind: "intervention", what: "anything", detail: "" },
  { t: 193000, kind: "job.finished", task, job: job2, outcome: "Complete", reason: "" },
  command(194000, "update", { frontmatter: { status: "completed", phase: "done" }, content: "" }, "agent"),
  final(1800000, { status: "completed", phase: "done", assignee: "", trigger_count: 3 })
]

const invariantsOf = (lines: ReadonlyArray<Obj>): ReadonlyArray<Invariant> => [...new Set(checkInvariants(lines).map((v) => v.invariant))]

const without = (predicate: (line: Obj) => boolean) => sound.filter((line) => !predicate(line))
const replace = (index: number, ...lines: ReadonlyArray<Obj>) => [...sound.slice(0, index), ...lines, ...sound.slice(index + 1)]
const isVerdict = (line: Obj) => line["kind"] === "verdict"

describe("checkInvariants", () => {
  it("passes a sound run, as JSON Lines text or as objects, with endings and creations of one instant in any order", () => {
    expect(checkInvariants(sound)).toEqual([])
    expect(checkInvariants(sound.map((line) => JSON.stringify(line)).join("\n") + "\n")).toEqual([])
    // the retry created in the same instant as the zombie Job is deleted, and written before it
    const retimed = [
      ...sound.slice(0, 3),
      { t: 66000, kind: "job.created", task, job: job2, attempt: 2 },
      increment(66000),
      spawned(66000, job2),
      ...sound.slice(3, 7),
      ...sound.slice(10)
    ]
    expect(checkInvariants(retimed)).toEqual([])
  })

  it("format: a missing field, a line that is not JSON, time going back, no final line", () => {
    expect(invariantsOf(replace(0, { t: 0, kind: "job.created", task, attempt: 1 }))).toContain("format")
    expect(checkInvariants("{\"t\":0,\"kind\":\"final\",\"tasks\":{}}\nnot json\n").map((v) => v.invariant)).toContain("format")
    expect(invariantsOf([sound[1] ?? {}, { ...(sound[0] ?? {}), t: -1 }, ...sound.slice(2)])).toContain("format")
    expect(invariantsOf(sound.slice(0, -1))).toEqual(["format"])
  })

  it("(a) a second Job while the first is active", () => {
    const overlapping = [...sound.slice(0, 3), { t: 1000, kind: "job.created", task, job: "other", attempt: 2 }, ...sound.slice(3)]
    expect(invariantsOf(overlapping)).toContain("a")
  })

  it("(b) no verdict for a run that ended without a result, two verdicts, a verdict for a run that succeeded", () => {
    expect(invariantsOf(without(isVerdict))).toContain("b")
    expect(invariantsOf(replace(4, verdict(66000, job1), verdict(66000, job1, "pod_config_error")))).toContain("b")
    expect(invariantsOf([...sound.slice(0, -1), verdict(200000, job2), sound[sound.length - 1] ?? {}])).toContain("b")
  })

  it("(b) a Complete Job may have one pod_evicted verdict (its process exited 0 on SIGTERM), never two, never another reason", () => {
    const evictedComplete = (...verdicts: ReadonlyArray<Obj>) => [
      ...sound.slice(0, 11),
      { t: 193000, kind: "job.finished", task, job: job2, outcome: "Complete", reason: "" },
      ...verdicts,
      ...verdicts.flatMap((v) => [failure(Number(v["t"]), job2, String(v["reason"])), increment(Number(v["t"]))]),
      final(1800000, { status: "in_progress", assignee: "", trigger_count: 4 })
    ]
    expect(checkInvariants(evictedComplete(verdict(193000, job2, "pod_evicted")))).toEqual([])
    expect(invariantsOf(evictedComplete(verdict(193000, job2, "pod_crash_no_stdout")))).toContain("b")
    expect(invariantsOf(evictedComplete(verdict(193000, job2, "pod_evicted"), verdict(194000, job2, "pod_evicted")))).toContain("b")
  })

  it("(c) a task that ends assigned, not completed, with no Job", () => {
    expect(invariantsOf(replace(sound.length - 1, final(1800000, { status: "in_progress", assignee: "claude-agent" })))).toEqual(["c"])
    expect(invariantsOf(replace(sound.length - 1, final(1800000, { status: "in_progress", assignee: "" })))).toEqual([])
  })

  it("(d) a failure not paired in one transaction, published twice, or writing what a zombie verdict never writes", () => {
    // the increment committed later than the update: two transactions
    expect(invariantsOf(replace(6, { ...(sound[6] ?? {}), t: 66500 }))).toContain("d")
    // the increment missing
    expect(invariantsOf(replace(6))).toContain("d")
    // published twice
    expect(invariantsOf(replace(5, failure(66000, job1, "image_pull_backoff"), failure(70000, job1, "image_pull_backoff"), increment(70000)))).toContain("d")
    // the update never published
    expect(invariantsOf(without((line) => line === sound[5] || line === sound[6]))).toContain("d")
    // a zombie failure that writes the phase or the assignee
    expect(invariantsOf(replace(5, failure(66000, job1, "image_pull_backoff", { phase: "human_review" })))).toContain("d")
    expect(invariantsOf(replace(5, failure(66000, job1, "image_pull_backoff", { assignee: "" })))).toContain("d")
    // the reason in the section differs from the verdict
    expect(invariantsOf(replace(5, failure(66000, job1, "pod_config_error")))).toContain("d")
  })

  it("(d) a type mismatch is published once, as one update with no increment", () => {
    const mismatch = (t: number) =>
      command(t, "update-frontmatter", {
        updates: { assignee: "", current_job: "", previous_assignee: "claude-agent" },
        body: { heading: "## Failure", section: "## Failure\n\n- **Reason:** type_mismatch\n" }
      })
    const dispatch: Obj = { t: 0, kind: "verdict", task, reason: "type_mismatch", source: "dispatch" }
    const end = final(600000, { status: "in_progress", assignee: "" })
    expect(checkInvariants([dispatch, mismatch(0), end])).toEqual([])
    expect(invariantsOf([dispatch, end])).toEqual(["d"])
    expect(invariantsOf([dispatch, mismatch(0), increment(0), end])).toEqual(["d"])
  })

  it("(e) a command keyed by another task", () => {
    expect(invariantsOf(replace(1, { ...(sound[1] ?? {}), key: "another" }))).toContain("e")
  })
})
