import { describe, expect, it } from "@effect/vitest"
import { Effect, Ref, Stream } from "effect"
import { type ClusterWatchShape, RunTracker, sweepOnce, type VerdictSource, Verdicts } from "@executor/executor"
import type { Kube } from "@executor/domain"
import { PodBehaviour, type World } from "@executor/testkit"
import {
  at,
  crashedStatus,
  createManualJob,
  failurePairs,
  jobByName,
  jobOf,
  makeWorld,
  podOf,
  published,
  runningStatus,
  start,
  startWithWatch,
  verdictRows,
  withManualJobs
} from "./fixtures.js"

const taskId = "4aa57614-8835-4992-87e9-ca483ddbeae6"
const sources: ReadonlyArray<VerdictSource> = ["pod", "job", "sweeper", "recovery"]

describe("detectors racing on one job", () => {
  it.scoped("watchers, sweeps and direct evaluations while the first verdict is in flight: one verdict, one pair", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always("manual"))
      const { executor, spawn } = yield* start(world)
      yield* spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(2)
      const pod = (yield* podOf(world, job)).metadata.name
      yield* world.cluster.patchPodStatus(pod, runningStatus())
      const spawnRecords = (yield* published(world)).length
      // from now on every transaction takes 10 s to commit
      yield* world.bus.setBeforeAppend(() => Effect.sleep("10 seconds"))
      const verdicts = yield* executor.use(Verdicts)
      const evaluations = Array.from({ length: 5 }, () => sources.map((source) => verdicts.evaluate(job, source))).flat()

      yield* Effect.all(
        [
          // the pod crashes (pod watcher; the job controller then fails the Job: job watcher)
          world.cluster.patchPodStatus(pod, crashedStatus(1)),
          ...evaluations,
          executor.use(sweepOnce),
          // more updates of the pod and the Job while the verdict is reserved and being published
          world.cluster.patchPodStatus(pod, crashedStatus(137, "OOMKilled")),
          world.cluster.patchJobStatus(job, { active: 0, failed: 1 }),
          executor.use(sweepOnce),
          ...evaluations
        ],
        { concurrency: "unbounded", discard: true }
      )
      // decided at once, not yet published
      expect((yield* verdictRows(world)).map((v) => [v[0], v[2], v[3]])).toEqual([["pod_crash_no_stdout", 2000, job]])
      expect(yield* published(world)).toHaveLength(spawnRecords)

      // again while the publish is still in flight
      yield* at(7)
      yield* Effect.all([executor.use(sweepOnce), ...evaluations], { concurrency: "unbounded", discard: true })
      yield* world.cluster.patchPodStatus(pod, crashedStatus(2))
      expect(yield* published(world)).toHaveLength(spawnRecords)

      yield* at(12)
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([[job, "pod_crash_no_stdout"]])
      expect(yield* jobByName(world, job)).toBeUndefined()

      // and once it is settled, nothing more (the run is gone, the dedupe remembers the job)
      yield* Effect.all([executor.use(sweepOnce), ...evaluations], { concurrency: "unbounded", discard: true })
      yield* at(400)
      expect(yield* verdictRows(world)).toHaveLength(1)
      expect(yield* failurePairs(world)).toHaveLength(1)
      expect(yield* published(world)).toHaveLength(spawnRecords + 2)
    }))

  it.scoped("many concurrent evaluations of a fresh zombie from every source reserve exactly one verdict", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always("manual"))
      const { executor, spawn } = yield* start(world)
      yield* spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(2)
      const pod = (yield* podOf(world, job)).metadata.name
      yield* world.bus.setBeforeAppend(() => Effect.sleep("1 second"))
      const verdicts = yield* executor.use(Verdicts)
      // the evidence changes and every detector looks at it at the same instant
      yield* world.cluster.patchPodStatus(pod, { ...crashedStatus(3), reason: "Evicted", message: "node pressure" })
      yield* Effect.all(
        [
          ...Array.from({ length: 20 }, (_, i) => verdicts.evaluate(job, sources[i % sources.length] ?? "pod")),
          executor.use(sweepOnce),
          executor.use(sweepOnce)
        ],
        { concurrency: "unbounded", discard: true }
      )
      yield* at(10)
      const judged = yield* verdictRows(world)
      expect(judged.map((v) => [v[0], v[2], v[3]])).toEqual([["pod_evicted", 2000, job]])
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([[job, "pod_evicted"]])
    }))

  it.scoped("the Job deadline, the pod kill and a sweeper tick at the same instant, publish slowed past the next tick", () =>
    Effect.gen(function* () {
      // timeout 600 s and the default 60 s sweeper: the deadline falls on a tick
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hang), { zombieJobTimeoutSeconds: 600 })
      const { spawn } = yield* start(world)
      yield* spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* world.bus.setBeforeAppend(() => Effect.sleep("90 seconds"))
      yield* at(600)
      const judged = yield* verdictRows(world)
      expect(judged.map((v) => [v[0], v[2], v[3]])).toEqual([["deadline_exceeded", 600_000, job]])
      // ticks at 660 while the publish is in flight
      yield* at(689)
      expect(yield* failurePairs(world)).toEqual([])
      yield* at(690)
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([[job, "deadline_exceeded"]])
      yield* at(1200)
      expect(yield* verdictRows(world)).toHaveLength(1)
      expect(yield* failurePairs(world)).toHaveLength(1)
    }))
})

