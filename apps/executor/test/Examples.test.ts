/**
 * Every scenario in `examples/` (the folder is enumerated, so a new file is picked up): it validates,
 * simulates, satisfies the invariants of `Invariants.ts`, meets its expected outcome from the table
 * below (simulation.md "Examples"), and gives byte-identical JSON Lines when run twice.
 *
 * Times are in seconds of simulated time. A verdict time is the time the evidence allows it
 * (simulation.md, "when"); a verdict the sweeper issued may come up to one sweeper interval (60 s by
 * default) later.
 */
import { readdirSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it, vi } from "@effect/vitest"
import { Duration, Effect, Either } from "effect"
import { parse as parseYaml } from "yaml"
import { jsonl } from "../src/simulate/Output.js"
import { validate } from "../src/simulate/Scenario.js"
import { type Line, simulate } from "../src/simulate/Simulation.js"
import {
  type CommandLine,
  checkInvariants,
  classify,
  formatViolation,
  type JobCreatedLine,
  jobTimeline,
  parseRun,
  type VerdictLine
} from "./Invariants.js"

const examplesDir = fileURLToPath(new URL("../../../examples/", import.meta.url))
const exampleFiles = readdirSync(examplesDir)
  .filter((file) => /\.(ya?ml|json)$/.test(file))
  .sort()

/**
 * Wall-clock guard: a simulation that never settles fails its test instead of stalling the suite.
 * Once one has hung, the others get a short limit (the cause is likely the same), so the report
 * comes in seconds rather than minutes.
 */
let wallClockLimit = Duration.seconds(20)
const afterAHang = Duration.seconds(3)

const load = (file: string) => {
  const text = readFileSync(`${examplesDir}${file}`, "utf8")
  const parsed: unknown = file.endsWith(".json") ? JSON.parse(text) : parseYaml(text)
  const scenario = validate(parsed)
  if (Either.isLeft(scenario)) throw new Error(`${file} is invalid: ${scenario.left.message}`)
  return scenario.right
}

const run = (file: string): Promise<ReadonlyArray<Line>> => {
  const limit = wallClockLimit
  return Effect.runPromise(
    simulate(load(file)).pipe(
      // disconnected: interrupting a stuck simulation must not wait for its finalizers
      Effect.disconnect,
      Effect.timeoutFail({
        duration: limit,
        onTimeout: () => {
          wallClockLimit = afterAHang
          return new Error(`${file}: the simulation did not finish within ${Duration.format(limit)} of wall time (hung)`)
        }
      })
    )
  )
}

const firstRuns = new Map<string, Promise<ReadonlyArray<Line>>>()
const firstRun = (file: string) => {
  const cached = firstRuns.get(file)
  if (cached !== undefined) return cached
  const started = run(file)
  firstRuns.set(file, started)
  return started
}

// ---------------------------------------------------------------------------------------------------
// What a run looks like to the assertions

class Run {
  readonly lines
  readonly text
  readonly timeline
  readonly verdicts: ReadonlyArray<VerdictLine>
  readonly commands: ReadonlyArray<CommandLine>
  readonly jobsCreated: ReadonlyArray<JobCreatedLine>
  readonly final: Readonly<Record<string, { readonly frontmatter: Readonly<Record<string, unknown>> }>>
  readonly interventions: ReadonlyArray<{ readonly t: number; readonly what: string }>

  constructor(lines: ReadonlyArray<Line>) {
    this.text = jsonl(lines)
    this.lines = parseRun(this.text).lines
    this.timeline = jobTimeline(this.lines)
    this.verdicts = this.lines.filter((l): l is VerdictLine => l.kind === "verdict")
    this.commands = this.lines.filter((l): l is CommandLine => l.kind === "command")
    this.jobsCreated = this.lines.filter((l): l is JobCreatedLine => l.kind === "job.created")
    const final = lines.find((l) => l.kind === "final")
    this.final = final?.kind === "final" ? final.tasks : {}
    this.interventions = lines.flatMap((l) => (l.kind === "intervention" ? [{ t: l.t, what: l.what }] : []))
  }

