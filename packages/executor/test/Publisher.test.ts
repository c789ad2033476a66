import { describe, expect, it } from "@effect/vitest"
import { Effect, Metric, Option, Ref } from "effect"
import { ClusterError, Metrics, RunTracker, Verdicts } from "@executor/executor"
import { type InMemoryBus, PodBehaviour, type World } from "@executor/testkit"
import {
  assignee,
  at,
  atMillis,
  counterValue,
  createManualJob,
  failurePairs,
  jobByName,
  jobOf,
  makeWorld,
  names,
  podOf,
  published,
  runningStatus,
  start,
  verdictRows,
  withManualJobs
} from "./fixtures.js"

const taskId = "4aa57614-8835-4992-87e9-ca483ddbeae6"
const requestTopic = "agent-task-v1-request"

const published_ = (reason: string) =>
  counterValue(Metric.tagged(Metric.tagged(Metrics.verdicts, "reason", reason), "source", "pod"))

/** The operations of every transaction that reached its commit point. */
const recordTransactions = (world: World.World) =>
  Effect.gen(function* () {
    const seen = yield* Ref.make<ReadonlyArray<ReadonlyArray<string>>>([])
    const hook: InMemoryBus.BeforeAppend = (transaction) =>
      Ref.update(seen, (all) => [
        ...all,
        transaction.messages.map((m) => (JSON.parse(m.value) as { readonly operation: string }).operation)
      ])
    yield* world.bus.setBeforeAppend(hook)
    return Ref.get(seen)
  })

const failureRecordTimes = (world: World.World) =>
  Effect.map(world.bus.records(requestTopic), (records) =>
    records
      .filter((r) => {
        const data = (JSON.parse(r.value) as { readonly data: { readonly updates?: Record<string, unknown> } }).data
        return data.updates?.["current_job"] === ""
      })
      .map((r) => r.appendedAt)
  )

describe("publishing the failure pair", () => {
  it.scoped("aborted transactions are retried; nothing half-published; one pair; the verdict line keeps its decision time", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.invalidImage))
      const { spawn } = yield* start(world)
      yield* spawn(taskId)
      const job = yield* jobOf(world, taskId)
      const spawnRecords = (yield* published(world)).length
      const committed = yield* recordTransactions(world)
      const retriesBefore = yield* counterValue(Metrics.publishRetries)
      const publishedBefore = yield* published_("pod_config_error")
      yield* world.bus.failNextAppends(3)

      yield* at(6)
      expect(yield* verdictRows(world)).toEqual([["pod_config_error", "pod", 6000, job]])
      expect(yield* published(world)).toHaveLength(spawnRecords)
      // not done while unpublished: the Job stays (marked, finalizer held), no verdict counted
      const held = yield* jobByName(world, job)
      expect(held?.metadata.finalizers).toEqual([names.finalizer])
      expect(held?.metadata.deletionTimestamp).toBeUndefined()
      expect(held?.metadata.annotations?.[names.verdictAnnotation]).toBeDefined()
      expect(yield* published_("pod_config_error")).toBe(publishedBefore)

      for (const s of [6, 7, 8, 10, 15, 30, 60]) {
        yield* at(s)
        // every prefix of the topic is whole pairs only (failurePairs dies on a half-sent pair)
        expect((yield* failurePairs(world)).length).toBeLessThanOrEqual(1)
      }
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([[job, "pod_config_error"]])
      expect(yield* committed).toEqual([["update-frontmatter", "increment-frontmatter"]])
      expect((yield* counterValue(Metrics.publishRetries)) - retriesBefore).toBe(3)
      expect((yield* published_("pod_config_error")) - publishedBefore).toBe(1)
      const [appendedAt] = yield* failureRecordTimes(world)
      expect(appendedAt).toBeGreaterThan(6000)
      expect(yield* verdictRows(world)).toEqual([["pod_config_error", "pod", 6000, job]])
      expect(yield* jobByName(world, job)).toBeUndefined()
    }))

  it.scoped("a broker outage: decided at once, published once the broker is back, exactly one pair", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.invalidImage))
      const { spawn } = yield* start(world)
      yield* spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* world.bus.setDown(true)
      yield* at(6)
      expect(yield* verdictRows(world)).toEqual([["pod_config_error", "pod", 6000, job]])
      yield* at(186)
      expect(yield* failurePairs(world)).toEqual([])
      const held = yield* jobByName(world, job)
      expect(held?.metadata.finalizers).toEqual([names.finalizer])
      expect(held?.metadata.deletionTimestamp).toBeUndefined()
      yield* world.bus.setDown(false)
      // retried with a capped (30 s), jittered back-off
      yield* at(186 + 40)
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([[job, "pod_config_error"]])
      const [appendedAt] = yield* failureRecordTimes(world)
      expect(appendedAt).toBeGreaterThanOrEqual(186_000)
      expect(yield* jobByName(world, job)).toBeUndefined()
      yield* at(400)
      expect(yield* failurePairs(world)).toHaveLength(1)
      expect(yield* verdictRows(world)).toEqual([["pod_config_error", "pod", 6000, job]])
    }))

  it.scoped("96: three due runs in one sweep, the second one's publish fails transiently: one pair each", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(withManualJobs(PodBehaviour.hang))
      const tasks = ["task-aaaa-1", "task-bbbb-2", "task-cccc-3"]
      for (const [i, task] of tasks.entries()) {
        yield* createManualJob(world, { name: `manual-run-${i}`, taskId: task })
      }
      yield* start(world)
      yield* at(2)
      for (const i of tasks.keys()) {
        yield* world.cluster.patchPodStatus((yield* podOf(world, `manual-run-${i}`)).metadata.name, runningStatus())
      }
      const failedOnce = yield* Ref.make(false)
      yield* world.bus.setBeforeAppend((transaction) =>
        transaction.messages.some((m) => m.key === tasks[1])
          ? Effect.flatMap(Ref.getAndSet(failedOnce, true), (failed) => (failed ? Effect.void : Effect.fail("broker hiccup")))
          : Effect.void
      )
      // no deadline on these Jobs (1800 s by default): a running pod past deadline + one interval
      yield* at(1859)
      expect(yield* verdictRows(world)).toEqual([])
      yield* at(1860)
      expect((yield* verdictRows(world)).map((v) => [v[0], v[1], v[2]])).toEqual(
        tasks.map(() => ["deadline_exceeded", "sweeper", 1_860_000])
      )
      yield* at(1900)
      expect(yield* Ref.get(failedOnce)).toBe(true)
      const pairs = yield* failurePairs(world)
      expect(pairs.map((p) => p.taskId).sort()).toEqual(tasks)
      expect(pairs.map((p) => p.job).sort()).toEqual(["manual-run-0", "manual-run-1", "manual-run-2"])
      yield* at(1980)
      expect(yield* failurePairs(world)).toHaveLength(3)
    }))
})

