import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Metric, Ref, Scope, TestClock } from "effect"
import { ClusterError, Executor, ExecutorSettings, Journal, Metrics, TaskEventSource } from "@executor/executor"
import { InMemoryBus, PodBehaviour, type World } from "@executor/testkit"
import {
  agentSpec,
  assignee,
  commandsOf,
  committedEventOffset,
  consumeEvent,
  jobsOfTask,
  makeWorldAt,
  produceEvent,
  settle,
  settleUntil,
  startExecutorIn,
  taskEvent,
  taskEventCounters,
  verdicts,
  watchBatches
} from "./fixtures.js"

// Decisions D4.10 (errors never kill the service), executor.md §8.15-8.16 and D6.1.

const T0 = Date.parse("2026-04-18T12:00:00Z")
const taskId = "4aa57614-8835-4992-87e9-ca483ddbeae6"
const spawnOps = ["increment-frontmatter", "update-frontmatter"]

const createCalls = (world: World.World) =>
  Effect.map(world.cluster.writes, (writes) => writes.filter((w) => w.operation === "createJob").map((w) => w.outcome))

const sectionOf = (data: Readonly<Record<string, unknown>> | undefined) =>
  ((data?.["body"] as { readonly section?: string } | undefined)?.section ?? "").split("\n")

describe("transient errors are retried without committing (D4.10)", () => {
  it.scoped("createJob fails once (transient) ⇒ no commit, retried after a back-off, then one Job and one increment", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang))
      yield* startExecutorIn(world, "full")
      yield* world.cluster.failNext("createJob")
      const counters = yield* taskEventCounters
      yield* produceEvent(world, taskEvent(taskId))
      yield* settleUntil(createCalls(world), (calls) => calls.length > 0)
      yield* settle
      expect(yield* createCalls(world)).toEqual(["failed"])
      expect(yield* committedEventOffset(world)).toBeUndefined()
      expect(yield* jobsOfTask(world, taskId)).toEqual([])
      expect(yield* commandsOf(world, taskId)).toEqual([])
      expect(yield* counters.moved).toEqual({ error: 1 })

      yield* TestClock.adjust("1 second")
      expect(yield* settleUntil(committedEventOffset(world), (o) => o === "1")).toBe("1")
      yield* settle
      expect(yield* createCalls(world)).toEqual(["failed", "ok"])
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
      expect((yield* commandsOf(world, taskId)).map(([op]) => op)).toEqual(spawnOps)
      expect(yield* counters.moved).toEqual({ error: 1, spawned: 1 })
    }))

  it.scoped("API down for a minute ⇒ the partition waits (later events too), nothing committed; then each spawns once", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang))
      yield* startExecutorIn(world, "full")
      yield* world.cluster.setApiDown(true)
      yield* produceEvent(world, taskEvent("first"))
      yield* produceEvent(world, taskEvent("second"))
      yield* TestClock.adjust("60 seconds")
      yield* settle
      expect(yield* committedEventOffset(world)).toBeUndefined()
      expect(yield* world.cluster.jobsSnapshot).toEqual([])
      expect(yield* world.bus.records("agent-task-v1-request")).toEqual([])
      const failedCalls = (yield* createCalls(world)).length
      expect(failedCalls).toBeGreaterThanOrEqual(4)
      // only the first event was tried: the second waits behind it
      expect(new Set((yield* world.cluster.writes).map((w) => w.target)).size).toBe(1)

      yield* world.cluster.setApiDown(false)
      yield* TestClock.adjust("31 seconds")
      expect(yield* settleUntil(committedEventOffset(world), (o) => o === "2")).toBe("2")
      yield* settle
      for (const id of ["first", "second"]) {
        expect([id, (yield* jobsOfTask(world, id)).length, (yield* commandsOf(world, id)).map(([op]) => op)]).toEqual([
          id,
          1,
          spawnOps
        ])
      }
    }))

  it.scoped("the spawn append is refused once ⇒ the event is handled again, this process knows its Job: no second create, one Job, one increment", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang))
      yield* startExecutorIn(world, "full")
      yield* world.bus.failNextAppends(1)
      yield* produceEvent(world, taskEvent(taskId))
      yield* settleUntil(createCalls(world), (calls) => calls.length > 0)
      yield* settle
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
      expect(yield* committedEventOffset(world)).toBeUndefined()
      expect(yield* commandsOf(world, taskId)).toEqual([])
      yield* TestClock.adjust("1 second")
      expect(yield* settleUntil(committedEventOffset(world), (o) => o === "1")).toBe("1")
      yield* settle
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
      expect((yield* commandsOf(world, taskId)).map(([op]) => op)).toEqual(spawnOps)
      expect(yield* createCalls(world)).toEqual(["ok"])
    }))

  it.scoped("the broker goes down during the spawn publish for 45 s ⇒ redelivered after, one Job, one increment", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang))
      yield* startExecutorIn(world, "full")
      const tripped = yield* Ref.make(false)
      const hook: InMemoryBus.BeforeAppend = () =>
        Effect.flatMap(Ref.getAndSet(tripped, true), (done) =>
          done ? Effect.void : Effect.zipRight(world.bus.setDown(true), Effect.fail("broker lost"))
        )
      yield* world.bus.setBeforeAppend(hook)
      yield* produceEvent(world, taskEvent(taskId))
      yield* settleUntil(world.bus.isDown, (down) => down)
      yield* TestClock.adjust("45 seconds")
      yield* settle
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
      expect(yield* committedEventOffset(world)).toBeUndefined()
      yield* world.bus.setDown(false)
      yield* TestClock.adjust("31 seconds")
      expect(yield* settleUntil(committedEventOffset(world), (o) => o === "1")).toBe("1")
      yield* settle
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
      expect((yield* commandsOf(world, taskId)).map(([op]) => op)).toEqual(spawnOps)
      // and the consumer goes on
      yield* consumeEvent(world, taskEvent("next-task"))
      expect(yield* jobsOfTask(world, "next-task")).toHaveLength(1)
    }))
})

