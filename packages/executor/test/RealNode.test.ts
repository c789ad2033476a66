/**
 * What a real node writes (../shared/spec/real-cluster.md), judged end to end over the in-memory
 * cluster, which follows it: evictions whose process exits 0, deadline kills, FailureTarget before
 * Failed, a container that ends while the phase says Running, pod creation refused by a quota,
 * Configs that set one side of a resource.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { type ClusterWatchShape, Metrics, RunTracker } from "@executor/executor"
import { PodBehaviour, World } from "@executor/testkit"
import {
  assignee,
  at,
  atMillis,
  counterValue,
  failurePairs,
  failures,
  jobByName,
  jobOf,
  makeWorld,
  names,
  podOf,
  runningStatus,
  start,
  startWithWatch,
  trackedRuns,
  verdictRows
} from "./fixtures.js"

const taskId = "4aa57614-8835-4992-87e9-ca483ddbeae6"

/** The pod of attempt 1 runs from 6 s; `{evicted: 3 minutes}` is evicted at 186 s. */
const evictedAt = 186_000

/** A verdict of `reason` at exactly `t` (not a millisecond early), its pair published, the Job gone. */
const expectVerdictAt = (world: World.World, t: number, reason: string, sources: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const job = yield* jobOf(world, taskId)
    yield* atMillis(t - 1)
    expect(yield* verdictRows(world)).toEqual([])
    yield* atMillis(t)
    const judged = yield* verdictRows(world)
    expect(judged.map((v) => [v[0], v[2], v[3]])).toEqual([[reason, t, job]])
    expect(sources).toContain(judged[0]?.[1])
    const pairs = yield* failurePairs(world)
    expect(pairs.map((p) => [p.job, p.reason])).toEqual([[job, reason]])
    expect(yield* jobByName(world, job)).toBeUndefined()
    return pairs[0]?.detail ?? ""
  })

/**
 * An exit-0 eviction spawned over an eviction informer that never sees the Event (its watch
 * reconnecting): nothing cached, nothing streamed; the API server has it.
 */
const spawnBehindEvictions = Effect.gen(function* () {
  const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.evicted("3 minutes", { exitCode: 0 })))
  const behind: ClusterWatchShape = { ...world.cluster.watch, evictionEvents: Stream.never, evictions: Effect.succeed([]) }
  const executor = yield* startWithWatch(world, behind)
  yield* executor.spawn(taskId)
  return { world, executor, job: yield* jobOf(world, taskId) }
})