describe("the verdict pipeline through a cluster API outage", () => {
  it.scoped("the API down for 5 minutes from the verdict's first write on: the mark is retried until it is back, then the Job is deleted and the task can respawn", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.invalidImage))
      const { spawn } = yield* start(world)
      yield* spawn(taskId)
      const job = yield* jobOf(world, taskId)
      // the API server goes away just as the confirmed verdict starts writing
      yield* world.cluster.setBeforeWrite((write) =>
        write.operation === "annotateJob" ? Effect.zipRight(world.cluster.setApiDown(true), world.cluster.setBeforeWrite(undefined)) : Effect.void
      )
      yield* at(6)
      expect(yield* verdictRows(world)).toEqual([["pod_config_error", "pod", 6000, job]])
      yield* at(306)
      expect(yield* failurePairs(world)).toEqual([])
      yield* world.cluster.setApiDown(false)
      // transient errors are retried with a capped back-off (30 s): the clean-up finishes soon after
      yield* at(306 + 90)
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([[job, "pod_config_error"]])
      expect(yield* jobByName(world, job)).toBeUndefined()
      // so the zombie no longer blocks the retry of its task (REF §8.3)
      const handled = yield* spawn(taskId, { trigger_count: 2, current_job: "" })
      expect(handled.result).toBe("spawned")
    }))

  it.scoped("the API down when the pod turns bad: no verdict until the API server confirms it, then exactly one", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.invalidImage))
      const { spawn } = yield* start(world)
      yield* spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* world.cluster.setApiDown(true)
      yield* at(300)
      expect(yield* verdictRows(world)).toEqual([])
      yield* world.cluster.setApiDown(false)
      // an unconfirmed verdict is looked at again every 2 s (by the detector that saw it last)
      yield* at(302)
      expect((yield* verdictRows(world)).map(([reason, , t, name]) => [reason, t, name])).toEqual([["pod_config_error", 302_000, job]])
      yield* at(400)
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([[job, "pod_config_error"]])
      expect(yield* jobByName(world, job)).toBeUndefined()
    }))
})

describe("dedupe of verdicts per Job (items 61/62)", () => {
  /** Sees the same Job as a run once more (as a redelivered spawn would) and evaluates it. */
  const trackAgain = (executor: World.ExecutorProcess, job: string, timeoutSeconds: number) =>
    executor.use(
      Effect.gen(function* () {
        const tracker = yield* RunTracker
        yield* tracker.track({ taskId, jobName: job, assignee, startedAt: 0, timeoutSeconds, attempt: Option.some(1), spawnPublished: true })
        const verdicts = yield* Verdicts
        yield* verdicts.evaluate(job, "sweeper")
      })
    )

  for (const [timeout, ttl] of [
    [1800, 3600],
    [600, 3600],
    [2400, 4800]
  ] as const) {
    it.scoped(`zombieJobTimeoutSeconds ${timeout}: a second verdict for the Job is not published for ${ttl} s, then is`, () =>
      Effect.gen(function* () {
        // a long sweeper interval only to keep the test fast; the sweeper re-evaluates the run too
        const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.invalidImage), {
          zombieJobTimeoutSeconds: timeout,
          zombieSweeperIntervalSeconds: 600
        })
        const { executor, spawn } = yield* start(world)
        // the Job survives its verdict: the delete is refused
        yield* world.cluster.failNext(
          "deleteJob",
          new ClusterError({ operation: "deleteJob", target: "", transient: false, message: "forbidden" })
        )
        yield* spawn(taskId)
        const job = yield* jobOf(world, taskId)
        yield* at(6)
        expect(yield* failurePairs(world)).toHaveLength(1)
        expect(yield* jobByName(world, job)).toBeDefined()

        const hitsBefore = yield* counterValue(Metrics.dedupeHits)
        yield* at(6 + timeout)
        yield* trackAgain(executor, job, timeout)
        yield* atMillis((6 + ttl) * 1000 - 1)
        yield* trackAgain(executor, job, timeout)
        expect(yield* failurePairs(world)).toHaveLength(1)
        expect((yield* counterValue(Metrics.dedupeHits)) - hitsBefore).toBeGreaterThanOrEqual(2)
        // at exactly the TTL the entry has expired
        yield* at(6 + ttl)
        yield* trackAgain(executor, job, timeout)
        yield* at(6 + ttl + 1)
        expect((yield* failurePairs(world)).map((p) => p.job)).toEqual([job, job])
      }))
  }
})