describe("permanent errors are reported on the task and committed (D4.10, §8.15)", () => {
  it.scoped("createJob rejected (422) ⇒ ## Failure pod_config_error, assignee cleared, no increment, then the offset; the consumer goes on", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang))
      yield* startExecutorIn(world, "full")
      const batches = yield* watchBatches(world)
      const message = 'Job.batch "x" is invalid: spec.template.spec.containers[0].image: Required value'
      yield* world.cluster.failNext(
        "createJob",
        new ClusterError({ operation: "createJob", target: "x", transient: false, message })
      )
      const counters = yield* taskEventCounters
      const { committed } = yield* consumeEvent(world, taskEvent(taskId, { trigger_count: 1 }))
      expect(committed).toBe("1")
      expect(yield* jobsOfTask(world, taskId)).toEqual([])
      const commands = yield* commandsOf(world, taskId)
      expect(commands.map(([op, data]) => [op, data["updates"]])).toEqual([
        ["update-frontmatter", { assignee: "", current_job: "", previous_assignee: assignee }]
      ])
      const lines = sectionOf(commands[0]?.[1])
      expect(lines[0]).toBe("## Failure")
      expect(lines).toContain("- **Reason:** pod_config_error")
      expect(lines.find((l) => l.startsWith("- **Detail:** "))).toContain("Required value")
      expect(yield* batches).toEqual([{ operations: ["update-frontmatter"], keys: [taskId], tasks: [taskId], partition: 0 }])
      expect((yield* verdicts(world)).map((v) => [v.reason, v.source, v.taskId])).toEqual([
        ["pod_config_error", "dispatch", taskId]
      ])
      expect(yield* counters.moved).not.toHaveProperty("spawned")

      yield* consumeEvent(world, taskEvent("next-task"))
      expect(yield* jobsOfTask(world, "next-task")).toHaveLength(1)
    }))

  it.scoped("a rejected spawn counts result=error in agent_executor_task_events_total (executor.md §4.3, §5.2 step 7)", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang))
      yield* startExecutorIn(world, "full")
      yield* world.cluster.failNext(
        "createJob",
        new ClusterError({ operation: "createJob", target: "x", transient: false, message: "forbidden: exceeded quota" })
      )
      const counters = yield* taskEventCounters
      yield* consumeEvent(world, taskEvent(taskId))
      // a permanently invalid Job spec is rejected before any API call, and counted the same way
      yield* consumeEvent(world, taskEvent("Task With Spaces"))
      expect(yield* counters.moved).toEqual({ error: 2 })
    }))

  it.scoped("a task id that cannot be a label value ⇒ pod_config_error before any API call; committed; the consumer goes on", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang))
      yield* startExecutorIn(world, "full")
      const bad = ["Task With Spaces", "x".repeat(64)]
      for (const [i, id] of bad.entries()) {
        const { committed } = yield* consumeEvent(world, taskEvent(id))
        expect(committed).toBe(String(i + 1))
        const commands = yield* commandsOf(world, id)
        expect(commands.map(([op, data]) => [op, data["updates"]])).toEqual([
          ["update-frontmatter", { assignee: "", current_job: "", previous_assignee: assignee }]
        ])
        expect(sectionOf(commands[0]?.[1])).toContain("- **Reason:** pod_config_error")
      }
      expect(yield* world.cluster.writes).toEqual([])
      yield* consumeEvent(world, taskEvent("next-task"))
      expect(yield* jobsOfTask(world, "next-task")).toHaveLength(1)
    }))

  it.scoped("a Config with volumeClaim but no mount path is rejected at load: no spawn, skipped_unknown_assignee, committed", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang))
      const rejected = (yield* Metric.value(Metrics.configsRejected)).count
      yield* world.cluster.applyConfig("pvc", agentSpec({ assignee: "pvc-agent", volumeClaim: "agent-data-claim" }))
      yield* startExecutorIn(world, "full")
      yield* settle
      expect((yield* Metric.value(Metrics.configsRejected)).count - rejected).toBe(1)
      const counters = yield* taskEventCounters
      const { committed } = yield* consumeEvent(world, taskEvent(taskId, { assignee: "pvc-agent" }))
      expect(committed).toBe("1")
      expect(yield* counters.moved).toEqual({ skipped_unknown_assignee: 1 })
      expect(yield* world.cluster.jobsSnapshot).toEqual([])
      expect(yield* commandsOf(world, taskId)).toEqual([])
      // with the mount path it is accepted, and the Job mounts the claim
      yield* world.cluster.applyConfig(
        "pvc",
        agentSpec({ assignee: "pvc-agent", volumeClaim: "agent-data-claim", volumeMountPath: "/data" })
      )
      yield* settle
      yield* consumeEvent(world, taskEvent("with-mount", { assignee: "pvc-agent" }))
      expect(yield* jobsOfTask(world, "with-mount")).toHaveLength(1)
    }))
})

