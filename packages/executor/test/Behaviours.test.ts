import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { PodBehaviour } from "@executor/testkit"
import {
  at,
  atMillis,
  failurePairs,
  failures,
  jobByName,
  jobOf,
  makeWorld,
  names,
  start,
  trackedRuns,
  verdictRows
} from "./fixtures.js"

const taskId = "4aa57614-8835-4992-87e9-ca483ddbeae6"

interface Row {
  readonly name: string
  readonly behaviour: PodBehaviour.PodBehaviour
  readonly spec?: Record<string, unknown>
  readonly reason: string
  readonly source: string
  /** At an instant that is also a sweeper tick (a multiple of 60 s) the sweeper may be the one that sees it first. */
  readonly orSweeper?: true
  /** Milliseconds after the spawn (the Job's creation) when the verdict is due. */
  readonly t: number
  readonly detail?: string | RegExp
}

// simulation.md: the pod is created 1 s after the Job; running behaviours are Running 5 s later;
// image pulls fail first 5 s after the pod was created. The Job is created at t = 0.
const rows: ReadonlyArray<Row> = [
  {
    name: "fail 137 OOMKilled ⇒ pod_crash_no_stdout when the pod fails",
    behaviour: PodBehaviour.fail("2 minutes", { exitCode: 137, reason: "OOMKilled" }),
    reason: "pod_crash_no_stdout",
    source: "pod",
    t: 126_000,
    detail: "OOMKilled, exit 137"
  },
  {
    name: "fail (exit 1, Error) ⇒ pod_crash_no_stdout when the pod fails",
    behaviour: PodBehaviour.fail("30 seconds"),
    reason: "pod_crash_no_stdout",
    source: "pod",
    t: 36_000,
    detail: "Error, exit 1"
  },
  {
    name: "image-pull-fails ⇒ image_pull_backoff 60 s after the first pull failure",
    behaviour: PodBehaviour.imagePullFails,
    reason: "image_pull_backoff",
    source: "pod",
    t: 66_000,
    detail: /registry\.example\/agent-claude:v1/
  },
  {
    name: "image-pull-recovers longer than the grace ⇒ image_pull_backoff at the grace",
    behaviour: PodBehaviour.imagePullRecovers("90 seconds"),
    reason: "image_pull_backoff",
    source: "pod",
    t: 66_000
  },
  {
    name: "invalid-image ⇒ pod_config_error at once",
    behaviour: PodBehaviour.invalidImage,
    reason: "pod_config_error",
    source: "pod",
    t: 6_000,
    detail: /^InvalidImageName/
  },
  {
    name: "config-error ⇒ pod_config_error 60 s after it appeared",
    behaviour: PodBehaviour.configError,
    reason: "pod_config_error",
    source: "pod",
    t: 66_000,
    detail: /^CreateContainerConfigError.*secret/
  },
  {
    name: "unschedulable ⇒ pod_not_scheduled 120 s after the pod was created",
    behaviour: PodBehaviour.unschedulable,
    reason: "pod_not_scheduled",
    source: "pod",
    t: 121_000,
    detail: /Insufficient memory/
  },
  {
    name: "evicted ⇒ pod_evicted when evicted",
    behaviour: PodBehaviour.evicted("3 minutes"),
    reason: "pod_evicted",
    source: "pod",
    t: 186_000,
    detail: /evicted/
  },
  {
    name: "hang ⇒ deadline_exceeded at zombieJobTimeoutSeconds (600)",
    behaviour: PodBehaviour.hang,
    spec: { zombieJobTimeoutSeconds: 600 },
    reason: "deadline_exceeded",
    source: "job",
    orSweeper: true,
    t: 600_000
  },
  {
    name: "hang ⇒ deadline_exceeded at the default timeout (1800)",
    behaviour: PodBehaviour.hang,
    reason: "deadline_exceeded",
    source: "job",
    orSweeper: true,
    t: 1_800_000
  },
  {
    name: "no-pod ⇒ job_pod_create_failed 120 s after the Job",
    behaviour: PodBehaviour.noPod,
    reason: "job_pod_create_failed",
    source: "job",
    orSweeper: true,
    t: 120_000
  },
  // Graces from the Config are honoured.
  {
    name: "imagePullGraceSeconds 0 ⇒ image_pull_backoff at the first pull failure",
    behaviour: PodBehaviour.imagePullFails,
    spec: { imagePullGraceSeconds: 0 },
    reason: "image_pull_backoff",
    source: "pod",
    t: 6_000
  },
  {
    name: "imagePullGraceSeconds 10 ⇒ config-error judged 10 s after it appeared",
    behaviour: PodBehaviour.configError,
    spec: { imagePullGraceSeconds: 10 },
    reason: "pod_config_error",
    source: "pod",
    t: 16_000
  },
  {
    name: "unschedulableGraceSeconds 30 ⇒ pod_not_scheduled 30 s after the pod was created",
    behaviour: PodBehaviour.unschedulable,
    spec: { unschedulableGraceSeconds: 30 },
    reason: "pod_not_scheduled",
    source: "pod",
    t: 31_000
  },
  {
    name: "podCreateGraceSeconds 30 ⇒ job_pod_create_failed 30 s after the Job",
    behaviour: PodBehaviour.noPod,
    spec: { podCreateGraceSeconds: 30 },
    reason: "job_pod_create_failed",
    source: "job",
    t: 30_000
  }
]