  jobsOf(task: string) {
    return this.jobsCreated.filter((j) => j.task === task)
  }
  frontmatter(task: string): Readonly<Record<string, unknown>> {
    const state = this.final[task]
    if (state === undefined) throw new Error(`task ${task} missing from the final line`)
    return state.frontmatter
  }
  /** The executor's failure pairs of a Job: its `{current_job: ""}` update with the increment of the same instant. */
  failureOf(job: string) {
    const updates = this.commands.map(classify).filter((c) => c._tag === "FailureUpdate" && c.job === job)
    return updates.map((u) => ({
      t: u.line.t,
      increments: this.commands.filter(
        (c) => c.t === u.line.t && c.key === u.line.key && classify(c)._tag === "TriggerIncrement"
      ).length
    }))
  }
  intervention(what: string): number {
    const found = this.interventions.find((i) => i.what === what)
    if (found === undefined) throw new Error(`no ${what} intervention`)
    return found.t
  }
}

// ---------------------------------------------------------------------------------------------------
// Expected outcomes

const A = "4aa57614-8835-4992-87e9-ca483ddbeae6"
const B = "5bb57614-8835-4992-87e9-ca483ddbeae7"
const tour1 = "11111111-aaaa-4bbb-8ccc-000000000001"
const tour2 = "22222222-aaaa-4bbb-8ccc-000000000002"
const capTasks = ["1", "2", "3", "4", "5"].map((n) => `${n}aa57614-8835-4992-87e9-ca483ddbeae6`)

const s = (seconds: number) => seconds * 1000
const sweeperInterval = s(60)

interface ExpectedVerdict {
  readonly task?: string
  readonly reason: string
  readonly source?: VerdictLine["source"]
  /** Seconds: exact (plus one sweeper interval when the sweeper saw it), or an inclusive window. */
  readonly at: number | readonly [number, number]
}

interface ExpectedTask {
  readonly status?: "completed" | "in_progress"
  /** "" is the operator inbox. */
  readonly assignee?: string
  readonly triggerCount?: number | "at-least-max"
  readonly jobs?: number
}

interface Expected {
  /** Every verdict of the run, in `t` order. */
  readonly verdicts: ReadonlyArray<ExpectedVerdict>
  readonly tasks: Readonly<Record<string, ExpectedTask>>
  /** Anything specific to the scenario. */
  readonly check?: (run: Run) => void
}

const completedFirstTry: ExpectedTask = { status: "completed", assignee: "claude-agent", triggerCount: 1, jobs: 1 }
/** One zombie attempt, then a second that succeeds: spawn + failure + spawn = 3 (D5: the cap parks it, the result still lands). */
const completedSecondTry: ExpectedTask = { status: "completed", triggerCount: 3, jobs: 2 }
const parked: ExpectedTask = { status: "in_progress", assignee: "", triggerCount: "at-least-max", jobs: 2 }

/** One failure mode on task A, then a healthy second attempt. */
const failureMode = (reason: string, at: ExpectedVerdict["at"], check?: (run: Run) => void): Expected => ({
  verdicts: [{ reason, at }],
  tasks: { [A]: completedSecondTry },
  ...(check === undefined ? {} : { check })
})