describe("evictions", () => {
  it.scoped("evicted, the process exits 0 on SIGTERM (pod Succeeded, Job Complete): pod_evicted with the kubelet's message, when evicted", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.evicted("3 minutes", { exitCode: 0 })))
      const { executor, spawn } = yield* start(world)
      yield* spawn(taskId)
      const detail = yield* expectVerdictAt(world, evictedAt, "pod_evicted", ["pod", "job"])
      // the kubelet's message on one line, its trailing space trimmed
      expect(detail).toMatch(new RegExp(`^pod ${yield* podName(world)} evicted: ${PodBehaviour.evictedMessage.trim().replace(/\./g, "\\.")}$`))
      expect(yield* trackedRuns(executor)).toEqual([])
      yield* at(evictedAt / 1000 + 300)
      expect(yield* verdictRows(world)).toHaveLength(1)
    }))

  it.scoped("the eviction cache lags behind the Job's Complete: the success is confirmed live, and the Event is found", () =>
    Effect.gen(function* () {
      const { executor, job, world } = yield* spawnBehindEvictions
      yield* atMillis(evictedAt)
      expect((yield* executor.verdictRows).map((v) => [v[0], v[2], v[3]])).toEqual([["pod_evicted", evictedAt, job]])
      expect((yield* failurePairs(world)).map((p) => p.reason)).toEqual(["pod_evicted"])
    }))

  it.scoped("the API server cannot confirm a success: the run is not settled until it can, then the eviction is judged", () =>
    Effect.gen(function* () {
      const { executor, job, world } = yield* spawnBehindEvictions
      yield* at(185)
      yield* world.cluster.setApiDown(true)
      yield* at(250)
      expect(yield* executor.verdictRows).toEqual([])
      // not taken for a success: still tracked, the finalizer still holds the Job
      expect((yield* executor.use(Effect.flatMap(RunTracker, (t) => t.all))).map((r) => r.jobName)).toEqual([job])
      expect((yield* jobByName(world, job))?.metadata.finalizers).toEqual([names.finalizer])
      yield* world.cluster.setApiDown(false)
      yield* at(253)
      expect((yield* executor.verdictRows).map((v) => v[0])).toEqual(["pod_evicted"])
    }))

  it.scoped("the Evicted Event is judged when the kubelet records it, before the pod has ended", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always("manual"))
      const { spawn } = yield* start(world)
      yield* spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(2)
      const pod = (yield* podOf(world, job)).metadata.name
      yield* world.cluster.patchPodStatus(pod, runningStatus())
      yield* at(100)
      expect(yield* verdictRows(world)).toEqual([])
      yield* world.cluster.recordEvent({ kind: "Pod", name: pod }, {
        reason: "Evicted",
        message: "The node was low on resource: memory.",
        type: "Warning",
        source: "kubelet"
      })
      yield* at(100)
      expect(yield* verdictRows(world)).toEqual([["pod_evicted", "pod", 100_000, job]])
      expect((yield* failurePairs(world)).map((p) => p.detail)).toEqual([`pod ${pod} evicted: The node was low on resource: memory.`])
    }))

  it.scoped("evicted, PID 1 ignores SIGTERM (pod Failed, reason Evicted, 137): pod_evicted when evicted", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.evicted("3 minutes")))
      const { spawn } = yield* start(world)
      yield* spawn(taskId)
      expect(yield* expectVerdictAt(world, evictedAt, "pod_evicted", ["pod", "job"])).toContain(PodBehaviour.evictedMessage.trim())
    }))

  it.scoped("evicted with exit 0 while no executor ran: the next one judges it pod_evicted on start (a Complete Job is not taken as done)", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.evicted("3 minutes", { exitCode: 0 })))
      const first = yield* start(world)
      yield* first.spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(100)
      yield* first.executor.stop
      yield* at(300)
      expect((yield* jobByName(world, job))?.status?.succeeded).toBe(1)
      yield* start(world)
      expect(yield* verdictRows(world)).toEqual([["pod_evicted", "recovery", 300_000, job]])
      expect((yield* failurePairs(world)).map((p) => p.reason)).toEqual(["pod_evicted"])
    }))

  it.scoped("a good run next to an Evicted Event of another task's pod is a success", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld((job) =>
        job.taskId === taskId ? PodBehaviour.succeed("5 minutes") : PodBehaviour.evicted("1 minute", { exitCode: 0 })
      )
      const { executor, spawn } = yield* start(world)
      yield* spawn(taskId)
      yield* spawn("5bb57614-8835-4992-87e9-ca483ddbeae7")
      yield* at(400)
      expect((yield* verdictRows(world)).map((v) => v[0])).toEqual(["pod_evicted"])
      expect((yield* failurePairs(world)).map((p) => p.taskId)).toEqual(["5bb57614-8835-4992-87e9-ca483ddbeae7"])
      expect(yield* trackedRuns(executor)).toEqual([])
    }))
})

/** The resources of the agent container of the task's Job, as the API server stored them. */
const containerResources = (world: World.World) =>
  Effect.map(jobOf(world, taskId).pipe(Effect.flatMap((name) => jobByName(world, name))), (job) => {
    const stored = job as unknown as { readonly spec: { readonly template: { readonly spec: { readonly containers: ReadonlyArray<{ readonly resources: unknown }> } } } }
    return stored.spec.template.spec.containers[0]?.resources
  })

const podName = (world: World.World) =>
  Effect.map(world.cluster.events, (events) => events.find((e) => e.reason === "Evicted")?.involvedObject.name ?? "")

describe("the Job deadline", () => {
  it.scoped("PID 1 ignores SIGTERM: deadline_exceeded at the deadline (FailureTarget), not a crash 30 s later", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hang), { zombieJobTimeoutSeconds: 630 })
      const { spawn } = yield* start(world)
      yield* spawn(taskId)
      expect(yield* expectVerdictAt(world, 630_000, "deadline_exceeded", ["job"])).toBe("Job exceeded activeDeadlineSeconds=630")
      yield* at(700)
      expect((yield* verdictRows(world)).map((v) => v[0])).toEqual(["deadline_exceeded"])
    }))

  it.scoped("the process exits 0 on SIGTERM (pod Succeeded, Job Failed DeadlineExceeded): deadline_exceeded, never a success", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hangUntilSigterm(0)), { zombieJobTimeoutSeconds: 630 })
      const { spawn } = yield* start(world)
      yield* spawn(taskId)
      expect(yield* expectVerdictAt(world, 630_000, "deadline_exceeded", ["job"])).toBe("Job exceeded activeDeadlineSeconds=630")
    }))

  it.scoped("an image pull stuck past the deadline (grace longer than the timeout): deadline_exceeded at the deadline", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.imagePullFails), {
        zombieJobTimeoutSeconds: 630,
        imagePullGraceSeconds: 3600
      })
      const { spawn } = yield* start(world)
      yield* spawn(taskId)
      yield* expectVerdictAt(world, 630_000, "deadline_exceeded", ["job"])
    }))
})

