import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { sweepOnce, type VerdictSource, Verdicts } from "@executor/executor"
import { PodBehaviour } from "@executor/testkit"
import {
  at,
  crashedStatus,
  failurePairs,
  jobByName,
  jobOf,
  makeWorld,
  podOf,
  published,
  runningStatus,
  start,
  verdictRows
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
      yield* world.bus.setBeforeCommit(() => Effect.sleep("10 seconds"))
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
      yield* world.bus.setBeforeCommit(() => Effect.sleep("1 second"))
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
      yield* world.bus.setBeforeCommit(() => Effect.sleep("90 seconds"))
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