const expected: Readonly<Record<string, Expected>> = {
  "succeed.yaml": { verdicts: [], tasks: { [A]: completedFirstTry } },
  // Pod created at 1 s, Running at 6 s, exits after D.
  "crash.yaml": failureMode("pod_crash_no_stdout", 36, (run) => expect(run.verdicts[0]?.detail).toContain("exit 1")),
  "crash-oom.yaml": failureMode("pod_crash_no_stdout", 126, (run) => {
    expect(run.verdicts[0]?.detail).toContain("OOMKilled")
    expect(run.verdicts[0]?.detail).toContain("137")
  }),
  "evicted.yaml": failureMode("pod_evicted", 186),
  // Evicted at 186 s, the process exits 0: the pod Succeeded and the Job Complete, but the agent
  // published nothing and the kubelet's Evicted Event tells; the second attempt completes.
  "evicted-exit-0.yaml": failureMode("pod_evicted", 186, (run) => {
    expect(run.verdicts[0]?.detail).toContain("Pod ephemeral local storage usage exceeds the total limit of containers 16Mi.")
    expect(run.timeline.jobs.get(run.jobsOf(A)[0]?.job ?? "")?.finished?.outcome).toBe("Complete")
    expect(run.commands.filter((c) => c.key === A && c.initiator === "agent")).toHaveLength(1)
  }),
  // Killed at the 600 s deadline, the process exits 0 at once: the pod Succeeded, the Job Failed
  // DeadlineExceeded (FailureTarget first), the agent published nothing.
  "deadline-exit-0.yaml": failureMode("deadline_exceeded", 600, (run) => {
    expect(run.verdicts[0]?.detail).toBe("Job exceeded activeDeadlineSeconds=600")
    expect(run.commands.filter((c) => c.key === A && c.initiator === "agent")).toHaveLength(1)
  }),
  // The Job's activeDeadlineSeconds (zombieJobTimeoutSeconds 600) from its creation at 0.
  "hang.yaml": failureMode("deadline_exceeded", 600),
  // First pull failure 5 s after the pod (1 s) = 6 s, plus imagePullGraceSeconds 60.
  "image-pull-fails.yaml": failureMode("image_pull_backoff", 66),
  "image-pull-recovers.yaml": { verdicts: [], tasks: { [A]: completedFirstTry } },
  "image-pull-recovers-late.yaml": failureMode("image_pull_backoff", 66),
  // At once: InvalidImageName shows when the pull is first attempted (6 s).
  "invalid-image.yaml": failureMode("pod_config_error", 6),
  // CreateContainerConfigError appears at 6 s, plus imagePullGraceSeconds 60.
  "config-error.yaml": failureMode("pod_config_error", 66),
  // Pod created at 1 s, plus unschedulableGraceSeconds 120.
  "unschedulable.yaml": failureMode("pod_not_scheduled", 121),
  // Job created at 0, plus podCreateGraceSeconds 120.
  "no-pod.yaml": failureMode("job_pod_create_failed", 120),
  // Deleted at 2m with the executor up: within 60 s.
  "deleted-job.yaml": failureMode("executor_watch_lost", [120, 180]),
  // Deleted at 3m while the executor is down from 2m to 7m: within 60 s of 7m, never before.
  "deleted-while-down.yaml": failureMode("executor_watch_lost", [420, 480], (run) => {
    expect(run.intervention("executorStarted")).toBe(s(420))
  }),
  // The verdict line at the time it was decided (6 s, the broker down from 2 s to 302 s); its
  // failure pair once the broker is back, once; the Job deleted only after the publish.
  "kafka-outage.yaml": failureMode("pod_config_error", 6, (run) => {
    const verdict = run.verdicts[0]
    const failure = run.failureOf(verdict?.job ?? "")
    expect(failure).toHaveLength(1)
    expect(failure[0]?.t).toBeGreaterThanOrEqual(s(302))
    expect(failure[0]?.increments).toBe(1)
    const first = run.timeline.jobs.get(verdict?.job ?? "")
    expect(first?.deleted).toBeGreaterThanOrEqual(failure[0]?.t ?? Infinity)
    expect(run.jobsOf(A)[1]?.t).toBeGreaterThanOrEqual(s(302))
  }),
  // Three sends whose answers are lost after the append (the spawn at 10 s, the failure pair at 16 s,
  // the retry's spawn): each is read back and found, never sent again. The controller model, which
  // applies every record it sees, gets each command once: spawn + failure + spawn = 3.
  "kafka-ack-lost.yaml": failureMode("pod_config_error", 16, (run) => {
    expect(run.interventions.map((i) => [i.what, i.t])).toEqual([
      ["kafkaAckLost", s(5)],
      ["kafkaAckLost", s(12)]
    ])
    expect(run.commands.filter((c) => c.key === A).map((c) => classify(c)._tag)).toEqual([
      "TriggerIncrement",
      "SpawnUpdate",
      "FailureUpdate",
      "TriggerIncrement",
      "TriggerIncrement",
      "SpawnUpdate",
      // the agent's result
      "Other"
    ])
    const [first, retry] = run.jobsOf(A)
    expect(first?.t).toBe(s(10))
    expect(run.failureOf(first?.job ?? "")).toEqual([{ t: s(16), increments: 1 }])
    expect(retry?.t).toBeGreaterThan(s(16))
  }),
  // A verdict decided while the broker is down, then the executor restarts before the broker is back:
  // the mark on the Job (D6.2) carries it over; one verdict line, published once after 302 s.
  "verdict-survives-restart.yaml": failureMode("pod_config_error", 6, (run) => {
    const failure = run.failureOf(run.verdicts[0]?.job ?? "")
    expect(failure).toHaveLength(1)
    expect(failure[0]?.t).toBeGreaterThanOrEqual(s(302))
  }),
  // The broker is down when the task event arrives (60 s): one Job once it is back (330 s), one spawn.
  "kafka-outage-at-dispatch.yaml": {
    verdicts: [],
    tasks: { [A]: completedFirstTry },
    check: (run) => {
      expect(run.jobsOf(A)[0]?.t).toBeGreaterThanOrEqual(s(330))
      expect(run.commands.filter((c) => c.key === A && classify(c)._tag === "TriggerIncrement")).toHaveLength(1)
    }
  },
  "type-mismatch.yaml": {
    verdicts: [{ reason: "type_mismatch", source: "dispatch", at: 0 }],
    tasks: { [A]: { status: "in_progress", assignee: "", jobs: 0 } },
    check: (run) => {
      expect(run.frontmatter(A)["previous_assignee"]).toBe("claude-agent")
      expect(run.frontmatter(A)["trigger_count"] ?? 0).toBe(0)
      expect(run.commands).toHaveLength(1)
      expect(run.verdicts[0]?.job).toBeUndefined()
    }
  },
  // Two attempts (each zombie costs two units), then the controller parks the task.
  "broken-image-budget.yaml": {
    verdicts: [
      { reason: "image_pull_backoff", at: 66 },
      { reason: "image_pull_backoff", at: 133 }
    ],
    tasks: { [A]: parked }
  },
  "tour.yaml": {
    verdicts: [
      { task: tour2, reason: "image_pull_backoff", at: 66 },
      { task: tour2, reason: "image_pull_backoff", at: 133 }
    ],
    tasks: { [tour1]: completedFirstTry, [tour2]: parked }
  },
  // Every attempt dies at the 300 s deadline: 300 s, then 301 + 300 s.
  "short-timeout.yaml": {
    verdicts: [
      { reason: "deadline_exceeded", at: 300 },
      { reason: "deadline_exceeded", at: 601 }
    ],
    tasks: { [A]: parked },
    check: (run) => expect(run.verdicts.map((v) => v.detail)).toEqual(["Job exceeded activeDeadlineSeconds=300", "Job exceeded activeDeadlineSeconds=300"])
  },
  // The Config changes at 1m to 120 s: the running attempt keeps 600 s, the second gets 120 s.
  "config-change.yaml": {
    verdicts: [
      { reason: "deadline_exceeded", at: 600 },
      { reason: "deadline_exceeded", at: 721 }
    ],
    tasks: { [A]: parked },
    check: (run) => {
      const [first, second] = run.jobsOf(A)
      const [v1, v2] = run.verdicts
      expect((v1?.t ?? 0) - (first?.t ?? 0)).toBe(s(600))
      expect((v2?.t ?? 0) - (second?.t ?? 0)).toBe(s(120))
      expect(v2?.detail).toContain("activeDeadlineSeconds=120")
    }
  },
  // maxConcurrentJobs 1: one Job at a time, every task completes on its first attempt.
  "concurrency-cap.yaml": {
    verdicts: [],
    tasks: Object.fromEntries(capTasks.map((task) => [task, completedFirstTry])),
    check: (run) => expect(run.timeline.maxActive).toBe(1)
  },
  // Down from 30 s to 150 s. A's run (created by the old executor) is adopted and completes with no
  // verdict and no second Job; B's image pull failed at 6 s, so its verdict is due as soon as the
  // executor is back (the grace elapsed at 66 s) and at the latest one grace after it is back.
  "restart-mid-run.yaml": {
    verdicts: [{ task: B, reason: "image_pull_backoff", at: [150, 210] }],
    tasks: { [A]: completedFirstTry, [B]: completedSecondTry },
    check: (run) => {
      expect(run.intervention("executorStarted")).toBe(s(150))
      expect(run.timeline.jobs.get(run.jobsOf(A)[0]?.job ?? "")?.finished?.outcome).toBe("Complete")
    }
  },
  // The run finishes (66 s) while the executor is down (30 s to 330 s): no verdict, no second Job.
  "completed-while-down.yaml": {
    verdicts: [],
    tasks: { [A]: completedFirstTry },
    check: (run) => expect(run.timeline.jobs.get(run.jobsOf(A)[0]?.job ?? "")?.finished?.t).toBeLessThan(run.intervention("executorStarted"))
  },
  // A JSON scenario with two Configs: codex's own imagePullGraceSeconds (120 s) applies to its task,
  // whose max_triggers 5 keeps it assigned after a zombie attempt; claude's task is untouched.
  "two-agents.json": {
    verdicts: [{ task: B, reason: "image_pull_backoff", at: 126 }],
    tasks: {
      [A]: completedFirstTry,
      [B]: { status: "completed", assignee: "codex-agent", triggerCount: 3, jobs: 2 }
    },
    check: (run) => expect(run.jobsOf(B).every((j) => j.job.startsWith("codex-agent-"))).toBe(true)
  },
  // Parked after two attempts; the operator hands it back at 10m (trigger_count reset to 0 by the
  // controller), the third attempt succeeds.
  "operator-reassign.yaml": {
    verdicts: [
      { reason: "image_pull_backoff", at: 66 },
      { reason: "image_pull_backoff", at: 133 }
    ],
    tasks: { [A]: { status: "completed", assignee: "claude-agent", triggerCount: 1, jobs: 3 } },
    check: (run) => expect(run.jobsOf(A)[2]?.t).toBeGreaterThanOrEqual(s(600))
  }
}

