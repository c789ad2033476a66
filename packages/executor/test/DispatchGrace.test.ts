import { describe, expect, it } from "@effect/vitest"
import { Effect, TestClock } from "effect"
import type { JobBuilder } from "@executor/domain"
import { PodBehaviour } from "@executor/testkit"
import {
  agentSpec,
  commandsOf,
  consumeEvent,
  createManualJob,
  deferredOf,
  handleWith,
  jobCreationTimes,
  jobsOfTask,
  makeWorldAt,
  names,
  settle,
  settleUntil,
  startExecutorIn,
  stopExecutor,
  taskEvent,
  taskEventCounters,
  withManualJobs
} from "./fixtures.js"

// Catalogue items 48-58, executor.md §5.2-5.3 and §8.12: the respawn grace window of 300 s and the
// deferred respawn, which re-runs every gate of D4.9 against the newest event of its task.

/** Job start of item 48. */
const T = Date.parse("2026-04-18T20:19:16Z")
const T_ISO = "2026-04-18T20:19:16Z"
const GRACE = 300_000
const iso = (millis: number) => new Date(millis).toISOString().replace(".000Z", "Z")

/** Moves the clock to T + `millis` (forward only) and lets everything due run. */
const atT = (millis: number) =>
  Effect.gen(function* () {
    yield* TestClock.setTime(T + millis)
    yield* settle
  })

/** An event whose `current_job` (no longer running) started at T: inside the grace until T+300 s. */
const recentRun = (taskId: string, frontmatter: Record<string, unknown> = {}) =>
  taskEvent(taskId, { current_job: "claude-agent-oldrun00-0123456789", job_started_at: T_ISO, trigger_count: 1, ...frontmatter })

const spawnOps = ["increment-frontmatter", "update-frontmatter"]

describe("grace window (items 48-49)", () => {
  it.scoped("48-49: the matrix, at exact times", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T, PodBehaviour.always(PodBehaviour.hang))
      const executor = yield* startExecutorIn(world, "detection")
      const handle = handleWith(executor)
      const rows: ReadonlyArray<readonly [number, string, Record<string, unknown>, string]> = [
        [10_000, "inside-grace", {}, "respawn_grace_window"],
        [10_000, "fractional-start", { job_started_at: "2026-04-18T20:19:16.500Z" }, "respawn_grace_window"],
        [10_000, "no-current-job", { current_job: "" }, "spawned"],
        [10_000, "current-job-without-start", { job_started_at: undefined }, "spawned"],
        [10_000, "current-job-empty-start", { job_started_at: "" }, "spawned"],
        [10_000, "49-unparseable-start", { job_started_at: "not-a-valid-timestamp" }, "spawned"],
        [GRACE - 1, "one-ms-before", {}, "respawn_grace_window"],
        [GRACE, "at-300-s", {}, "spawned"],
        [GRACE + 10_000, "at-310-s", {}, "spawned"]
      ]
      for (const [at, taskId, fm, result] of rows) {
        yield* atT(at)
        const counters = yield* taskEventCounters
        const event = recentRun(taskId, fm)
        const frontmatter = Object.fromEntries(Object.entries(event.frontmatter).filter(([, v]) => v !== undefined))
        const handled = yield* handle({ ...event, frontmatter })
        yield* settle
        expect({ taskId, result: handled.result, moved: yield* counters.moved, jobs: (yield* jobsOfTask(world, taskId)).length }).toEqual({
          taskId,
          result,
          moved: { [result]: 1 },
          jobs: result === "spawned" ? 1 : 0
        })
      }
      // the grace entries were due at T+300 s (the fractional one at T+300.5 s): they spawned then
      yield* atT(GRACE + 20_000)
      for (const taskId of ["inside-grace", "one-ms-before", "fractional-start"]) {
        yield* settleUntil(jobsOfTask(world, taskId), (jobs) => jobs.length > 0)
      }
      expect(yield* jobCreationTimes(world, "inside-grace")).toEqual([iso(T + GRACE)])
      expect(yield* jobCreationTimes(world, "one-ms-before")).toEqual([iso(T + GRACE)])
      expect(yield* jobCreationTimes(world, "fractional-start")).toEqual(["2026-04-18T20:24:16.500Z"])
      expect(yield* deferredOf(executor)).toEqual([])
    }))
})