describe("a defect never stops consuming (docs/decisions.md#errors-never-fatal)", () => {
  it.scoped("the commit dies twice (after the handling, and again in the skip of that defect): the subscription starts over, nothing is lost or doubled", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang))
      const real = yield* Effect.provide(TaskEventSource, InMemoryBus.layerEventSource(world.bus, { topicPrefix: "" }))
      const deaths = yield* Ref.make(2)
      const source = TaskEventSource.of({
        ...real,
        commit: (offset) =>
          Effect.flatMap(Ref.getAndUpdate(deaths, (n) => n - 1), (n) => (n > 0 ? Effect.dieMessage("commit blew up") : real.commit(offset)))
      })
      const scope = yield* Scope.make()
      yield* Effect.addFinalizer(() => Effect.forkDaemon(Scope.close(scope, Exit.void)))
      yield* Layer.buildWithScope(
        Executor.layerExecutor.pipe(
          Layer.provide(
            Layer.mergeAll(
              world.cluster.layer,
              InMemoryBus.layerPublisher(world.bus, { topicPrefix: "" }),
              Layer.succeed(TaskEventSource, source),
              ExecutorSettings.layer(world.settings),
              Layer.succeed(Journal, { record: () => Effect.void })
            )
          )
        ),
        scope
      )
      yield* settle
      yield* produceEvent(world, taskEvent("first"))
      yield* settleUntil(Ref.get(deaths), (n) => n <= 0)
      yield* TestClock.adjust("2 seconds")
      yield* produceEvent(world, taskEvent("second"))
      expect(yield* settleUntil(committedEventOffset(world), (o) => o === "2")).toBe("2")
      yield* settle
      for (const id of ["first", "second"]) {
        expect([id, (yield* jobsOfTask(world, id)).length, (yield* commandsOf(world, id)).map(([op]) => op)]).toEqual([id, 1, spawnOps])
      }
    }))
})