const only = (run: Run): string => {
  const ids = Object.keys(run.final)
  if (ids.length !== 1 || ids[0] === undefined) throw new Error(`a verdict without "task" needs a one-task scenario, got ${ids.length}`)
  return ids[0]
}

const assertExpected = (run: Run, exp: Expected) => {
  // Verdicts: task, reason (and source when pinned) in order, each at its time.
  const observed = run.verdicts.map((v) => ({ task: v.task, reason: v.reason, t: v.t, source: v.source }))
  const wanted = exp.verdicts.map((v) => ({ task: v.task ?? only(run), reason: v.reason }))
  expect(observed.map(({ task, reason }) => ({ task, reason }))).toEqual(wanted)
  exp.verdicts.forEach((v, i) => {
    const got = observed[i]
    if (got === undefined) return
    if (v.source !== undefined) expect(got.source, `verdict ${i} source`).toBe(v.source)
    const [from, to] =
      typeof v.at === "number" ? [s(v.at), s(v.at) + (got.source === "sweeper" ? sweeperInterval : 0)] : [s(v.at[0]), s(v.at[1])]
    expect(got.t, `verdict ${i} (${v.reason}, ${got.source}) at t=${got.t}, expected [${from}, ${to}]`).toBeGreaterThanOrEqual(from)
    expect(got.t, `verdict ${i} (${v.reason}, ${got.source}) at t=${got.t}, expected [${from}, ${to}]`).toBeLessThanOrEqual(to)
  })
  // Final task states.
  expect(Object.keys(run.final).sort()).toEqual(Object.keys(exp.tasks).sort())
  for (const [task, want] of Object.entries(exp.tasks)) {
    const fm = run.frontmatter(task)
    const label = `task ${task.slice(0, 8)}`
    if (want.status !== undefined) expect(fm["status"], `${label} status`).toBe(want.status)
    if (want.assignee !== undefined) expect(fm["assignee"], `${label} assignee`).toBe(want.assignee)
    if (want.triggerCount === "at-least-max") {
      expect(Number(fm["trigger_count"]), `${label} trigger_count`).toBeGreaterThanOrEqual(Number(fm["max_triggers"] ?? 3))
    } else if (want.triggerCount !== undefined) {
      expect(fm["trigger_count"], `${label} trigger_count`).toBe(want.triggerCount)
    }
    if (want.jobs !== undefined) expect(run.jobsOf(task).map((j) => j.attempt), `${label} Jobs`).toEqual(Array.from({ length: want.jobs }, (_, i) => i + 1))
  }
  exp.check?.(run)
}

