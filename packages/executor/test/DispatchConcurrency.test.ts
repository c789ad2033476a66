import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Option, TestClock } from "effect"
import { Dispatcher } from "@executor/executor"
import { Kube } from "@executor/domain"
import { PodBehaviour, type World } from "@executor/testkit"
import {
  agentSpec,
  assignee,
  commandsOf,
  committedEventOffset,
  consumeEvent,
  createManualJob,
  deferredOf,
  handleWith,
  jobCreationTimes,
  jobsOfTask,
  makeWorldAt,
  names,
  produceEvent,
  settle,
  settleUntil,
  startExecutorIn,
  startWithWatchIn,
  taskEvent,
  taskEventCounters,
  withManualJobs
} from "./fixtures.js"

// Catalogue items 42-47 and executor.md §8.12-8.13, with the gate order of decisions D4.9.

const T0 = Date.parse("2026-04-18T12:00:00Z")
const iso = (millis: number) => new Date(millis).toISOString().replace(".000Z", "Z")

/** The Jobs of the `claude-agent` Config (its concurrency label). */
const labelled = (world: World.World) =>
  Effect.map(world.cluster.jobsSnapshot, (jobs) => jobs.filter((j) => j.metadata.labels?.[names.assigneeLabel] === assignee))

describe("concurrency cap (items 42-47)", () => {
  it.scoped("42-43: cap 4 — three running admit a fourth; the fifth is deferred 60 s and spawned once a slot has freed", () =>
    Effect.gen(function* () {
      // slot-1's run succeeds 36 s after its Job (pod at 1 s, running at 6 s, exits 30 s later)
      const resolver = PodBehaviour.plan({ default: [PodBehaviour.hang], byTask: { "slot-1": [PodBehaviour.succeed("30 seconds")] } })
      const world = yield* makeWorldAt(T0, resolver, { maxConcurrentJobs: 4 })
      const executor = yield* startExecutorIn(world, "full")
      for (const slot of ["slot-1", "slot-2", "slot-3", "slot-4"]) yield* consumeEvent(world, taskEvent(slot))
      expect(yield* labelled(world)).toHaveLength(4)

      const counters = yield* taskEventCounters
      const { committed } = yield* consumeEvent(world, taskEvent("queued"))
      // deferred, no error: the offset is committed, nothing published, the retry due in 60 s
      expect(committed).toBe("5")
      expect(yield* counters.moved).toEqual({ deferred_concurrency_cap: 1 })
      expect(yield* commandsOf(world, "queued")).toEqual([])
      expect(yield* deferredOf(executor)).toEqual([["queued", T0 + 60_000]])

      yield* TestClock.adjust("36 seconds")
      yield* settle
      // the slot is free now, but the deferred entry waits for its time
      expect(yield* jobsOfTask(world, "queued")).toEqual([])
      yield* TestClock.adjust(60_000 - 36_000 - 1)
      yield* settle
      expect(yield* jobsOfTask(world, "queued")).toEqual([])
      yield* TestClock.adjust(1)
      yield* settleUntil(jobsOfTask(world, "queued"), (jobs) => jobs.length > 0)
      yield* settle
      expect(yield* jobCreationTimes(world, "queued")).toEqual([iso(T0 + 60_000)])
      expect((yield* commandsOf(world, "queued")).map(([op]) => op)).toEqual(["increment-frontmatter", "update-frontmatter"])
      expect((yield* counters.moved)["spawned"]).toBe(1)
      expect((yield* counters.moved)["deferred_concurrency_cap"]).toBe(1)
      expect(yield* deferredOf(executor)).toEqual([])
      // four run again: the cap holds
      expect((yield* labelled(world)).filter(Kube.jobActive).map((j) => j.metadata.labels?.[names.taskIdLabel])).toEqual([
        "slot-2",
        "slot-3",
        "slot-4",
        "queued"
      ])
    }))

  it.scoped("42: still full at the retry ⇒ deferred another 60 s, then spawned", () =>
    Effect.gen(function* () {
      // the only slot's run succeeds 90 s after its Job
      const resolver = PodBehaviour.plan({ default: [PodBehaviour.hang], byTask: { "slot-1": [PodBehaviour.succeed("84 seconds")] } })
      const world = yield* makeWorldAt(T0, resolver, { maxConcurrentJobs: 1 })
      const executor = yield* startExecutorIn(world, "full")
      yield* consumeEvent(world, taskEvent("slot-1"))
      const counters = yield* taskEventCounters
      yield* consumeEvent(world, taskEvent("queued"))
      yield* TestClock.adjust("60 seconds")
      yield* settle
      expect(yield* jobsOfTask(world, "queued")).toEqual([])
      expect(yield* counters.moved).toEqual({ deferred_concurrency_cap: 2 })
      expect(yield* deferredOf(executor)).toEqual([["queued", T0 + 120_000]])
      yield* TestClock.adjust("60 seconds")
      yield* settleUntil(jobsOfTask(world, "queued"), (jobs) => jobs.length > 0)
      expect(yield* jobCreationTimes(world, "queued")).toEqual([iso(T0 + 120_000)])
    }))

  it.scoped("44: cap 1, ten events of different tasks at the same instant through the consumer ⇒ exactly one Job", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang), { maxConcurrentJobs: 1 })
      const executor = yield* startExecutorIn(world, "full")
      const counters = yield* taskEventCounters
      const tasks = Array.from({ length: 10 }, (_, i) => `burst-${i}`)
      for (const taskId of tasks) yield* produceEvent(world, taskEvent(taskId))
      expect(yield* settleUntil(committedEventOffset(world), (o) => o === "10")).toBe("10")
      yield* settle
      expect((yield* labelled(world)).map((j) => j.metadata.labels?.[names.taskIdLabel])).toEqual(["burst-0"])
      expect(yield* counters.moved).toEqual({ spawned: 1, deferred_concurrency_cap: 9 })
      expect((yield* deferredOf(executor)).map(([t, at]) => [t, at])).toEqual(tasks.slice(1).map((t) => [t, T0 + 60_000]))
    }))

  it.scoped("44/§8.13: ten concurrent dispatches, slow commits and a Job cache that lags ⇒ still exactly one Job", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang), { maxConcurrentJobs: 1 })
      // the Job cache never shows a Job: only the run tracker (and the spawn lock) stand between the ten
      const executor = yield* startWithWatchIn(world, { ...world.cluster.watch, jobs: Effect.succeed([]) })
      yield* settle
      yield* world.bus.setBeforeAppend(() => Effect.sleep("1 second"))
      const dispatch = (taskId: string) =>
        executor.use(Effect.flatMap(Dispatcher, (d) => d.handle(taskEvent(taskId), Option.none())))
      const all = yield* Effect.fork(
        Effect.all(
          Array.from({ length: 10 }, (_, i) => dispatch(`race-${i}`)),
          { concurrency: "unbounded" }
        )
      )
      yield* settle
      yield* TestClock.adjust("20 seconds")
      const results = yield* Fiber.join(all)
      expect(results.filter((r) => r.result === "spawned")).toHaveLength(1)
      expect(results.filter((r) => r.result === "deferred_concurrency_cap")).toHaveLength(9)
      expect(yield* labelled(world)).toHaveLength(1)
      expect((yield* world.cluster.writes).filter((w) => w.operation === "createJob")).toHaveLength(1)
    }))

  it.scoped("§8.13: uncapped, concurrent events of ONE task (consumer and deferred queue alike) ⇒ one Job", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang))
      const executor = yield* startWithWatchIn(world, { ...world.cluster.watch, jobs: Effect.succeed([]) })
      yield* settle
      yield* world.bus.setBeforeAppend(() => Effect.sleep("1 second"))
      const dispatch = (i: number) =>
        executor.use(
          Effect.flatMap(Dispatcher, (d) => d.handle({ ...taskEvent("one-task"), identifier: `event-${i}` }, Option.none()))
        )
      const all = yield* Effect.fork(Effect.all(Array.from({ length: 6 }, (_, i) => dispatch(i)), { concurrency: "unbounded" }))
      yield* settle
      yield* TestClock.adjust("20 seconds")
      const results = yield* Fiber.join(all)
      expect(results.map((r) => r.result).sort()).toEqual(["skipped_active_job", "skipped_active_job", "skipped_active_job", "skipped_active_job", "skipped_active_job", "spawned"])
      expect(yield* jobsOfTask(world, "one-task")).toHaveLength(1)
      expect((yield* commandsOf(world, "one-task")).map(([op]) => op)).toEqual(["increment-frontmatter", "update-frontmatter"])
    }))

  it.scoped("45: cap 0 is unlimited", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang), { maxConcurrentJobs: 0 })
      const executor = yield* startExecutorIn(world, "full")
      const counters = yield* taskEventCounters
      for (let i = 0; i < 10; i++) yield* produceEvent(world, taskEvent(`free-${i}`))
      expect(yield* settleUntil(committedEventOffset(world), (o) => o === "10")).toBe("10")
      yield* settle
      expect(yield* labelled(world)).toHaveLength(10)
      expect(yield* counters.moved).toEqual({ spawned: 10 })
      expect(yield* deferredOf(executor)).toEqual([])
    }))

  it.scoped("46: the running count of an agent: running, not-yet-started and failed-but-active Jobs count; finished ones and other agents' do not", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, withManualJobs(PodBehaviour.hang), { maxConcurrentJobs: 4 })
      const handle = handleWith(yield* startExecutorIn(world, "detection"))
      const make = (name: string, labels?: Record<string, string>) =>
        createManualJob(world, { name, taskId: name, ...(labels === undefined ? {} : { labels }) })
      yield* make("manual-running")
      yield* world.cluster.patchJobStatus("manual-running", { active: 1 })
      yield* make("manual-no-status-yet")
      yield* make("manual-succeeded")
      yield* world.cluster.patchJobStatus("manual-succeeded", { succeeded: 1, conditions: [{ type: "Complete", status: "True" }] })
      yield* make("manual-deadline-killed")
      yield* world.cluster.patchJobStatus("manual-deadline-killed", {
        active: 0,
        conditions: [{ type: "Failed", status: "True", reason: "DeadlineExceeded" }]
      })
      yield* make("manual-other-agent", { [names.taskIdLabel]: "manual-other-agent", [names.assigneeLabel]: "other-agent" })
      yield* world.cluster.patchJobStatus("manual-other-agent", { active: 1 })
      yield* make("manual-failed-but-active")
      yield* world.cluster.patchJobStatus("manual-failed-but-active", { failed: 1, active: 1 })
      yield* make("manual-failed-done")
      yield* world.cluster.patchJobStatus("manual-failed-done", { failed: 1, active: 0 })
      yield* settle
      // three count: a fourth is admitted ...
      expect((yield* handle(taskEvent("fourth"))).result).toBe("spawned")
      // ... and then the agent is full
      expect((yield* handle(taskEvent("fifth"))).result).toBe("deferred_concurrency_cap")
    }))

  it.scoped("§8.12: a capped task whose trigger cap is reached is skipped once, never deferred (no 60 s churn)", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang), { maxConcurrentJobs: 1 })
      const executor = yield* startExecutorIn(world, "full")
      yield* consumeEvent(world, taskEvent("holder"))
      const counters = yield* taskEventCounters
      yield* consumeEvent(world, taskEvent("exhausted", { trigger_count: 3, max_triggers: 3 }))
      expect(yield* deferredOf(executor)).toEqual([])
      yield* TestClock.adjust("3 minutes")
      yield* settle
      expect(yield* counters.moved).toEqual({ skipped_trigger_cap: 1 })
      expect(yield* jobsOfTask(world, "exhausted")).toEqual([])
      expect(yield* commandsOf(world, "exhausted")).toEqual([])
    }))

  it.scoped("a deferred task's Config gains a free slot by a Config edit (cap raised): the retry spawns with it", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang), { maxConcurrentJobs: 1 })
      yield* startExecutorIn(world, "full")
      yield* consumeEvent(world, taskEvent("holder"))
      yield* consumeEvent(world, taskEvent("waiting"))
      yield* world.cluster.applyConfig("claude", agentSpec({ maxConcurrentJobs: 2 }))
      yield* TestClock.adjust("60 seconds")
      yield* settleUntil(jobsOfTask(world, "waiting"), (jobs) => jobs.length > 0)
      expect(yield* jobCreationTimes(world, "waiting")).toEqual([iso(T0 + 60_000)])
    }))
})
