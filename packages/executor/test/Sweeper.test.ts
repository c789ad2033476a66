import { describe, expect, it } from "@effect/vitest"
import { Clock, Deferred, Effect, Layer, Metric, Ref } from "effect"
import {
  ClusterError,
  ClusterOps,
  ClusterWatch,
  type ClusterWatchShape,
  Executor,
  ExecutorSettings,
  Journal,
  Metrics,
  sweepOnce
} from "@executor/executor"
import { InMemoryBus, PodBehaviour, type World } from "@executor/testkit"
import {
  agentSpec,
  at,
  createManualJob,
  failurePairs,
  jobOf,
  makeWorld,
  podOf,
  runningStatus,
  start,
  startWithWatch,
  trackedRuns,
  unschedulableStatus,
  verdictRows,
  withManualJobs
} from "./fixtures.js"

const taskId = "4aa57614-8835-4992-87e9-ca483ddbeae6"

const ticks = Effect.map(Metric.value(Metrics.sweeperTickSeconds), (state) => state.count)

/** Counts sweeper ticks from now on. */
const tickCounter = Effect.map(ticks, (before) => Effect.map(ticks, (now) => now - before))

/**
 * A run only the sweeper can judge: a Job adopted by recovery (no deadline the cluster enforces),
 * its pod Running. The deadline is 1800 s after the Job's creation; the sweeper judges it one
 * interval later.
 */
const sweeperOnlyRun = (world: World.World, name: string, task = taskId) =>
  Effect.gen(function* () {
    yield* createManualJob(world, { name, taskId: task })
    return Effect.gen(function* () {
      const now = yield* Clock.currentTimeMillis
      if (now < 2000) yield* at(2)
      yield* world.cluster.patchPodStatus((yield* podOf(world, name)).metadata.name, runningStatus())
    })
  })

describe("sweeper interval (D4.7)", () => {
  it.scoped("the default interval is 60 s when no Config sets one; the first tick is one interval after start", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hang))
      const count = yield* tickCounter
      yield* start(world)
      yield* at(59)
      expect(yield* count).toBe(0)
      yield* at(60)
      expect(yield* count).toBe(1)
      yield* at(179)
      expect(yield* count).toBe(2)
      yield* at(180)
      expect(yield* count).toBe(3)
    }))

  it.scoped("a changed zombieSweeperIntervalSeconds applies from the next tick on", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hang))
      const count = yield* tickCounter
      yield* start(world)
      yield* at(60)
      expect(yield* count).toBe(1)
      yield* at(70)
      yield* world.cluster.applyConfig("claude", agentSpec({ zombieSweeperIntervalSeconds: 15 }))
      // the tick already due at 120 s comes; from then on every 15 s
      yield* at(120)
      expect(yield* count).toBe(2)
      yield* at(134)
      expect(yield* count).toBe(2)
      yield* at(135)
      expect(yield* count).toBe(3)
      yield* at(180)
      expect(yield* count).toBe(6)
      // and back to a long interval
      yield* world.cluster.applyConfig("claude", agentSpec({ zombieSweeperIntervalSeconds: 600 }))
      yield* at(195)
      expect(yield* count).toBe(7)
      yield* at(794)
      expect(yield* count).toBe(7)
      yield* at(795)
      expect(yield* count).toBe(8)
    }))

  it.scoped("the smallest configured interval among several Configs wins; Configs without one do not count", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hang), { zombieSweeperIntervalSeconds: 45 })
      yield* world.cluster.applyConfig("other", agentSpec({ assignee: "other-agent", zombieSweeperIntervalSeconds: 20 }))
      yield* world.cluster.applyConfig("plain", agentSpec({ assignee: "plain-agent" }))
      const count = yield* tickCounter
      yield* start(world)
      yield* at(19)
      expect(yield* count).toBe(0)
      yield* at(20)
      expect(yield* count).toBe(1)
      yield* at(100)
      expect(yield* count).toBe(5)
      // the 20 s Config goes: the next smallest (45 s) applies after the next tick
      yield* world.cluster.deleteConfig("other")
      yield* at(120)
      expect(yield* count).toBe(6)
      yield* at(164)
      expect(yield* count).toBe(6)
      yield* at(165)
      expect(yield* count).toBe(7)
    }))

  it.scoped("a run only the sweeper sees is judged within one interval of deadline + interval (interval 40 s)", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(withManualJobs(PodBehaviour.hang), { zombieSweeperIntervalSeconds: 40 })
      const running = yield* sweeperOnlyRun(world, "manual-sweep-1")
      yield* start(world)
      yield* running
      yield* at(1839)
      expect(yield* verdictRows(world)).toEqual([])
      yield* at(1880)
      const judged = yield* verdictRows(world)
      expect(judged.map((v) => [v[0], v[1], v[3]])).toEqual([["deadline_exceeded", "sweeper", "manual-sweep-1"]])
      expect(judged[0]?.[2]).toBeGreaterThanOrEqual(1_840_000)
      expect(judged[0]?.[2]).toBeLessThanOrEqual(1_880_000)
      expect((yield* failurePairs(world)).map((p) => p.reason)).toEqual(["deadline_exceeded"])
    }))

  it.scoped("an adopted Job without activeDeadlineSeconds gets the Config's zombieJobTimeoutSeconds as its deadline", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(withManualJobs(PodBehaviour.hang), { zombieJobTimeoutSeconds: 600 })
      const running = yield* sweeperOnlyRun(world, "manual-sweep-2")
      const { executor } = yield* start(world)
      yield* running
      expect((yield* trackedRuns(executor)).map((r) => [r.jobName, r.timeoutSeconds])).toEqual([["manual-sweep-2", 600]])
      // deadline 600 s, the sweeper (60 s) judges it at 660 s; certainly not at 1860 s (the 1800 s default)
      yield* at(720)
      const judged = yield* verdictRows(world)
      expect(judged.map((v) => [v[0], v[1], v[3]])).toEqual([["deadline_exceeded", "sweeper", "manual-sweep-2"]])
      expect(judged[0]?.[2]).toBe(660_000)
    }))
})