describe("examples/", () => {
  // The simulated executor logs its expected troubles (a broker outage) on stderr; keep the report readable.
  beforeAll(() => {
    vi.spyOn(console, "error").mockImplementation(() => undefined)
  })
  afterAll(() => {
    vi.restoreAllMocks()
  })

  it("every example has an expected outcome, and every expected outcome an example", () => {
    expect(exampleFiles.filter((file) => expected[file] === undefined), "examples without an entry in the table").toEqual([])
    expect(Object.keys(expected).filter((file) => !exampleFiles.includes(file)), "table entries without an example").toEqual([])
  })

  describe.each(exampleFiles)("%s", (file) => {
    it("validates, simulates, and keeps the invariants", async () => {
      const lines = await firstRun(file)
      const violations = checkInvariants(jsonl(lines))
      expect(violations.map(formatViolation)).toEqual([])
    })

    it("has its expected outcome", async () => {
      const exp = expected[file]
      if (exp === undefined) throw new Error(`no expected outcome for examples/${file}: add one to the table in Examples.test.ts`)
      assertExpected(new Run(await firstRun(file)), exp)
    })

    it("is deterministic: a second run gives byte-identical JSON Lines", async () => {
      const first = jsonl(await firstRun(file))
      const second = jsonl(await run(file))
      if (second !== first) {
        const a = first.split("\n")
        const b = second.split("\n")
        const at = a.findIndex((line, i) => line !== b[i])
        expect({ line: at + 1, second: b[at] }, "first differing line").toEqual({ line: at + 1, second: a[at] })
      }
      expect(second === first).toBe(true)
    })
  })
})
