import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, TestClock } from "effect"
import { PodBehaviour } from "@executor/testkit"
import {
  commandsOf,
  committedEventOffset,
  consumeEvent,
  jobsOfTask,
  makeWorldAt,
  produceEvent,
  settle,
  settleUntil,
  startExecutorIn,
  stopExecutor,
  taskEvent,
  trackedRuns
} from "./fixtures.js"

// Decisions D6.1 and D4.10: spawn exactly once per triggering event, whatever is delivered twice.

const T0 = Date.parse("2026-04-18T12:00:00Z")
const taskId = "4aa57614-8835-4992-87e9-ca483ddbeae6"
const spawnOps = ["increment-frontmatter", "update-frontmatter"]

describe("redelivery of a task event (D6.1)", () => {
  it.scoped("the same event twice on the topic ⇒ one Job, one increment, one spawn notification", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang))
      yield* startExecutorIn(world, "full")
      const event = taskEvent(taskId, { trigger_count: 1 })
      yield* consumeEvent(world, event)
      yield* TestClock.adjust("2 seconds")
      const { committed } = yield* consumeEvent(world, event)
      expect(committed).toBe("2")
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
      expect((yield* commandsOf(world, taskId)).map(([op]) => op)).toEqual(spawnOps)
    }))

  it.scoped("the executor dies between the Job create and the commit ⇒ the next one redoes the event: one Job, one increment, one notification", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang))
      const created = yield* Deferred.make<void>()
      // the create is applied, then the process hangs until it is killed: the response never arrives
      yield* world.cluster.setAfterWrite((write) =>
        write.operation === "createJob" ? Effect.zipRight(Deferred.succeed(created, undefined), Effect.never) : Effect.void
      )
      const first = yield* startExecutorIn(world, "full")
      yield* produceEvent(world, taskEvent(taskId))
      yield* settleUntil(Deferred.isDone(created), (done) => done)
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
      yield* stopExecutor(first)
      yield* world.cluster.setAfterWrite(undefined)
      expect(yield* committedEventOffset(world)).toBeUndefined()
      expect(yield* commandsOf(world, taskId)).toEqual([])

      yield* TestClock.adjust("20 seconds")
      const second = yield* startExecutorIn(world, "full")
      expect(yield* settleUntil(committedEventOffset(world), (o) => o === "1")).toBe("1")
      yield* settle
      const jobs = yield* jobsOfTask(world, taskId)
      expect(jobs).toHaveLength(1)
      const commands = yield* commandsOf(world, taskId)
      expect(commands.map(([op]) => op)).toEqual(spawnOps)
      expect((commands[1]?.[1]["updates"] as Record<string, unknown> | undefined)?.["current_job"]).toBe(jobs[0]?.metadata.name)
      expect((yield* trackedRuns(second)).map((r) => [r.taskId, r.jobName])).toEqual([[taskId, jobs[0]?.metadata.name]])
      yield* TestClock.adjust("2 minutes")
      yield* settle
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
      expect((yield* commandsOf(world, taskId)).map(([op]) => op)).toEqual(spawnOps)
    }))

  it.scoped("the executor dies with the spawn transaction open ⇒ aborted, redone once by the next executor", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang))
      const reached = yield* Deferred.make<void>()
      yield* world.bus.setBeforeAppend(() => Effect.zipRight(Deferred.succeed(reached, undefined), Effect.never))
      const first = yield* startExecutorIn(world, "full")
      yield* produceEvent(world, taskEvent(taskId))
      yield* settleUntil(Deferred.isDone(reached), (done) => done)
      yield* stopExecutor(first)
      yield* world.bus.setBeforeAppend(undefined)
      expect(yield* commandsOf(world, taskId)).toEqual([])
      expect(yield* committedEventOffset(world)).toBeUndefined()

      yield* TestClock.adjust("20 seconds")
      yield* startExecutorIn(world, "full")
      expect(yield* settleUntil(committedEventOffset(world), (o) => o === "1")).toBe("1")
      yield* settle
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
      expect((yield* commandsOf(world, taskId)).map(([op]) => op)).toEqual(spawnOps)
    }))

  it.scoped("the executor dies right after the commit ⇒ nothing is redelivered; a later event of the task finds the run", () =>
    Effect.gen(function* () {
      const world = yield* makeWorldAt(T0, PodBehaviour.always(PodBehaviour.hang))
      const first = yield* startExecutorIn(world, "full")
      yield* consumeEvent(world, taskEvent(taskId))
      yield* stopExecutor(first)
      yield* TestClock.adjust("20 seconds")
      const second = yield* startExecutorIn(world, "full")
      yield* settle
      expect(yield* committedEventOffset(world)).toBe("1")
      const [job] = yield* jobsOfTask(world, taskId)
      expect((yield* trackedRuns(second)).map((r) => r.jobName)).toEqual([job?.metadata.name])
      // the controller's echo of the spawn: the run is in flight, nothing more
      yield* consumeEvent(
        world,
        taskEvent(taskId, { trigger_count: 1, current_job: job?.metadata.name, job_started_at: "2026-04-18T12:00:00Z" })
      )
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
      expect((yield* commandsOf(world, taskId)).map(([op]) => op)).toEqual(spawnOps)
    }))
})
