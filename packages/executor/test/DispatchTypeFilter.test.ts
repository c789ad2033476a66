import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Ref, TestClock } from "effect"
import { AgentConfig } from "@executor/domain"
import { ControllerModel, InMemoryBus, PodBehaviour } from "@executor/testkit"
import {
  agentSpec,
  assignee,
  commandsOf,
  committedEventOffset,
  dispatchTopics,
  handleWith,
  jobsOfTask,
  makeWorld,
  produceEvent,
  settle,
  settleUntil,
  startExecutorIn,
  taskEvent,
  taskEventCounters,
  verdicts
} from "./fixtures.js"

// Catalogue items 36-41, executor.md §5.8, decisions D5 (type mismatch) and D4.5 (reason token).

const T0 = Date.parse("2026-04-18T12:00:00Z")

const sectionLines = (section: unknown) =>
  typeof section === "string" ? section.split("\n") : []

describe("type filter (items 36-41)", () => {
  it.scoped("36-38: a task type in the effective set spawns, with no mismatch publish", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hang), { taskTypes: undefined, taskType: "pr-review" })
      yield* world.cluster.applyConfig("list", agentSpec({ assignee: "list-agent", taskTypes: ["healthcheck"] }))
      yield* world.cluster.applyConfig(
        "both",
        agentSpec({ assignee: "both-agent", taskType: "pr-review", taskTypes: ["healthcheck"] })
      )
      const handle = handleWith(yield* startExecutorIn(world, "detection"))
      yield* settle
      const rows: ReadonlyArray<readonly [string, string, string]> = [
        ["36", assignee, "pr-review"],
        ["37", "list-agent", "healthcheck"],
        ["38-singular", "both-agent", "pr-review"],
        ["38-list", "both-agent", "healthcheck"]
      ]
      for (const [taskId, agent, type] of rows) {
        const counters = yield* taskEventCounters
        expect([taskId, (yield* handle(taskEvent(taskId, { assignee: agent, task_type: type }))).result]).toEqual([taskId, "spawned"])
        yield* settle
        expect([taskId, yield* counters.moved]).toEqual([taskId, { spawned: 1 }])
        expect((yield* commandsOf(world, taskId)).map(([op]) => op)).toEqual(["increment-frontmatter", "update-frontmatter"])
        expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
      }
    }))

  it.scoped("39: a mismatch publishes exactly one update {assignee, current_job, previous_assignee} with Reason type_mismatch; its placement held in the offset metadata until it is out", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hang), { taskType: "pr-review", taskTypes: ["healthcheck"] })
      yield* startExecutorIn(world, "full")
      // each batch, with what the consumer group holds when it is about to go out
      const held = yield* Ref.make<ReadonlyArray<readonly [ReadonlyArray<string | null>, string]>>([])
      yield* world.bus.setBeforeAppend((batch) =>
        Effect.flatMap(world.bus.committedMetadata(InMemoryBus.executorGroup, dispatchTopics.event, 0), (position) =>
          Ref.update(held, (all) => [...all, [batch.messages.map((m) => m.key), JSON.stringify(Option.getOrUndefined(position))] as const])
        )
      )
      const counters = yield* taskEventCounters
      const taskId = "4aa57614-8835-4992-87e9-ca483ddbeae6"
      yield* produceEvent(world, taskEvent(taskId, { task_type: "code-review", trigger_count: 1, current_job: "old-job" }))
      expect(yield* settleUntil(committedEventOffset(world), (o) => o === "1")).toBe("1")
      yield* settle

      const commands = yield* commandsOf(world, taskId)
      expect(commands.map(([op, data]) => [op, data["updates"]])).toEqual([
        ["update-frontmatter", { assignee: "", current_job: "", previous_assignee: assignee }]
      ])
      const body = commands[0]?.[1]["body"] as { readonly heading: string; readonly section: string } | undefined
      expect(body?.heading).toBe("## Failure")
      const lines = sectionLines(body?.section)
      expect(lines[0]).toBe("## Failure")
      expect(lines).toContain("- **Timestamp:** 2026-04-18T12:00:00Z")
      expect(lines).toContain(`- **Assignee:** ${assignee}`)
      // tooling greps the Reason line: the token verbatim (D4.5, §8.10)
      expect(lines).toContain("- **Reason:** type_mismatch")
      const detail = lines.find((l) => l.startsWith("- **Detail:** ")) ?? ""
      expect(detail).toContain("code-review")
      expect(detail).toContain("[pr-review healthcheck]")
      // no trigger_count change, no Job
      expect(commands.filter(([op]) => op === "increment-frontmatter")).toEqual([])
      expect(yield* jobsOfTask(world, taskId)).toEqual([])
      expect(yield* counters.moved).toEqual({ type_mismatch: 1 })
      // one batch; before it went out the group's position stayed at the event (offset 0) with the
      // placement of the group as its metadata, and moved past it only afterwards
      expect(yield* Ref.get(held)).toEqual([
        [
          [taskId],
          JSON.stringify({
            offset: "0",
            metadata: JSON.stringify({ group: `event/${dispatchTopics.event}/0/0/type-mismatch`, partition: 0, from: "0" })
          })
        ]
      ])
      expect(yield* world.bus.committedMetadata(InMemoryBus.executorGroup, dispatchTopics.event, 0)).toEqual(
        Option.some({ offset: "1", metadata: "" })
      )
      // the journal line says who decided it
      expect((yield* verdicts(world)).map((v) => [v.reason, v.source, v.taskId, v.jobName])).toEqual([
        ["type_mismatch", "dispatch", taskId, undefined]
      ])
    }))

  it.scoped("40: a task without task_type (or an empty one) is a mismatch whose detail says so", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hang), { taskTypes: undefined, taskType: "pr-review" })
      const handle = handleWith(yield* startExecutorIn(world, "detection"))
      yield* settle
      expect((yield* handle(taskEvent("no-type", { task_type: undefined }))).result).toBe("type_mismatch")
      expect((yield* handle(taskEvent("empty-type", { task_type: "" }))).result).toBe("type_mismatch")
      yield* settle
      for (const taskId of ["no-type", "empty-type"]) {
        const commands = yield* commandsOf(world, taskId)
        expect(commands.map(([op, data]) => [op, data["updates"]])).toEqual([
          ["update-frontmatter", { assignee: "", current_job: "", previous_assignee: assignee }]
        ])
        const body = commands[0]?.[1]["body"] as { readonly section: string } | undefined
        expect(sectionLines(body?.section).find((l) => l.startsWith("- **Detail:** "))).toContain("no task_type")
      }
    }))

  it("41: the effective set is taskType first, then taskTypes, de-duplicated, empty entries skipped", () => {
    expect(AgentConfig.effectiveTaskTypes("pr-review", undefined)).toEqual(["pr-review"])
    expect(AgentConfig.effectiveTaskTypes("", ["a", "b"])).toEqual(["a", "b"])
    expect(AgentConfig.effectiveTaskTypes("b", ["a", "b", "c"])).toEqual(["b", "a", "c"])
    expect(AgentConfig.effectiveTaskTypes("a", ["a", "a"])).toEqual(["a"])
    expect(AgentConfig.effectiveTaskTypes("", [])).toEqual([])
    expect(AgentConfig.effectiveTaskTypes("", ["", "x"])).toEqual(["x"])
  })

  it.scoped("§5.8: the controller applies the mismatch and re-publishes the task with assignee \"\": skipped as unassigned, no loop", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const world = yield* makeWorld(PodBehaviour.always(PodBehaviour.hang))
      const controller = yield* ControllerModel.make(world.bus, { topicPrefix: "" })
      yield* startExecutorIn(world, "full")
      yield* settle
      const counters = yield* taskEventCounters
      const taskId = "7cc57614-8835-4992-87e9-ca483ddbeae6"
      yield* controller.edit(
        taskId,
        { status: "in_progress", phase: "execution", assignee, task_type: "code-review", stage: "prod", trigger_count: 1 },
        "# Review"
      )
      expect(yield* settleUntil(committedEventOffset(world), (o) => o === "1")).toBe("1")
      // the controller applies the command 1 s after its commit and publishes the task again
      yield* TestClock.adjust("1 second")
      expect(yield* settleUntil(committedEventOffset(world), (o) => o === "2")).toBe("2")
      yield* TestClock.adjust("3 minutes")
      yield* settle
      expect(yield* committedEventOffset(world)).toBe("2")
      expect(yield* counters.moved).toEqual({ type_mismatch: 1, skipped_assignee: 1 })
      expect((yield* commandsOf(world, taskId)).map(([op]) => op)).toEqual(["update-frontmatter"])
      expect(yield* jobsOfTask(world, taskId)).toEqual([])
      const task = (yield* controller.tasks).get(taskId)
      expect(task?.frontmatter).toEqual({
        status: "in_progress",
        phase: "execution",
        assignee: "",
        previous_assignee: assignee,
        current_job: "",
        task_type: "code-review",
        stage: "prod",
        trigger_count: 1
      })
      expect(task?.content).toContain("- **Reason:** type_mismatch")
    }))
})
