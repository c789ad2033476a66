import { describe, expect, it } from "@effect/vitest"
import { Effect, Ref } from "effect"
import { PodBehaviour } from "@executor/testkit"
import {
  at,
  atMillis,
  createManualJob,
  failurePairs,
  jobByName,
  jobOf,
  makeWorld,
  names,
  podOf,
  runningStatus,
  start,
  trackedRuns,
  unschedulableStatus,
  verdictRows,
  withManualJobs
} from "./fixtures.js"

const taskId = "4aa57614-8835-4992-87e9-ca483ddbeae6"

describe("executor restarts over the same cluster and broker", () => {
  it.scoped("a verdict, then a restart: the fresh executor does not publish it again", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.invalidImage))
      const first = yield* start(world)
      yield* first.spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(6)
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([[job, "pod_config_error"]])
      yield* first.executor.stop
      yield* at(20)
      const second = yield* start(world)
      yield* at(200)
      expect(yield* verdictRows(world)).toHaveLength(1)
      expect(yield* failurePairs(world)).toHaveLength(1)
      expect(yield* trackedRuns(second.executor)).toEqual([])
    }))

  it.scoped("a Job deleted by an operator while no executor ran is judged executor_watch_lost by recovery", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hang))
      const first = yield* start(world)
      yield* first.spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(10)
      yield* first.executor.stop
      yield* at(20)
      yield* world.cluster.deleteJob(job)
      // the finalizer keeps it visible until an executor has settled it
      yield* at(300)
      expect((yield* jobByName(world, job))?.metadata.deletionTimestamp).toBeDefined()
      expect(yield* verdictRows(world)).toEqual([])

      yield* start(world)
      yield* at(360)
      const judged = yield* verdictRows(world)
      expect(judged.map((v) => [v[0], v[1], v[3]])).toEqual([["executor_watch_lost", "recovery", job]])
      const t = judged[0]?.[2] ?? -1
      expect(t).toBeGreaterThanOrEqual(300_000)
      expect(t).toBeLessThanOrEqual(360_000)
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([[job, "executor_watch_lost"]])
      expect(yield* jobByName(world, job)).toBeUndefined()
      yield* at(500)
      expect(yield* failurePairs(world)).toHaveLength(1)
    }))

  it.scoped("a Job of the old executor without the finalizer is adopted (finalizer added), then judged like any run", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(withManualJobs(PodBehaviour.hang))
      const job = "manual-ref-job-1"
      yield* createManualJob(world, { name: job, taskId, activeDeadlineSeconds: 1800, finalizer: false })
      yield* at(2)
      yield* world.cluster.patchPodStatus((yield* podOf(world, job)).metadata.name, runningStatus())
      const { executor } = yield* start(world)
      expect((yield* jobByName(world, job))?.metadata.finalizers).toEqual([names.finalizer])
      expect((yield* trackedRuns(executor)).map((r) => [r.jobName, r.taskId, r.timeoutSeconds])).toEqual([
        [job, taskId, 1800]
      ])
      yield* at(100)
      yield* world.cluster.deleteJob(job)
      yield* at(100)
      expect(yield* verdictRows(world)).toEqual([["executor_watch_lost", "job", 100_000, job]])
      expect(yield* jobByName(world, job)).toBeUndefined()
    }))

  it.scoped("a run in flight survives a restart: the new executor tracks it and judges it at its deadline, once", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hang), { zombieJobTimeoutSeconds: 600 })
      const first = yield* start(world)
      yield* first.spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(100)
      yield* first.executor.stop
      yield* at(200)
      const second = yield* start(world)
      expect((yield* trackedRuns(second.executor)).map((r) => [r.jobName, r.taskId, r.startedAt, r.timeoutSeconds])).toEqual([
        [job, taskId, 0, 600]
      ])
      yield* at(599)
      expect(yield* verdictRows(world)).toEqual([])
      yield* at(600)
      const judged = yield* verdictRows(world)
      expect(judged.map((v) => [v[0], v[2], v[3]])).toEqual([["deadline_exceeded", 600_000, job]])
      yield* at(800)
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([[job, "deadline_exceeded"]])
      expect(yield* verdictRows(world)).toHaveLength(1)
    }))

  for (const [behaviour, due, reason] of [
    [PodBehaviour.noPod, 120, "job_pod_create_failed"],
    [PodBehaviour.unschedulable, 121, "pod_not_scheduled"]
  ] as const) {
    it.scoped(`a restart inside the grace of ${reason}: still judged at the original time (Job/pod creation + grace)`, () =>
      Effect.gen(function* () {
        const world = yield* makeWorld(PodBehaviour.always(behaviour))
        const first = yield* start(world)
        yield* first.spawn(taskId)
        const job = yield* jobOf(world, taskId)
        yield* at(10)
        yield* first.executor.stop
        // up again at 50 s: its sweeper ticks at 110 s and 170 s
        yield* at(50)
        yield* start(world)
        yield* atMillis(due * 1000 - 1)
        expect(yield* verdictRows(world)).toEqual([])
        yield* at(due)
        expect((yield* verdictRows(world)).map((v) => [v[0], v[2], v[3]])).toEqual([[reason, due * 1000, job]])
        yield* at(due + 120)
        expect(yield* failurePairs(world)).toHaveLength(1)
      }))
  }

  it.scoped("a restart during an image pull failure: judged no later than one grace after the restart", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.imagePullFails))
      const first = yield* start(world)
      yield* first.spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(30)
      yield* first.executor.stop
      yield* at(40)
      yield* start(world)
      // the waiting state carries no timestamp: the new executor counts the grace from what it saw
      yield* at(65)
      expect(yield* verdictRows(world)).toEqual([])
      yield* at(100)
      const judged = yield* verdictRows(world)
      expect(judged.map((v) => [v[0], v[3]])).toEqual([["image_pull_backoff", job]])
      yield* at(300)
      expect(yield* failurePairs(world)).toHaveLength(1)
    }))

  it.scoped("a run whose deadline passed while no executor ran is judged by recovery when the next one starts", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hang), { zombieJobTimeoutSeconds: 600 })
      const first = yield* start(world)
      yield* first.spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(100)
      yield* first.executor.stop
      yield* at(700)
      yield* start(world)
      yield* at(700)
      expect(yield* verdictRows(world)).toEqual([["deadline_exceeded", "recovery", 700_000, job]])
      yield* at(900)
      expect(yield* failurePairs(world)).toHaveLength(1)
      expect(yield* jobByName(world, job)).toBeUndefined()
    }))

  it.scoped("a run that succeeded while no executor ran: no verdict, the finalizer is released, the Job left to its TTL", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.succeed("1 minute")))
      const first = yield* start(world)
      yield* first.spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(10)
      yield* first.executor.stop
      yield* at(200)
      expect((yield* jobByName(world, job))?.metadata.finalizers).toEqual([names.finalizer])
      const second = yield* start(world)
      yield* at(200)
      const settled = yield* jobByName(world, job)
      expect(settled?.metadata.finalizers ?? []).toEqual([])
      expect(settled?.metadata.deletionTimestamp).toBeUndefined()
      expect(yield* trackedRuns(second.executor)).toEqual([])
      yield* at(900)
      expect(yield* verdictRows(world)).toEqual([])
      expect(yield* failurePairs(world)).toEqual([])
    }))

  it.scoped("a pod that crashed while no executor ran is judged by recovery when the next one starts", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.fail("1 minute", { exitCode: 137, reason: "OOMKilled" })))
      const first = yield* start(world)
      yield* first.spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(10)
      yield* first.executor.stop
      yield* at(200)
      yield* start(world)
      yield* at(200)
      expect(yield* verdictRows(world)).toEqual([["pod_crash_no_stdout", "recovery", 200_000, job]])
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason, p.detail])).toEqual([
        [job, "pod_crash_no_stdout", "OOMKilled, exit 137"]
      ])
      expect(yield* jobByName(world, job)).toBeUndefined()
    }))

  it.scoped("a verdict marked on the Job but not cleaned up (crash at the delete): the next executor finds its pair in the log, does not publish it again, deletes the Job", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.invalidImage))
      const first = yield* start(world)
      // the executor "crashes" when it is about to delete the Job
      yield* world.cluster.setBeforeWrite((write) => (write.operation === "deleteJob" ? Effect.interrupt : Effect.void))
      yield* first.spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(6)
      expect(yield* failurePairs(world)).toHaveLength(1)
      const marked = yield* jobByName(world, job)
      expect(marked?.metadata.annotations?.[names.verdictAnnotation]).toContain("pod_config_error")
      expect(marked?.metadata.finalizers).toEqual([names.finalizer])
      yield* first.executor.stop
      yield* world.cluster.setBeforeWrite(undefined)

      yield* at(30)
      yield* start(world)
      yield* at(40)
      // the mark names where the pair went: read back, found, not sent again (docs/decisions.md#read-back)
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([[job, "pod_config_error"]])
      expect(yield* jobByName(world, job)).toBeUndefined()
      yield* at(600)
      expect(yield* failurePairs(world)).toHaveLength(1)
    }))

  it.scoped("a marked Job whose pod recovered meanwhile is still finished by the next executor: the verdict stands", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always("manual"))
      const first = yield* start(world)
      yield* world.cluster.setBeforeWrite((write) => (write.operation === "deleteJob" ? Effect.interrupt : Effect.void))
      yield* first.spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(1)
      const pod = (yield* podOf(world, job)).metadata.name
      yield* world.cluster.patchPodStatus(pod, unschedulableStatus)
      yield* at(121)
      expect(yield* verdictRows(world)).toEqual([["pod_not_scheduled", "pod", 121_000, job]])
      expect(yield* failurePairs(world)).toHaveLength(1)
      yield* first.executor.stop
      yield* world.cluster.setBeforeWrite(undefined)
      // the pod is scheduled at last while no executor runs; the failure was published all the same
      yield* world.cluster.patchPodStatus(pod, runningStatus())
      yield* at(150)
      yield* start(world)
      yield* at(160)
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([[job, "pod_not_scheduled"]])
      expect(yield* jobByName(world, job)).toBeUndefined()
    }))

  it.scoped("a crash after the delete, before the finalizer was released: no second publish, the Job goes", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.invalidImage))
      const first = yield* start(world)
      yield* world.cluster.setBeforeWrite((write) =>
        write.operation === "removeJobFinalizer" ? Effect.interrupt : Effect.void
      )
      yield* first.spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(6)
      expect(yield* failurePairs(world)).toHaveLength(1)
      const terminating = yield* jobByName(world, job)
      expect(terminating?.metadata.deletionTimestamp).toBeDefined()
      expect(terminating?.metadata.finalizers).toEqual([names.finalizer])
      yield* first.executor.stop
      yield* world.cluster.setBeforeWrite(undefined)

      yield* at(30)
      yield* start(world)
      yield* at(600)
      expect(yield* failurePairs(world)).toHaveLength(1)
      expect(yield* jobByName(world, job)).toBeUndefined()
    }))

  it.scoped("a verdict whose publish was still being retried when the executor died is published by the next one", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.invalidImage))
      const first = yield* start(world)
      yield* first.spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* world.bus.setDown(true)
      yield* at(6)
      expect(yield* verdictRows(world)).toEqual([["pod_config_error", "pod", 6000, job]])
      yield* at(60)
      expect(yield* failurePairs(world)).toEqual([])
      expect((yield* jobByName(world, job))?.metadata.annotations?.[names.verdictAnnotation]).toBeDefined()
      yield* first.executor.stop
      yield* world.bus.setDown(false)
      yield* at(90)
      yield* start(world)
      yield* at(100)
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([[job, "pod_config_error"]])
      expect(yield* jobByName(world, job)).toBeUndefined()
      yield* at(700)
      expect(yield* failurePairs(world)).toHaveLength(1)
    }))

  it.scoped("a restart while a verdict's send waits (never appended): the next executor reads back, finds nothing, sends it once", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.invalidImage))
      const first = yield* start(world)
      yield* first.spawn(taskId)
      const job = yield* jobOf(world, taskId)
      const slow = yield* Ref.make(true)
      yield* world.bus.setBeforeAppend(() =>
        Effect.flatMap(Ref.get(slow), (isSlow) => (isSlow ? Effect.sleep("10 minutes") : Effect.void))
      )
      yield* at(6)
      yield* at(20)
      // the process dies while its batch waits to be appended: nothing reached the log
      yield* first.executor.stop
      yield* Ref.set(slow, false)
      expect(yield* failurePairs(world)).toEqual([])
      yield* at(30)
      yield* start(world)
      yield* at(40)
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([[job, "pod_config_error"]])
      yield* at(700)
      expect(yield* failurePairs(world)).toHaveLength(1)
      expect(yield* jobByName(world, job)).toBeUndefined()
    }))
})