describe("crashes", () => {
  it.scoped("OOMKilled while the phase still says Running: pod_crash_no_stdout 'OOMKilled, exit 137' when the container ends", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.fail("2 minutes", { exitCode: 137, reason: "OOMKilled" })))
      const { spawn } = yield* start(world)
      yield* spawn(taskId)
      expect(yield* expectVerdictAt(world, 126_000, "pod_crash_no_stdout", ["pod"])).toBe("OOMKilled, exit 137")
    }))
})

describe("a Job that cannot create its pod", () => {
  it.scoped("job_pod_create_failed carries the job controller's FailedCreate message (the quota)", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.noPod))
      const { spawn } = yield* start(world)
      yield* spawn(taskId)
      const job = yield* jobOf(world, taskId)
      const detail = yield* expectVerdictAt(world, 120_000, "job_pod_create_failed", ["job", "sweeper"])
      // the newest try's Event, naming the pod name the API server generated for it
      expect(detail).toMatch(
        new RegExp(`^Job ${job} created no pod within 120s: Error creating: pods "${job}-[a-z0-9]{5}" is forbidden: exceeded quota: agent-quota, requested: pods=1, used: pods=0, limited: pods=0$`)
      )
    }))
})

describe("resources a Config sets on one side only", () => {
  it.scoped("limits only, below the default requests: the Job is created (requests = limits) and runs", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.succeed("1 minute")), {
        resources: { limits: { memory: "16Mi", cpu: "10m" } }
      })
      const { spawn } = yield* start(world)
      expect((yield* spawn(taskId)).result).toBe("spawned")
      expect(yield* containerResources(world)).toEqual({ requests: { cpu: "10m", memory: "16Mi" }, limits: { cpu: "10m", memory: "16Mi" } })
      yield* at(120)
      expect(yield* failures(world)).toEqual([])
    }))

  it.scoped("requests only, above the default limits: the Job is created (limits = requests)", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hang), { resources: { requests: { memory: "1Gi" } } })
      const { spawn } = yield* start(world)
      expect((yield* spawn(taskId)).result).toBe("spawned")
      expect(yield* containerResources(world)).toEqual({ requests: { cpu: "20m", memory: "1Gi" }, limits: { cpu: "50m", memory: "1Gi" } })
      expect(yield* failures(world)).toEqual([])
    }))

  it.scoped("a request above its limit is a Config the executor refuses (counted); the last valid version stays in force", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hang), { zombieJobTimeoutSeconds: 900 })
      const { executor, spawn } = yield* start(world)
      yield* at(1)
      const before = yield* counterValue(Metrics.configsRejected)
      yield* world.cluster.applyConfig("claude", {
        assignee,
        image: "registry.example/agent-claude:v1",
        heartbeat: "1h",
        taskTypes: ["llm"],
        zombieJobTimeoutSeconds: 60,
        resources: { requests: { memory: "20Mi" }, limits: { memory: "16Mi" } }
      })
      yield* at(2)
      expect((yield* counterValue(Metrics.configsRejected)) - before).toBe(1)
      expect((yield* spawn(taskId)).result).toBe("spawned")
      expect((yield* jobByName(world, yield* jobOf(world, taskId)))?.spec?.activeDeadlineSeconds).toBe(900)
      expect(yield* trackedRuns(executor)).toHaveLength(1)
    }))
})

describe("the pull secret", () => {
  it.scoped("IMAGE_PULL_SECRET empty: agent pods name no pull secret unless their Config does", () =>
    Effect.gen(function* () {
      const world = yield* World.make({
        podBehaviour: PodBehaviour.always(PodBehaviour.hang),
        settings: { imagePullSecret: "" }
      })
      yield* world.cluster.applyConfig("claude", {
        assignee,
        image: "registry.example/agent-claude:v1",
        heartbeat: "1h",
        taskTypes: ["llm"]
      })
      const { spawn } = yield* start(world)
      yield* spawn(taskId)
      const job = (yield* jobByName(world, yield* jobOf(world, taskId))) as unknown as {
        readonly spec: { readonly template: { readonly spec: Record<string, unknown> } }
      }
      expect("imagePullSecrets" in job.spec.template.spec).toBe(false)
    }))
})