/** Image pulls that recover inside their grace: [name, behaviour, Config spec, second the Job completes]. */
const recovering: ReadonlyArray<readonly [string, PodBehaviour.PodBehaviour, Record<string, unknown>, number]> = [
  // Running at 36 s, exits 0 a minute later; the pod is Succeeded (and the Job Complete) a second after that
  ["image-pull-recovers shorter than the grace (30 s) ⇒ none", PodBehaviour.imagePullRecovers("30 seconds"), {}, 97],
  [
    "imagePullGraceSeconds 300 ⇒ an image pull that recovers after 90 s is no zombie",
    PodBehaviour.imagePullRecovers("90 seconds"),
    { imagePullGraceSeconds: 300 },
    157
  ]
]

describe("simulation.md behaviour table, end to end with the default graces", () => {
  for (const row of rows) {
    it.scoped(row.name, () =>
      Effect.gen(function* () {
        const world = yield* makeWorld(PodBehaviour.always(row.behaviour), row.spec ?? {})
        const { spawn } = yield* start(world)
        expect((yield* spawn(taskId)).result).toBe("spawned")
        const job = yield* jobOf(world, taskId)

        // not a millisecond early
        yield* atMillis(row.t - 1)
        expect(yield* verdictRows(world)).toEqual([])
        expect(yield* failures(world)).toHaveLength(0)

        yield* atMillis(row.t)
        const judged = yield* verdictRows(world)
        expect(judged).toHaveLength(1)
        const source = row.orSweeper === true && judged[0]?.[1] === "sweeper" ? "sweeper" : row.source
        expect(judged).toEqual([[row.reason, source, row.t, job]])
        const pairs = yield* failurePairs(world)
        expect(pairs.map((p) => [p.taskId, p.job, p.reason])).toEqual([[taskId, job, row.reason]])
        if (row.detail !== undefined) {
          if (typeof row.detail === "string") expect(pairs[0]?.detail).toBe(row.detail)
          else expect(pairs[0]?.detail).toMatch(row.detail)
        }
        // the verdict ends the Job (finalizer released) and explains itself in an Event
        expect(yield* jobByName(world, job)).toBeUndefined()
        const events = (yield* world.cluster.events).filter((e) => e.reason === "ZombieDetected")
        expect(events.map((e) => [e.involvedObject.name, e.message.split(":")[0]])).toEqual([[job, row.reason]])

        // and nothing else happens for this run afterwards (watchers, sweeper, rechecks)
        yield* at(row.t / 1000 + 130)
        expect(yield* verdictRows(world)).toHaveLength(1)
        expect(yield* failurePairs(world)).toHaveLength(1)
      }))
  }

  it.scoped("succeed ⇒ no verdict; the finalizer is released and the Job is left to its TTL", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.succeed("5 minutes")))
      const { executor, spawn } = yield* start(world)
      yield* spawn(taskId)
      const job = yield* jobOf(world, taskId)
      expect((yield* jobByName(world, job))?.metadata.finalizers).toEqual([names.finalizer])
      // Running at 6 s, exits 0 at 306 s, the pod Succeeded a second later: the Job completes then
      yield* at(306)
      expect((yield* trackedRuns(executor)).map((r) => r.jobName)).toEqual([job])
      yield* at(307)
      const done = yield* jobByName(world, job)
      expect(done?.metadata.finalizers ?? []).toEqual([])
      expect(done?.metadata.deletionTimestamp).toBeUndefined()
      expect(yield* trackedRuns(executor)).toEqual([])
      // the TTL controller removes it 1800 s after it finished
      yield* at(307 + 1799)
      expect(yield* jobByName(world, job)).toBeDefined()
      yield* at(307 + 1800)
      expect(yield* jobByName(world, job)).toBeUndefined()
      yield* at(307 + 1800 + 120)
      expect(yield* verdictRows(world)).toEqual([])
      expect(yield* failures(world)).toHaveLength(0)
      expect((yield* world.cluster.events).filter((e) => e.reason === "ZombieDetected")).toEqual([])
    }))

  for (const [name, behaviour, spec, completesAt] of recovering) {
    it.scoped(`${name}; the run is settled when the Job completes`, () =>
      Effect.gen(function* () {
        const world = yield* makeWorld(PodBehaviour.always(behaviour), spec)
        const { executor, spawn } = yield* start(world)
        yield* spawn(taskId)
        const job = yield* jobOf(world, taskId)
        yield* at(completesAt - 1)
        expect((yield* trackedRuns(executor)).map((r) => r.jobName)).toEqual([job])
        expect((yield* jobByName(world, job))?.metadata.finalizers).toEqual([names.finalizer])
        yield* at(completesAt)
        expect(yield* trackedRuns(executor)).toEqual([])
        expect((yield* jobByName(world, job))?.metadata.finalizers ?? []).toEqual([])
        yield* at(completesAt + 130)
        expect(yield* verdictRows(world)).toEqual([])
        expect(yield* failures(world)).toHaveLength(0)
      }))
  }

  it.scoped("deleteJob by an operator while the run is running ⇒ executor_watch_lost at once", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hang))
      const { spawn } = yield* start(world)
      yield* spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(100)
      yield* world.cluster.deleteJob(job)
      // the finalizer keeps it visible (Terminating) until the executor settled it
      yield* at(100)
      expect(yield* verdictRows(world)).toEqual([["executor_watch_lost", "job", 100_000, job]])
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([[job, "executor_watch_lost"]])
      expect(yield* jobByName(world, job)).toBeUndefined()
      expect(yield* world.cluster.podsSnapshot).toEqual([])
      yield* at(400)
      expect(yield* verdictRows(world)).toHaveLength(1)
      expect(yield* failurePairs(world)).toHaveLength(1)
    }))

  it.scoped("a Job removed outright (finalizers cleared, then deleted) while running ⇒ executor_watch_lost at once", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hang))
      const { spawn } = yield* start(world)
      yield* spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(100)
      yield* world.cluster.clearJobFinalizers(job)
      yield* world.cluster.deleteJob(job)
      expect(yield* jobByName(world, job)).toBeUndefined()
      yield* at(100)
      expect(yield* verdictRows(world)).toEqual([["executor_watch_lost", "job", 100_000, job]])
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([[job, "executor_watch_lost"]])
      yield* at(400)
      expect(yield* failurePairs(world)).toHaveLength(1)
    }))

  it.scoped("a Job deleted by the verdict leaves the task free: a new spawn (trigger_count 2) creates a new Job", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(
        PodBehaviour.plan({ default: [PodBehaviour.invalidImage, PodBehaviour.succeed("1 minute")] })
      )
      const { spawn } = yield* start(world)
      yield* spawn(taskId)
      const first = yield* jobOf(world, taskId)
      yield* at(6)
      expect((yield* verdictRows(world)).map((v) => v[0])).toEqual(["pod_config_error"])
      expect(Option.getOrUndefined(yield* world.cluster.currentJobOfTask(taskId))).toBeUndefined()
      // the controller's next event after the failure pair: current_job cleared, trigger_count 2
      yield* at(7)
      const handled = yield* spawn(taskId, { trigger_count: 2, current_job: "" })
      expect(handled.result).toBe("spawned")
      const second = yield* jobOf(world, taskId)
      expect(second).not.toBe(first)
      expect((yield* world.cluster.jobsSnapshot).map((j) => j.metadata.name)).toEqual([second])
      yield* at(7 + 66)
      expect(yield* verdictRows(world)).toHaveLength(1)
      expect(yield* failurePairs(world)).toHaveLength(1)
    }))
})