/**
 * A Job cache that has not seen any Job yet (its watch is reconnecting or behind), while pods and
 * the API server are current: the executor must not take the cache's silence for a deletion.
 */
const laggingJobCache = (world: World.World, lagging: Ref.Ref<boolean>): ClusterWatchShape => ({
  ...world.cluster.watch,
  jobEvents: world.cluster.watch.jobEvents.pipe(Stream.filterEffect(() => Effect.map(Ref.get(lagging), (l) => !l))),
  job: (name) => Effect.flatMap(Ref.get(lagging), (l) => (l ? Effect.succeedNone : world.cluster.watch.job(name))),
  jobs: Effect.flatMap(Ref.get(lagging), (l) => (l ? Effect.succeed([]) : world.cluster.watch.jobs))
})

/** An executor over a lagging Job cache that has just spawned a run of `taskId`. */
const spawnBehindLaggingCache = (behaviour: PodBehaviour.PodBehaviour) =>
  Effect.gen(function* () {
    const world = yield* makeWorld(PodBehaviour.always(behaviour))
    const lagging = yield* Ref.make(true)
    const executor = yield* startWithWatch(world, laggingJobCache(world, lagging))
    const handled = yield* executor.spawn(taskId)
    expect(handled.result).toBe("spawned")
    return { world, lagging, executor }
  })

describe("a Job cache behind the API server", () => {
  it.scoped("a live run whose Job the cache has not seen is not judged executor_watch_lost; it completes", () =>
    Effect.gen(function* () {
      const { executor, lagging, world } = yield* spawnBehindLaggingCache(PodBehaviour.succeed("5 minutes"))
      // pod events (created, started) and four sweeps judge the run while the cache lags
      yield* at(240)
      expect(yield* executor.verdictRows).toEqual([])
      yield* Ref.set(lagging, false)
      yield* at(400)
      expect(yield* executor.verdictRows).toEqual([])
      expect(yield* failurePairs(world)).toEqual([])
      // the run settled as a success: the finalizer is gone, nothing is tracked
      const job = yield* jobByName(world, yield* jobOf(world, taskId))
      expect(job?.status?.succeeded).toBe(1)
      expect(job?.metadata.finalizers ?? []).toEqual([])
      expect(yield* executor.use(Effect.flatMap(RunTracker, (t) => t.all))).toEqual([])
    }))

  it.scoped("a Job really deleted while the cache lags is judged executor_watch_lost once, from the API server's answer", () =>
    Effect.gen(function* () {
      const { executor, world } = yield* spawnBehindLaggingCache(PodBehaviour.hang)
      yield* at(30)
      const name = yield* jobOf(world, taskId)
      yield* world.cluster.clearJobFinalizers(name)
      yield* world.cluster.deleteJob(name)
      yield* at(120)
      expect((yield* executor.verdictRows).map((v) => [v[0], v[3]])).toEqual([["executor_watch_lost", name]])
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([[name, "executor_watch_lost"]])
    }))

  it.scoped("while the API server cannot answer either, a Job missing from the cache gets no verdict", () =>
    Effect.gen(function* () {
      const { executor, lagging, world } = yield* spawnBehindLaggingCache(PodBehaviour.hang)
      yield* at(30)
      yield* world.cluster.setApiDown(true)
      yield* at(300)
      expect(yield* executor.verdictRows).toEqual([])
      yield* world.cluster.setApiDown(false)
      yield* Ref.set(lagging, false)
      yield* at(600)
      expect(yield* executor.verdictRows).toEqual([])
      expect(yield* failurePairs(world)).toEqual([])
    }))
})

describe("a pod cache behind the API server", () => {
  it.scoped("the Job's failure arrives before the pod's: the verdict still carries the pod's evidence (OOMKilled, exit 137)", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(withManualJobs(PodBehaviour.hang))
      yield* createManualJob(world, { name: "manual-oom-1", taskId })
      // the pod cache stops at what it held when it fell behind; pod events stop coming
      const lagging = yield* Ref.make(false)
      const held = new Map<string, ReadonlyArray<Kube.Pod>>()
      const watch: ClusterWatchShape = {
        ...world.cluster.watch,
        podEvents: world.cluster.watch.podEvents.pipe(Stream.filterEffect(() => Effect.map(Ref.get(lagging), (l) => !l))),
        podsOfJob: (name) =>
          Effect.flatMap(Ref.get(lagging), (l) =>
            l && held.has(name)
              ? Effect.succeed(held.get(name) ?? [])
              : Effect.tap(world.cluster.watch.podsOfJob(name), (pods) => Effect.sync(() => void held.set(name, pods))))
      }
      const executor = yield* startWithWatch(world, watch)
      yield* at(2)
      const pod = (yield* podOf(world, "manual-oom-1")).metadata.name
      yield* world.cluster.patchPodStatus(pod, runningStatus())
      yield* at(10)
      yield* Ref.set(lagging, true)
      // the kubelet reports the OOM kill; the job controller fails the Job (backoffLimit 0) at once
      yield* world.cluster.patchPodStatus(pod, crashedStatus(137, "OOMKilled"))
      yield* at(20)
      const pairs = yield* failurePairs(world)
      expect(pairs.map((p) => [p.job, p.reason])).toEqual([["manual-oom-1", "pod_crash_no_stdout"]])
      expect(pairs[0]?.detail).toContain("OOMKilled, exit 137")
      expect((yield* executor.verdictRows).map((v) => [v[0], v[1]])).toEqual([["pod_crash_no_stdout", "job"]])
    }))
})
