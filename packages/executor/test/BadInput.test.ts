import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Metric, Queue, Stream } from "effect"
import { AgentRegistry, type ConfigObject, Metrics, type WatchEvent } from "@executor/executor"
import { PodBehaviour, type World } from "@executor/testkit"
import {
  agentSpec,
  assignee,
  at,
  counterValue,
  createManualJob,
  crashedStatus,
  failurePairs,
  jobByName,
  jobOf,
  makeWorld,
  names,
  podOf,
  runningStatus,
  start,
  startWithWatch,
  verdictRows
} from "./fixtures.js"

const skippedPods = Metric.tagged(Metrics.skippedObjects, "kind", "pod")
const skippedJobs = Metric.tagged(Metrics.skippedObjects, "kind", "job")

/** Probe tasks get a pod that cannot start (pod watcher) or a hanging one (deleted: job watcher). */
const resolver: PodBehaviour.Resolver = (job) =>
  job.taskId.startsWith("probe-pod") ? PodBehaviour.invalidImage : job.taskId.startsWith("probe-job") ? PodBehaviour.hang : "manual"

type Spawn = Effect.Effect.Success<ReturnType<typeof start>>["spawn"]
type Rows = Effect.Effect<ReadonlyArray<readonly [string, string, number, string | undefined]>>

let probes = 0

/** A real zombie is still detected by the pod watcher and by the job watcher, at once. */
const expectDetectorsAlive = (world: World.World, spawn: Spawn, verdictLines: Rows = verdictRows(world)) =>
  Effect.gen(function* () {
    const n = ++probes
    const podTask = `probe-pod-${n}`
    const jobTask = `probe-job-${n}`
    yield* spawn(podTask)
    yield* spawn(jobTask)
    const podJob = yield* jobOf(world, podTask)
    const hangJob = yield* jobOf(world, jobTask)
    const t0 = yield* Clock.currentTimeMillis
    yield* at(t0 / 1000 + 10)
    yield* world.cluster.deleteJob(hangJob)
    yield* at(t0 / 1000 + 10)
    const rows = (yield* verdictLines).filter((v) => v[3] === podJob || v[3] === hangJob)
    expect(rows).toEqual([
      ["pod_config_error", "pod", t0 + 6000, podJob],
      ["executor_watch_lost", "job", t0 + 10_000, hangJob]
    ])
    const pairs = (yield* failurePairs(world)).filter((p) => p.taskId === podTask || p.taskId === jobTask)
    expect(pairs.map((p) => [p.taskId, p.reason])).toEqual([
      [podTask, "pod_config_error"],
      [jobTask, "executor_watch_lost"]
    ])
  })

const deep = (depth: number): unknown => {
  let value: unknown = "bottom"
  for (let i = 0; i < depth; i++) value = { a: value }
  return value
}