describe("deferred respawn (items 50-58, §8.12)", () => {
  it.scoped("50-51: suppressed at T+59 s, no new event: one spawn exactly at T+300 s, respawn_after_grace_window +1", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T + 59_000, PodBehaviour.always(PodBehaviour.hang))
      const executor = yield* startExecutorIn(world, "full")
      const taskId = "4aa57614-8835-4992-87e9-ca483ddbeae6"
      const counters = yield* taskEventCounters
      const { committed } = yield* consumeEvent(world, recentRun(taskId))
      // the event is handled (deferred): its offset is committed at once
      expect(committed).toBe("1")
      expect(yield* counters.moved).toEqual({ respawn_grace_window: 1 })
      expect(yield* deferredOf(executor)).toEqual([[taskId, T + GRACE]])

      yield* atT(GRACE - 1)
      expect(yield* jobsOfTask(world, taskId)).toEqual([])
      yield* atT(GRACE)
      yield* settleUntil(jobsOfTask(world, taskId), (jobs) => jobs.length > 0)
      yield* settle
      expect(yield* jobCreationTimes(world, taskId)).toEqual([iso(T + GRACE)])
      expect(yield* counters.moved).toEqual({ respawn_grace_window: 1, spawned: 1, respawn_after_grace_window: 1 })
      const commands = yield* commandsOf(world, taskId)
      expect(commands.map(([op]) => op)).toEqual(spawnOps)
      const [job] = yield* jobsOfTask(world, taskId)
      expect(commands[1]?.[1]["updates"]).toEqual({
        current_job: job?.metadata.name,
        job_started_at: iso(T + GRACE),
        spawn_notification: true
      })
      expect(yield* deferredOf(executor)).toEqual([])
      // and never again
      yield* atT(GRACE + 120_000)
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
      expect((yield* commandsOf(world, taskId)).map(([op]) => op)).toEqual(spawnOps)
    }))

  it.scoped("52: a Job of the task appeared meanwhile (another spawner) ⇒ no spawn after the grace, after-grace metric unmoved", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T + 59_000, withManualJobs(PodBehaviour.hang))
      const handle = handleWith(yield* startExecutorIn(world, "detection"))
      const taskId = "running-meanwhile"
      expect((yield* handle(recentRun(taskId))).result).toBe("respawn_grace_window")
      yield* atT(100_000)
      yield* createManualJob(world, { name: "manual-meanwhile", taskId })
      const counters = yield* taskEventCounters
      yield* atT(GRACE + 60_000)
      expect((yield* jobsOfTask(world, taskId)).map((j) => j.metadata.name)).toEqual(["manual-meanwhile"])
      expect(yield* commandsOf(world, taskId)).toEqual([])
      expect(yield* counters.moved).toEqual({ skipped_active_job: 1 })
    }))

  it.scoped("52: an event-driven spawn happened meanwhile ⇒ the deferred evaluation neither spawns nor publishes again", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T + 59_000, PodBehaviour.always(PodBehaviour.hang))
      const handle = handleWith(yield* startExecutorIn(world, "detection"))
      const taskId = "spawned-meanwhile"
      expect((yield* handle(recentRun(taskId))).result).toBe("respawn_grace_window")
      // a zombie verdict on the old run cleared current_job: the controller's next event spawns at once
      yield* atT(100_000)
      expect((yield* handle(taskEvent(taskId, { current_job: "", trigger_count: 2 }))).result).toBe("spawned")
      const counters = yield* taskEventCounters
      yield* atT(GRACE + 60_000)
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
      // one spawn, one increment, one notification: the deferred evaluation added nothing
      expect((yield* commandsOf(world, taskId)).map(([op]) => op)).toEqual(spawnOps)
      expect(yield* counters.moved).not.toHaveProperty("respawn_after_grace_window")
      expect(yield* counters.moved).not.toHaveProperty("spawned")
    }))

  it.scoped("53-54: a terminal event (completed/done, aborted, completed, human_review) cancels the deferral at once", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T + 59_000, PodBehaviour.always(PodBehaviour.hang), {
        trigger: { phases: ["planning", "execution", "ai_review", "human_review"] }
      })
      const executor = yield* startExecutorIn(world, "detection")
      const handle = handleWith(executor)
      const endings: ReadonlyArray<readonly [string, Record<string, unknown>]> = [
        ["53-completed-done", { status: "completed", phase: "done" }],
        ["53-aborted", { status: "aborted" }],
        ["53-completed", { status: "completed" }],
        ["53-done-alias", { status: "done" }],
        ["54-human-review", { phase: "human_review" }],
        ["phase-done", { phase: "done" }]
      ]
      for (const [taskId] of endings) expect((yield* handle(recentRun(taskId))).result).toBe("respawn_grace_window")
      yield* atT(100_000)
      for (const [taskId, fm] of endings) yield* handle(recentRun(taskId, fm))
      expect(yield* deferredOf(executor)).toEqual([])
      yield* atT(GRACE + 60_000)
      for (const [taskId] of endings) {
        expect([taskId, (yield* jobsOfTask(world, taskId)).length, yield* commandsOf(world, taskId)]).toEqual([taskId, 0, []])
      }
    }))

  it.scoped("55: the trigger cap was reached meanwhile ⇒ the newer event cancels the deferral: no spawn after the grace", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T + 59_000, PodBehaviour.always(PodBehaviour.hang))
      const handle = handleWith(yield* startExecutorIn(world, "detection"))
      const taskId = "capped-meanwhile"
      expect((yield* handle(recentRun(taskId, { trigger_count: 2 }))).result).toBe("respawn_grace_window")
      yield* atT(100_000)
      expect((yield* handle(recentRun(taskId, { trigger_count: 3 }))).result).toBe("skipped_trigger_cap")
      const counters = yield* taskEventCounters
      yield* atT(GRACE + 60_000)
      expect(yield* jobsOfTask(world, taskId)).toEqual([])
      expect(yield* commandsOf(world, taskId)).toEqual([])
      // the deferral ended with the newer event: nothing is evaluated again after the grace
      expect(yield* counters.moved).toEqual({})
    }))

  it.scoped("§8.12: the deferred respawn re-runs every gate against the newest event: hold, unassigned, unknown agent, other stage, non-trigger phase ⇒ no spawn", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T + 59_000, PodBehaviour.always(PodBehaviour.hang))
      const handle = handleWith(yield* startExecutorIn(world, "detection"))
      const changes: ReadonlyArray<readonly [string, Record<string, unknown>, string]> = [
        ["moved-to-hold", { status: "hold" }, "skipped_status"],
        ["moved-to-backlog", { status: "backlog" }, "skipped_status"],
        ["unassigned", { assignee: "" }, "skipped_assignee"],
        ["reassigned-to-unknown", { assignee: "nobody" }, "skipped_unknown_assignee"],
        ["moved-to-dev", { stage: "dev" }, "skipped_stage"],
        ["back-to-todo", { phase: "todo" }, "skipped_phase"]
      ]
      for (const [taskId] of changes) expect((yield* handle(recentRun(taskId))).result).toBe("respawn_grace_window")
      yield* atT(100_000)
      for (const [taskId, fm, result] of changes) {
        expect([taskId, (yield* handle(recentRun(taskId, fm))).result]).toEqual([taskId, result])
      }
      const counters = yield* taskEventCounters
      yield* atT(GRACE + 60_000)
      for (const [taskId] of changes) {
        expect([taskId, (yield* jobsOfTask(world, taskId)).length, yield* commandsOf(world, taskId)]).toEqual([taskId, 0, []])
      }
      expect(yield* counters.moved).not.toHaveProperty("spawned")
      expect(yield* counters.moved).not.toHaveProperty("respawn_after_grace_window")
    }))

  it.scoped("§8.12: reassigned to another agent inside the grace ⇒ one spawn after the grace, with the new agent's Config", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T + 59_000, PodBehaviour.always(PodBehaviour.hang), {}, [
        ["other", agentSpec({ assignee: "other-agent", image: "registry.example/agent-other:v2" })]
      ])
      const handle = handleWith(yield* startExecutorIn(world, "detection"))
      const taskId = "reassigned"
      expect((yield* handle(recentRun(taskId))).result).toBe("respawn_grace_window")
      yield* atT(100_000)
      expect((yield* handle(recentRun(taskId, { assignee: "other-agent" }))).result).toBe("respawn_grace_window")
      yield* atT(GRACE + 60_000)
      const jobs = yield* settleUntil(jobsOfTask(world, taskId), (list) => list.length > 0)
      expect(jobs.map((j) => [j.metadata.labels?.[names.assigneeLabel], j.metadata.creationTimestamp])).toEqual([
        ["other-agent", iso(T + GRACE)]
      ])
      expect((jobs[0] as unknown as JobBuilder.JobManifest).spec.template.spec.containers[0]?.image).toBe(
        "registry.example/agent-other:v2"
      )
      expect(jobs[0]?.metadata.name.startsWith("other-agent-")).toBe(true)
      expect((yield* commandsOf(world, taskId)).map(([op]) => op)).toEqual(spawnOps)
    }))

  it.scoped("§8.12: the task's type changed inside the grace ⇒ no spawn, and the one type-mismatch failure is not repeated", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T + 59_000, PodBehaviour.always(PodBehaviour.hang))
      const handle = handleWith(yield* startExecutorIn(world, "detection"))
      const taskId = "type-changed"
      expect((yield* handle(recentRun(taskId))).result).toBe("respawn_grace_window")
      yield* atT(100_000)
      expect((yield* handle(recentRun(taskId, { task_type: "code-review" }))).result).toBe("type_mismatch")
      yield* atT(GRACE + 60_000)
      expect(yield* jobsOfTask(world, taskId)).toEqual([])
      expect((yield* commandsOf(world, taskId)).map(([op, data]) => [op, data["updates"]])).toEqual([
        ["update-frontmatter", { assignee: "", current_job: "", previous_assignee: "claude-agent" }]
      ])
    }))

  // KNOWN GAP: a deferral lives in memory and its event's offset is already committed, so a restart
  // inside the grace loses it (as in the reference, §8.4). Documented in docs/operations.md.
  it.scoped.fails("56: an executor restart during the grace does not lose the respawn: exactly one spawn after the grace", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T + 59_000, PodBehaviour.always(PodBehaviour.hang))
      const first = yield* startExecutorIn(world, "full")
      const taskId = "restart-in-grace"
      yield* consumeEvent(world, recentRun(taskId))
      yield* atT(100_000)
      yield* stopExecutor(first)
      yield* atT(110_000)
      yield* startExecutorIn(world, "full")
      yield* atT(GRACE + 120_000)
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
      expect((yield* commandsOf(world, taskId)).map(([op]) => op)).toEqual(spawnOps)
    }))

  it.scoped("57-58: the deferred spawn's createJob fails transiently ⇒ retried, one Job, one increment; the service goes on", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T + 59_000, PodBehaviour.always(PodBehaviour.hang))
      yield* startExecutorIn(world, "full")
      yield* consumeEvent(world, recentRun("deferred-a"))
      yield* consumeEvent(world, recentRun("deferred-b"))
      yield* world.cluster.failNext("createJob", undefined, 3)
      yield* atT(GRACE)
      yield* atT(GRACE + 60_000)
      for (const taskId of ["deferred-a", "deferred-b"]) {
        expect([taskId, (yield* jobsOfTask(world, taskId)).length]).toEqual([taskId, 1])
        expect([taskId, (yield* commandsOf(world, taskId)).map(([op]) => op)]).toEqual([taskId, spawnOps])
      }
      const failed = (yield* world.cluster.writes).filter((w) => w.operation === "createJob" && w.outcome === "failed")
      expect(failed).toHaveLength(3)
      // the consumer still works
      yield* consumeEvent(world, taskEvent("after-the-failures"))
      expect(yield* jobsOfTask(world, "after-the-failures")).toHaveLength(1)
    }))

  it.scoped("57: the deferred spawn's transaction is aborted ⇒ retried; the redo finds its Job: one Job, one increment", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T + 59_000, PodBehaviour.always(PodBehaviour.hang))
      yield* startExecutorIn(world, "full")
      const taskId = "deferred-broker-failure"
      yield* consumeEvent(world, recentRun(taskId))
      yield* world.bus.failNextAppends(2)
      yield* atT(GRACE)
      yield* atT(GRACE + 60_000)
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
      expect((yield* commandsOf(world, taskId)).map(([op]) => op)).toEqual(spawnOps)
      yield* consumeEvent(world, taskEvent("after-the-outage"))
      expect(yield* jobsOfTask(world, "after-the-outage")).toHaveLength(1)
    }))
})