describe("sweeper robustness (items 97-100)", () => {
  it.scoped("a sweep reads the caches only for healthy runs; a zombie it finds while the API is down is convicted once the API server confirms it", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(withManualJobs(PodBehaviour.hang))
      const running = yield* sweeperOnlyRun(world, "manual-cache-1")
      const { executor } = yield* start(world)
      yield* running
      yield* at(1000)
      const writes = (yield* world.cluster.writes).length
      yield* executor.use(sweepOnce)
      yield* executor.use(sweepOnce)
      yield* at(1200)
      expect((yield* world.cluster.writes).length).toBe(writes)

      // with the API server unavailable the sweep sees the zombie in its caches (at 1860 s) but a
      // verdict is made only on what the API server says: it is looked at again every 2 s
      yield* world.cluster.setApiDown(true)
      yield* at(1899)
      expect(yield* verdictRows(world)).toEqual([])
      yield* world.cluster.setApiDown(false)
      yield* at(1900)
      expect(yield* verdictRows(world)).toEqual([["deadline_exceeded", "sweeper", 1_900_000, "manual-cache-1"]])
      yield* at(1960)
      expect((yield* failurePairs(world)).map((p) => [p.job, p.reason])).toEqual([["manual-cache-1", "deadline_exceeded"]])
    }))

  it.scoped("97: no sweep before the caches have synced; the sweeper starts once they have", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hang))
      const synced = yield* Deferred.make<void>()
      const watch: ClusterWatchShape = { ...world.cluster.watch, synced: Deferred.await(synced) }
      const infra = Layer.mergeAll(
        Layer.succeed(ClusterWatch, watch),
        Layer.succeed(ClusterOps, world.cluster.ops),
        InMemoryBus.layerPublisher(world.bus, { topicPrefix: "" }),
        InMemoryBus.layerEventSource(world.bus, { topicPrefix: "" }),
        ExecutorSettings.layer(),
        Layer.succeed(Journal, { record: () => Effect.void })
      )
      const count = yield* tickCounter
      const scope = yield* Effect.scope
      yield* Layer.buildWithScope(Executor.layerZombieDetection.pipe(Layer.provide(infra)), scope).pipe(Effect.forkScoped)
      yield* at(600)
      expect(yield* count).toBe(0)
      yield* Deferred.succeed(synced, undefined)
      yield* at(600)
      yield* at(659)
      expect(yield* count).toBe(0)
      yield* at(660)
      expect(yield* count).toBe(1)
    }))

  it.scoped("100: a failing tick does not stop the loop; the next tick judges the run", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(withManualJobs(PodBehaviour.hang))
      const running = yield* sweeperOnlyRun(world, "manual-fail-1")
      const broken = yield* Ref.make(false)
      const watch: ClusterWatchShape = {
        ...world.cluster.watch,
        podsOfJob: (name) =>
          Effect.flatMap(Ref.get(broken), (isBroken) =>
            isBroken ? Effect.dieMessage("pod cache unavailable") : world.cluster.watch.podsOfJob(name)
          )
      }
      const count = yield* tickCounter
      const executor = yield* startWithWatch(world, watch)
      yield* running
      // the tick at 1860 s (the first one that would judge the run) fails
      yield* at(1859)
      const before = yield* count
      yield* Ref.set(broken, true)
      yield* at(1860)
      expect(yield* executor.verdictRows).toEqual([])
      expect(yield* count).toBe(before)
      yield* Ref.set(broken, false)
      yield* at(1920)
      expect(yield* count).toBe(before + 1)
      expect(yield* executor.verdictRows).toEqual([["deadline_exceeded", "sweeper", 1_920_000, "manual-fail-1"]])
      expect((yield* failurePairs(world)).map((p) => p.job)).toEqual(["manual-fail-1"])
    }))

  it.scoped("100: a cluster write failure in one verdict does not stop the sweep nor the loop", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(withManualJobs(PodBehaviour.hang))
      const first = yield* sweeperOnlyRun(world, "manual-write-1", "task-write-1")
      const second = yield* sweeperOnlyRun(world, "manual-write-2", "task-write-2")
      yield* start(world)
      yield* first
      yield* second
      // the first verdict's mark and delete are refused for good
      const forbidden = (operation: string) =>
        new ClusterError({ operation, target: "manual-write-1", transient: false, message: "forbidden" })
      yield* world.cluster.failNext("annotateJob", forbidden("annotateJob"))
      yield* world.cluster.failNext("deleteJob", forbidden("deleteJob"))
      yield* at(1859)
      const count = yield* tickCounter
      yield* at(1860)
      expect((yield* verdictRows(world)).map((v) => [v[0], v[1], v[3]]).sort()).toEqual([
        ["deadline_exceeded", "sweeper", "manual-write-1"],
        ["deadline_exceeded", "sweeper", "manual-write-2"]
      ])
      yield* at(2000)
      expect((yield* failurePairs(world)).map((p) => p.job).sort()).toEqual(["manual-write-1", "manual-write-2"])
      expect(yield* count).toBe(3)
    }))
})