describe("bad input is skipped and counted, never crashes a fiber", () => {
  it.scoped("a pod without labels, a pod without an owner Job, a Job without the task-id label", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(resolver)
      const { spawn } = yield* start(world)
      const taskId = "4aa57614-8835-4992-87e9-ca483ddbeae6"
      yield* spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(2)
      const real = yield* podOf(world, job)

      // a pod without labels, owned by a tracked Job
      const podsBefore = yield* counterValue(skippedPods)
      yield* world.cluster.putPod({
        metadata: { name: "stray-unlabelled", ownerReferences: [{ kind: "Job", name: job, apiVersion: "batch/v1" }] },
        status: runningStatus()
      })
      yield* at(3)
      expect((yield* counterValue(skippedPods)) - podsBefore).toBe(1)
      yield* expectDetectorsAlive(world, spawn)

      // a pod with the task-id label and no owner Job
      const orphanBefore = yield* counterValue(skippedPods)
      yield* world.cluster.putPod({
        metadata: { name: "stray-orphan", labels: { [names.taskIdLabel]: taskId } },
        status: { ...crashedStatus(1), reason: "Evicted" }
      })
      yield* at(30)
      expect((yield* counterValue(skippedPods)) - orphanBefore).toBe(1)
      yield* expectDetectorsAlive(world, spawn)

      // a Job without the task-id label (and its pod, which has none either)
      const jobsBefore = yield* counterValue(skippedJobs)
      yield* createManualJob(world, { name: "manual-unlabelled", taskId: "", labels: { team: "other" } })
      yield* at(60)
      expect((yield* counterValue(skippedJobs)) - jobsBefore).toBeGreaterThanOrEqual(1)
      const unlabelledPod = yield* podOf(world, "manual-unlabelled")
      yield* world.cluster.patchPodStatus(unlabelledPod.metadata.name, crashedStatus(137, "OOMKilled"))
      yield* world.cluster.deleteJob("manual-unlabelled")
      yield* at(70)
      yield* expectDetectorsAlive(world, spawn)

      // none of it touched the real run, nor produced a verdict of its own
      expect((yield* verdictRows(world)).filter((v) => v[3] === job || v[3] === "manual-unlabelled")).toEqual([])
      yield* world.cluster.patchPodStatus(real.metadata.name, crashedStatus(2))
      const now = yield* Clock.currentTimeMillis
      yield* at(now / 1000)
      expect((yield* verdictRows(world)).filter((v) => v[3] === job)).toEqual([["pod_crash_no_stdout", "pod", now, job]])
    }))

  it.scoped("pods with unknown phase, reason, condition and waiting strings are no zombie and break nothing", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(resolver)
      const { spawn } = yield* start(world)
      const taskId = "5bb57614-8835-4992-87e9-ca483ddbeae6"
      yield* spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(2)
      const pod = (yield* podOf(world, job)).metadata.name
      yield* world.cluster.patchPodStatus(pod, {
        phase: "Exploding",
        reason: "SolarFlare",
        message: "\u0000\uFFFF weird",
        conditions: [{ type: "Haunted", status: "Maybe", lastTransitionTime: "yesterday" }],
        containerStatuses: [
          { name: "agent", state: { waiting: { reason: "NeverHeardOfIt" } } },
          { name: "sidecar", state: {} },
          { name: "other" }
        ],
        initContainerStatuses: [{ name: "init", state: { terminated: { exitCode: 0, finishedAt: "not a time" } } }]
      })
      yield* at(300)
      expect((yield* verdictRows(world)).filter((v) => v[3] === job)).toEqual([])
      yield* expectDetectorsAlive(world, spawn)

      yield* world.cluster.patchPodStatus(pod, { phase: "", reason: "", containerStatuses: [] })
      yield* at(400)
      expect((yield* verdictRows(world)).filter((v) => v[3] === job)).toEqual([])
      yield* expectDetectorsAlive(world, spawn)

      // the same pod, then plainly crashed with an unparseable finish time: judged at once
      yield* world.cluster.patchPodStatus(pod, {
        ...runningStatus(),
        phase: "Failed",
        containerStatuses: [{ name: "agent", state: { terminated: { exitCode: 3, reason: "Weird", finishedAt: "soon" } } }]
      })
      const now = yield* Clock.currentTimeMillis
      yield* at(now / 1000)
      expect((yield* verdictRows(world)).filter((v) => v[3] === job)).toEqual([["pod_crash_no_stdout", "pod", now, job]])
      expect((yield* failurePairs(world)).filter((p) => p.job === job).map((p) => p.detail)).toEqual(["Weird, exit 3"])
    }))

  it.scoped("hostile Configs are rejected and counted; a valid Config stays in force; zombies are still detected", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(resolver, { zombieJobTimeoutSeconds: 900 })
      // Config objects the in-memory API server could not even store (too deep to copy) go straight
      // into the executor's Config watch
      const extra = yield* Queue.unbounded<WatchEvent<ConfigObject>>()
      const executor = yield* startWithWatch(world, {
        ...world.cluster.watch,
        configEvents: Stream.merge(world.cluster.watch.configEvents, Stream.fromQueue(extra))
      })
      const registry = yield* executor.use(AgentRegistry)
      const apply = (name: string, spec: unknown) =>
        Queue.offer(extra, {
          _tag: "Upsert",
          object: { metadata: { name, namespace: "agents", uid: `uid-${name}`, resourceVersion: "1" }, spec }
        })
      const hostile: ReadonlyArray<readonly [string, unknown]> = [
        ["negative-cap", agentSpec({ assignee: "hostile-a", maxConcurrentJobs: -1 })],
        ["string-timeout", agentSpec({ assignee: "hostile-b", zombieJobTimeoutSeconds: "600" })],
        ["deep-env", agentSpec({ assignee: "hostile-c", env: deep(10_000) })],
        ["deep-trigger", agentSpec({ assignee: "hostile-d", trigger: { phases: [deep(10_000)] } })],
        ["deep-spec", deep(10_000)],
        ["long-assignee", agentSpec({ assignee: "x".repeat(500) })],
        ["not-an-object", "just a string"],
        ["null-spec", null],
        // an update of the valid Config that is invalid: the previous version stays in force
        ["claude", agentSpec({ zombieJobTimeoutSeconds: -5, zombieSweeperIntervalSeconds: 1 })]
      ]
      for (const [name, spec] of hostile) {
        const before = yield* counterValue(Metrics.configsRejected)
        yield* apply(name, spec)
        const now = yield* Clock.currentTimeMillis
        yield* at(now / 1000 + 1)
        expect([name, (yield* counterValue(Metrics.configsRejected)) - before]).toEqual([name, 1])
        expect((yield* registry.all).map((c) => [c.name, c.spec.assignee, c.timeoutSeconds])).toEqual([
          ["claude", assignee, 900]
        ])
        yield* expectDetectorsAlive(world, executor.spawn, executor.verdictRows)
      }
      // the rejected 1 s interval is not in force either
      expect(yield* registry.sweeperIntervalSeconds).toBe(60)
      // and new runs still get the valid timeout
      yield* executor.spawn("probe-job-last")
      const last = yield* jobOf(world, "probe-job-last")
      expect((yield* jobByName(world, last))?.spec?.activeDeadlineSeconds).toBe(900)
    }))

  it.scoped("hostile Configs through the (in-memory) API server are rejected the same way", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(resolver)
      const { executor, spawn } = yield* start(world)
      const registry = yield* executor.use(AgentRegistry)
      for (const [name, spec] of [
        ["negative-cap", agentSpec({ assignee: "hostile-a", maxConcurrentJobs: -1 })],
        ["deep-env", agentSpec({ assignee: "hostile-c", env: deep(1_000) })],
        ["long-assignee", agentSpec({ assignee: "y".repeat(500) })]
      ] as const) {
        const before = yield* counterValue(Metrics.configsRejected)
        yield* world.cluster.applyConfig(name, spec)
        const now = yield* Clock.currentTimeMillis
        yield* at(now / 1000 + 1)
        expect([name, (yield* counterValue(Metrics.configsRejected)) - before]).toEqual([name, 1])
        expect((yield* registry.all).map((c) => c.name)).toEqual(["claude"])
      }
      yield* expectDetectorsAlive(world, spawn)
    }))
})