describe("101: several pods of one Job", () => {
  for (const order of ["running first", "unschedulable first"] as const) {
    it.scoped(`pods [Running, Pending-unschedulable] are no zombie (${order})`, () =>
      Effect.gen(function* () {
        const world = yield* makeWorld(PodBehaviour.always("manual"))
        const { executor, spawn } = yield* start(world)
        yield* spawn(taskId)
        const job = yield* jobOf(world, taskId)
        yield* at(1)
        const controllerPod = yield* podOf(world, job)
        const [firstStatus, secondStatus] =
          order === "running first" ? [runningStatus(), unschedulableStatus] : [unschedulableStatus, runningStatus()]
        yield* world.cluster.patchPodStatus(controllerPod.metadata.name, firstStatus)
        yield* world.cluster.putPod({
          metadata: { ...controllerPod.metadata, name: `${job}-second`, uid: "uid-second-pod" },
          status: secondStatus
        })
        yield* at(400)
        yield* executor.use(sweepOnce)
        expect(yield* verdictRows(world)).toEqual([])
        expect(yield* failurePairs(world)).toEqual([])
      }))
  }

  it.scoped("control: pods [Pending-unschedulable, Pending-unschedulable] are pod_not_scheduled after the grace", () =>
    Effect.gen(function* () {
      const world = yield* makeWorld(PodBehaviour.always("manual"))
      const { spawn } = yield* start(world)
      yield* spawn(taskId)
      const job = yield* jobOf(world, taskId)
      yield* at(1)
      const controllerPod = yield* podOf(world, job)
      yield* world.cluster.patchPodStatus(controllerPod.metadata.name, unschedulableStatus)
      yield* world.cluster.putPod({
        metadata: { ...controllerPod.metadata, name: `${job}-second`, uid: "uid-second-pod" },
        status: unschedulableStatus
      })
      yield* at(121)
      expect(yield* verdictRows(world)).toEqual([["pod_not_scheduled", "pod", 121_000, job]])
    }))
})
