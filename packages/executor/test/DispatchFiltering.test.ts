import { describe, expect, it } from "@effect/vitest"
import { Effect, Metric, Option, TestClock } from "effect"
import type { JobBuilder, TaskEvent } from "@executor/domain"
import { Dispatcher, Metrics } from "@executor/executor"
import { PodBehaviour, World } from "@executor/testkit"
import {
  agentSpec,
  assignee,
  commandsOf,
  committedEventOffset,
  consumeEvent,
  createManualJob,
  deferredOf,
  handleWith,
  jobsOfTask,
  makeWorldAt,
  names,
  settle,
  startExecutorIn,
  startWithWatchIn,
  taskEvent,
  taskEventCounters,
  watchBatches,
  withManualJobs
} from "./fixtures.js"

// executor.md §5.1, §5.2 and catalogue items 1-35 as decisions D4.9 reorders them (status, phase,
// stage, assignee, Config lookup, task type, trigger cap, active run, grace window, concurrency cap).

const T0 = Date.parse("2026-04-18T12:00:00Z")
const T0_ISO = "2026-04-18T12:00:00Z"

/** A world at T0 with the `claude` Config (assignee `claude-agent`, taskTypes [llm]) and optional more Configs. */
const worldAtT0 = (
  resolver: PodBehaviour.Resolver = PodBehaviour.always(PodBehaviour.hang),
  configs: ReadonlyArray<readonly [string, Record<string, unknown>]> = []
) => makeWorldAt(T0, resolver, {}, configs)

const spawnCommands = (taskId: string, jobName: string | undefined) => [
  ["increment-frontmatter", { taskIdentifier: taskId, field: "trigger_count", delta: 1 }],
  [
    "update-frontmatter",
    { taskIdentifier: taskId, updates: { current_job: jobName, job_started_at: T0_ISO, spawn_notification: true } }
  ]
]

const manifestOf = (job: unknown) => job as JobBuilder.JobManifest

const envOf = (job: unknown): Record<string, string> =>
  Object.fromEntries((manifestOf(job).spec.template.spec.containers[0]?.env ?? []).map((e) => [e.name, e.value]))

interface Row {
  readonly name: string
  readonly frontmatter: Record<string, unknown>
  /** The `result` counters that move, and by how much. A row spawns when `spawned` moves. */
  readonly moved: Record<string, number>
}

const defaultGateRows: ReadonlyArray<Row> = [
  { name: "4: status todo (normalised next)", frontmatter: { status: "todo" }, moved: { skipped_status: 1 } },
  { name: "status backlog", frontmatter: { status: "backlog" }, moved: { skipped_status: 1 } },
  { name: "status completed", frontmatter: { status: "completed" }, moved: { skipped_status: 1 } },
  { name: "status missing", frontmatter: { status: undefined }, moved: { skipped_status: 1 } },
  { name: "status current (normalised in_progress) spawns", frontmatter: { status: "current" }, moved: { spawned: 1 } },
  { name: "5: no phase key", frontmatter: { phase: undefined }, moved: { skipped_phase: 1 } },
  { name: "empty phase is absent", frontmatter: { phase: "" }, moved: { skipped_phase: 1 } },
  { name: "non-string phase is absent", frontmatter: { phase: 7 }, moved: { skipped_phase: 1 } },
  { name: "6: phase todo", frontmatter: { phase: "todo" }, moved: { skipped_phase: 1 } },
  { name: "7: phase human_review", frontmatter: { phase: "human_review" }, moved: { spawn_suppressed_terminal_phase: 1 } },
  { name: "phase done", frontmatter: { phase: "done" }, moved: { spawn_suppressed_terminal_phase: 1 } },
  {
    name: "35: unknown phase is counted and not spawned",
    frontmatter: { phase: "future_enum_value_not_in_v0.64.0" },
    moved: { unknown_phase: 1, skipped_phase: 1 }
  },
  { name: "14: phase planning spawns", frontmatter: { phase: "planning" }, moved: { spawned: 1 } },
  { name: "14: phase ai_review spawns", frontmatter: { phase: "ai_review" }, moved: { spawned: 1 } },
  { name: "12: phase execution spawns", frontmatter: { phase: "execution" }, moved: { spawned: 1 } },
  { name: "24: stage dev on branch prod", frontmatter: { stage: "dev" }, moved: { skipped_stage: 1 } },
  { name: "24: explicit stage prod spawns", frontmatter: { stage: "prod" }, moved: { spawned: 1 } },
  { name: "24: absent stage is prod", frontmatter: { stage: undefined }, moved: { spawned: 1 } },
  { name: "8: empty assignee", frontmatter: { assignee: "" }, moved: { skipped_assignee: 1 } },
  { name: "missing assignee", frontmatter: { assignee: undefined }, moved: { skipped_assignee: 1 } },
  { name: "9: assignee without a Config", frontmatter: { assignee: "nobody" }, moved: { skipped_unknown_assignee: 1 } },
  { name: "assignee matches case-sensitively", frontmatter: { assignee: "Claude-Agent" }, moved: { skipped_unknown_assignee: 1 } },
  { name: "18: trigger_count 1 of 3 spawns", frontmatter: { trigger_count: 1, max_triggers: 3 }, moved: { spawned: 1 } },
  { name: "20: trigger_count 3 of 3", frontmatter: { trigger_count: 3, max_triggers: 3 }, moved: { skipped_trigger_cap: 1 } },
  { name: "trigger_count 4 of 3", frontmatter: { trigger_count: 4, max_triggers: 3 }, moved: { skipped_trigger_cap: 1 } },
  { name: "21: max_triggers 0 never spawns", frontmatter: { trigger_count: 0, max_triggers: 0 }, moved: { skipped_trigger_cap: 1 } },
  { name: "max_triggers absent defaults to 3", frontmatter: { trigger_count: 3, max_triggers: undefined }, moved: { skipped_trigger_cap: 1 } },
  { name: "float trigger_count 2.9 truncates to 2", frontmatter: { trigger_count: 2.9, max_triggers: 3 }, moved: { spawned: 1 } },
  { name: "numeric-string trigger_count is the default 0", frontmatter: { trigger_count: "5", max_triggers: 3 }, moved: { spawned: 1 } }
]

/** The frontmatter of `taskEvent` with `undefined` meaning "key absent". */
const eventOf = (taskId: string, frontmatter: Record<string, unknown>): TaskEvent.TaskEvent => {
  const event = taskEvent(taskId, frontmatter)
  return {
    ...event,
    frontmatter: Object.fromEntries(Object.entries(event.frontmatter).filter(([, v]) => v !== undefined))
  }
}

describe("event filtering and spawning through the consumer (items 1-35)", () => {
  it.scoped("1-3: empty, non-JSON and id-less messages are skipped, counted and committed; the consumer goes on", () =>
    Effect.gen(function* () {
      const world = yield* worldAtT0()
      yield* startExecutorIn(world, "full")
      const counters = yield* taskEventCounters
      const why = (tag: string) =>
        Effect.map(Metric.value(Metric.tagged(Metrics.skippedEvents, "why", tag)), (s) => s.count)
      const before = {
        Empty: yield* why("Empty"),
        NotJson: yield* why("NotJson"),
        NotATask: yield* why("NotATask"),
        NoTaskId: yield* why("NoTaskId")
      }
      const bad = [
        "",
        "   ",
        "{not json",
        "[1,2]",
        JSON.stringify({ frontmatter: { status: "in_progress", phase: "execution", assignee } }),
        JSON.stringify({ taskIdentifier: 42, frontmatter: {} }),
        JSON.stringify({ ...taskEvent("x"), taskIdentifier: "" })
      ]
      for (const [i, value] of bad.entries()) {
        const { committed } = yield* consumeEvent(world, value)
        expect([i, committed]).toEqual([i, String(i + 1)])
      }
      expect({
        Empty: (yield* why("Empty")) - before.Empty,
        NotJson: (yield* why("NotJson")) - before.NotJson,
        NotATask: (yield* why("NotATask")) - before.NotATask,
        NoTaskId: (yield* why("NoTaskId")) - before.NoTaskId
      }).toEqual({ Empty: 2, NotJson: 1, NotATask: 3, NoTaskId: 1 })
      expect(yield* counters.moved).toEqual({})
      expect(yield* world.cluster.jobsSnapshot).toEqual([])
      expect(yield* world.bus.records("agent-task-v1-request")).toEqual([])

      // a valid event after them is handled: the consumer did not stop
      const taskId = "4aa57614-8835-4992-87e9-ca483ddbeae6"
      const { committed } = yield* consumeEvent(world, taskEvent(taskId))
      expect(committed).toBe(String(bad.length + 1))
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
      expect(yield* counters.moved).toEqual({ spawned: 1 })
    }))

  it.scoped("the gate table with the default Config: metric result, spawn or not, offset committed for each", () =>
    Effect.gen(function* () {
      const world = yield* worldAtT0()
      yield* startExecutorIn(world, "full")
      for (const [i, row] of defaultGateRows.entries()) {
        const taskId = `row-${String(i).padStart(2, "0")}-task`
        const counters = yield* taskEventCounters
        const { committed, next } = yield* consumeEvent(world, eventOf(taskId, row.frontmatter))
        const jobs = yield* jobsOfTask(world, taskId)
        const spawns = row.moved["spawned"] === 1
        expect({ row: row.name, committed, moved: yield* counters.moved, jobs: jobs.length }).toEqual({
          row: row.name,
          committed: next,
          moved: row.moved,
          jobs: spawns ? 1 : 0
        })
        expect([row.name, yield* commandsOf(world, taskId)]).toEqual([
          row.name,
          spawns ? spawnCommands(taskId, jobs[0]?.metadata.name) : []
        ])
      }
    }))

  it.scoped("24: on branch dev, stage dev spawns and an absent stage (prod) is skipped", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(T0)
      const world = yield* World.make({ podBehaviour: PodBehaviour.always(PodBehaviour.hang), settings: { branch: "dev" } })
      yield* world.cluster.applyConfig("claude", agentSpec())
      yield* startExecutorIn(world, "full")
      const rows: ReadonlyArray<readonly [string, Record<string, unknown>, Record<string, number>]> = [
        ["dev-stage", { stage: "dev" }, { spawned: 1 }],
        ["no-stage", {}, { skipped_stage: 1 }],
        ["prod-stage", { stage: "prod" }, { skipped_stage: 1 }]
      ]
      for (const [taskId, fm, moved] of rows) {
        const counters = yield* taskEventCounters
        yield* consumeEvent(world, taskEvent(taskId, fm))
        expect([taskId, yield* counters.moved, (yield* jobsOfTask(world, taskId)).length]).toEqual([
          taskId,
          moved,
          moved["spawned"] ?? 0
        ])
      }
      // the Job of the dev executor carries the dev branch (image tag rule, BRANCH env)
      const [job] = yield* jobsOfTask(world, "dev-stage")
      expect(envOf(job)["BRANCH"]).toBe("dev")
    }))

  it.scoped("legacy phase in_progress in a task matches execution (14, §8.14); the Job's PHASE is execution", () =>
    Effect.gen(function* () {
      const world = yield* worldAtT0()
      yield* startExecutorIn(world, "full")
      const counters = yield* taskEventCounters
      yield* consumeEvent(world, taskEvent("legacy-phase", { phase: "in_progress" }))
      expect(yield* counters.moved).toEqual({ spawned: 1 })
      const [job] = yield* jobsOfTask(world, "legacy-phase")
      expect(envOf(job)["PHASE"]).toBe("execution")
    }))

  it.scoped("12, 15, 17-18: one event, one Job of the documented shape, one batch (increment, notification), then the offset", () =>
    Effect.gen(function* () {
      const world = yield* worldAtT0(PodBehaviour.always(PodBehaviour.hang), [
        ["untagged", agentSpec({ assignee: "untagged-agent", image: "registry.example:443/team/agent-x" })]
      ])
      yield* startExecutorIn(world, "full")
      const batches = yield* watchBatches(world)
      const spawnedBefore = (yield* Metric.value(Metrics.jobsSpawned)).count
      const counters = yield* taskEventCounters
      const taskId = "4aa57614-8835-4992-87e9-ca483ddbeae6"
      yield* consumeEvent(world, "{not json")
      const { offset } = yield* consumeEvent(world, taskEvent(taskId, { trigger_count: 1, clone_url: "https://git.example/r.git" }))
      expect(offset).toBe("1")
      expect(yield* committedEventOffset(world)).toBe("2")
      expect(yield* counters.moved).toEqual({ spawned: 1 })
      expect((yield* Metric.value(Metrics.jobsSpawned)).count - spawnedBefore).toBe(1)

      const jobs = yield* jobsOfTask(world, taskId)
      expect(jobs).toHaveLength(1)
      const job = manifestOf(jobs[0])
      const name = job.metadata.name
      expect(name).toMatch(/^claude-agent-4aa57614-[0-9a-f]{10}$/)
      expect(job.metadata.labels).toEqual({ [names.taskIdLabel]: taskId, [names.assigneeLabel]: assignee })
      expect(job.metadata.finalizers).toEqual([names.finalizer])
      // where its spawn commands go, written on the Job before they are sent (docs/decisions.md#placement)
      expect(job.metadata.annotations).toEqual({
        [names.spawnAnnotation]: JSON.stringify({ group: `spawn/${name}`, partition: 0, from: "0" })
      })
      expect(job.spec.backoffLimit).toBe(0)
      expect(job.spec.activeDeadlineSeconds).toBe(1800)
      expect(job.spec.ttlSecondsAfterFinished).toBe(1800)
      expect(job.spec.template.metadata.labels).toEqual({
        app: "agent",
        component: taskId,
        [names.taskIdLabel]: taskId,
        [names.assigneeLabel]: assignee
      })
      const pod = job.spec.template.spec
      expect(pod.automountServiceAccountToken).toBe(false)
      expect(pod.restartPolicy).toBe("Never")
      expect(pod.imagePullSecrets).toEqual([{ name: "docker" }])
      expect(pod.containers.map((c) => [c.name, c.image, c.imagePullPolicy])).toEqual([
        ["agent", "registry.example/agent-claude:v1", "Always"]
      ])
      const env = envOf(jobs[0])
      expect(Object.keys(env).slice(0, 7)).toEqual(["TASK_CONTENT", "TASK_ID", "KAFKA_BROKERS", "BRANCH", "TOPIC_PREFIX", "PHASE", "TASK_TYPE"])
      expect([env["TASK_ID"], env["BRANCH"], env["PHASE"], env["TASK_TYPE"]]).toEqual([taskId, "prod", "execution", "llm"])
      // the triggering event's frontmatter (pre-increment trigger_count) reaches the agent
      expect(env["TASK_CONTENT"]).toContain("clone_url: https://git.example/r.git")
      expect(env["TASK_CONTENT"]).toContain("trigger_count: 1")
      expect(env["TASK_CONTENT"]?.endsWith("---\n# Fix the flaky test")).toBe(true)

      // exactly one batch: increment then notification, keyed by the task id, on the task's partition
      expect(yield* batches).toEqual([
        {
          operations: ["increment-frontmatter", "update-frontmatter"],
          keys: [taskId, taskId],
          tasks: [taskId, taskId],
          partition: 0
        }
      ])
      expect(yield* commandsOf(world, taskId)).toEqual(spawnCommands(taskId, name))
      // only the create went to the API server: decisions come from the caches and the tracker
      expect((yield* world.cluster.writes).map((w) => [w.operation, w.target, w.outcome])).toEqual([["createJob", name, "ok"]])

      // an untagged image gets the branch as its tag
      yield* consumeEvent(world, taskEvent("untagged-task", { assignee: "untagged-agent" }))
      const [untagged] = yield* jobsOfTask(world, "untagged-task")
      expect(manifestOf(untagged).spec.template.spec.containers[0]?.image).toBe("registry.example:443/team/agent-x:prod")
      expect(manifestOf(untagged).metadata.labels[names.assigneeLabel]).toBe("untagged-agent")
    }))
})

describe("custom trigger lists (items 26-34, §8.14)", () => {
  const agents: ReadonlyArray<readonly [string, Record<string, unknown>]> = [
    ["empty-lists", { trigger: { phases: [], statuses: [] } }],
    ["phases-todo", { trigger: { phases: ["todo"] } }],
    ["statuses-completed", { trigger: { statuses: ["completed"] } }],
    ["done-completed", { trigger: { phases: ["done"], statuses: ["completed"] } }],
    ["execution-completed", { trigger: { phases: ["execution"], statuses: ["completed"] } }],
    ["done-in-progress", { trigger: { phases: ["done"], statuses: ["in_progress"] } }],
    ["with-terminal", { trigger: { phases: ["execution", "human_review", "done"] } }],
    ["legacy-in-progress", { trigger: { phases: ["in_progress"] } }]
  ]
  const configs = agents.map(([name, extra]) => [name, agentSpec({ assignee: name, ...extra })] as const)

  const rows: ReadonlyArray<readonly [string, string, Record<string, unknown>, Record<string, number>]> = [
    ["26: empty lists mean the defaults", "empty-lists", {}, { spawned: 1 }],
    ["26: empty lists mean the defaults (todo skipped)", "empty-lists", { phase: "todo" }, { skipped_phase: 1 }],
    ["27: phases [todo] with phase todo", "phases-todo", { phase: "todo" }, { spawned: 1 }],
    ["27: phases [todo] replace the defaults", "phases-todo", { phase: "execution" }, { skipped_phase: 1 }],
    ["28: statuses [completed] with status completed", "statuses-completed", { status: "completed" }, { spawned: 1 }],
    ["28: statuses [completed] replace the defaults", "statuses-completed", {}, { skipped_status: 1 }],
    ["29: terminal gate wins over the allow-list", "done-completed", { status: "completed", phase: "done" }, { spawn_suppressed_terminal_phase: 1 }],
    ["30: same trigger, in_progress/planning", "done-completed", { phase: "planning" }, { skipped_status: 1 }],
    ["31: status gate", "execution-completed", {}, { skipped_status: 1 }],
    ["32: phase gate", "done-in-progress", {}, { skipped_phase: 1 }],
    ["32: done listed, still terminal", "done-in-progress", { phase: "done" }, { spawn_suppressed_terminal_phase: 1 }],
    ["33: human_review listed, still terminal", "with-terminal", { phase: "human_review" }, { spawn_suppressed_terminal_phase: 1 }],
    ["33: done listed, still terminal", "with-terminal", { phase: "done" }, { spawn_suppressed_terminal_phase: 1 }],
    ["33: completed/execution is a status skip", "with-terminal", { status: "completed" }, { skipped_status: 1 }],
    ["33: in_progress/execution spawns", "with-terminal", {}, { spawned: 1 }],
    ["§8.14: Config in_progress matches a task in execution", "legacy-in-progress", { phase: "execution" }, { spawned: 1 }],
    ["§8.14: Config in_progress matches a legacy task in_progress", "legacy-in-progress", { phase: "in_progress" }, { spawned: 1 }],
    ["§8.14: Config in_progress does not match planning", "legacy-in-progress", { phase: "planning" }, { skipped_phase: 1 }]
  ]

  it.scoped("each trigger list decides with the metric result of its gate", () =>
    Effect.gen(function* () {
      const world = yield* worldAtT0(PodBehaviour.always(PodBehaviour.hang), configs)
      const executor = yield* startExecutorIn(world, "detection")
      const handle = handleWith(executor)
      yield* settle
      for (const [i, [name, agent, fm, moved]] of rows.entries()) {
        const taskId = `trigger-${String(i).padStart(2, "0")}`
        const counters = yield* taskEventCounters
        const handled = yield* handle(taskEvent(taskId, { assignee: agent, ...fm }))
        yield* settle
        expect({ name, moved: yield* counters.moved, jobs: (yield* jobsOfTask(world, taskId)).length }).toEqual({
          name,
          moved,
          jobs: moved["spawned"] ?? 0
        })
        expect([name, handled.result]).toEqual([name, Object.keys(moved).find((k) => k !== "unknown_phase")])
      }
    }))

  it.scoped("34: execution then human_review for one task (trigger lists both): one spawn, one suppression", () =>
    Effect.gen(function* () {
      const world = yield* worldAtT0(PodBehaviour.always(PodBehaviour.hang), configs)
      yield* startExecutorIn(world, "full")
      yield* settle
      const counters = yield* taskEventCounters
      const taskId = "two-events"
      yield* consumeEvent(world, taskEvent(taskId, { assignee: "with-terminal" }))
      const [job] = yield* jobsOfTask(world, taskId)
      yield* consumeEvent(
        world,
        taskEvent(taskId, {
          assignee: "with-terminal",
          phase: "human_review",
          trigger_count: 1,
          current_job: job?.metadata.name,
          job_started_at: T0_ISO
        })
      )
      expect(yield* counters.moved).toEqual({ spawned: 1, spawn_suppressed_terminal_phase: 1 })
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
    }))
})

describe("gate order of D4.9 and the fixes of §8.11", () => {
  it.scoped("when two gates fail, the earlier one decides; a mismatched type never escalates a task an earlier gate skips", () =>
    Effect.gen(function* () {
      const world = yield* worldAtT0(withManualJobs(PodBehaviour.hang), [
        ["capped", agentSpec({ assignee: "capped-agent", maxConcurrentJobs: 1 })]
      ])
      const executor = yield* startExecutorIn(world, "detection")
      const handle = handleWith(executor)
      // a running Job of task "busy", and one of another task that fills capped-agent's only slot
      yield* createManualJob(world, { name: "manual-busy", taskId: "busy" })
      yield* createManualJob(world, {
        name: "manual-capped",
        taskId: "capped-other",
        labels: { [names.taskIdLabel]: "capped-other", [names.assigneeLabel]: "capped-agent" }
      })
      yield* settle
      const recent = "2026-04-18T11:59:50Z" // 10 s before T0: inside the 300 s grace
      const rows: ReadonlyArray<readonly [string, string, Record<string, unknown>, string]> = [
        ["status before phase", "o-01", { status: "todo", phase: "human_review" }, "skipped_status"],
        ["phase before stage", "o-02", { phase: "human_review", stage: "dev" }, "spawn_suppressed_terminal_phase"],
        ["phase allow-list before stage", "o-03", { phase: "todo", stage: "dev" }, "skipped_phase"],
        ["stage before assignee", "o-04", { stage: "dev", assignee: "" }, "skipped_stage"],
        ["assignee before the type", "o-05", { assignee: "", task_type: "code-review" }, "skipped_assignee"],
        ["Config lookup before the type", "o-06", { assignee: "nobody", task_type: "code-review" }, "skipped_unknown_assignee"],
        ["§8.11: completed task with a mismatched type", "o-07", { status: "completed", task_type: "code-review" }, "skipped_status"],
        ["§8.11: done task with a mismatched type", "o-08", { status: "done", phase: "done", task_type: "code-review" }, "skipped_status"],
        ["§8.11: human_review task with a mismatched type", "o-09", { phase: "human_review", task_type: "code-review" }, "spawn_suppressed_terminal_phase"],
        ["§8.11: other stage's task with a mismatched type", "o-10", { stage: "dev", task_type: "code-review" }, "skipped_stage"],
        ["§8.11: hold task with a mismatched type", "o-11", { status: "hold", task_type: "code-review" }, "skipped_status"],
        ["the type before the trigger cap", "o-12", { task_type: "code-review", trigger_count: 3 }, "type_mismatch"],
        ["the trigger cap before the active run", "busy", { trigger_count: 3 }, "skipped_trigger_cap"],
        ["the active run before the grace window", "busy", { current_job: "manual-busy", job_started_at: recent }, "skipped_active_job"],
        ["the grace window before the concurrency cap", "o-15", { assignee: "capped-agent", current_job: "gone", job_started_at: recent }, "respawn_grace_window"],
        ["the concurrency cap last", "o-16", { assignee: "capped-agent" }, "deferred_concurrency_cap"]
      ]
      for (const [name, taskId, fm, result] of rows) {
        const counters = yield* taskEventCounters
        const commandsBefore = (yield* commandsOf(world, taskId)).length
        const handled = yield* handle(taskEvent(taskId, fm))
        yield* settle
        const commands = (yield* commandsOf(world, taskId)).slice(commandsBefore)
        expect({ name, result: handled.result, moved: yield* counters.moved }).toEqual({ name, result, moved: { [result]: 1 } })
        // only the type gate publishes (one update-frontmatter); every other skip is silent
        expect([name, commands.map(([op]) => op)]).toEqual([name, result === "type_mismatch" ? ["update-frontmatter"] : []])
      }
      // nothing was created; only the two gates after the active run deferred, each to its own time
      expect((yield* world.cluster.jobsSnapshot).map((j) => j.metadata.name)).toEqual(["manual-busy", "manual-capped"])
      expect(yield* deferredOf(executor)).toEqual([
        ["o-15", Date.parse(recent) + 300_000],
        ["o-16", T0 + 60_000]
      ])
    }))
})

describe("active run (items 11, 23): decided from the caches and the run tracker, never a live list", () => {
  const taskId = "5bb57614-8835-4992-87e9-ca483ddbeae6"

  it.scoped("a running Job of the task in the cache blocks a spawn; once it finished, the next event spawns", () =>
    Effect.gen(function* () {
      const world = yield* worldAtT0(withManualJobs(PodBehaviour.hang))
      const executor = yield* startExecutorIn(world, "detection")
      const handle = handleWith(executor)
      yield* createManualJob(world, { name: "manual-running", taskId })
      yield* settle
      const writes = (yield* world.cluster.writes).length
      const counters = yield* taskEventCounters
      // 11: no current_job, a Job of the task runs
      expect((yield* handle(taskEvent(taskId))).result).toBe("skipped_active_job")
      // 23: current_job names it, the grace long over
      expect(
        (yield* handle(taskEvent(taskId, { current_job: "manual-running", job_started_at: "2026-04-18T10:00:00Z" }))).result
      ).toBe("skipped_active_job")
      expect(yield* counters.moved).toEqual({ skipped_active_job: 2 })
      // no API call at all for these decisions
      expect((yield* world.cluster.writes).length).toBe(writes)
      expect((yield* jobsOfTask(world, taskId)).map((j) => j.metadata.name)).toEqual(["manual-running"])

      // the Job completes: the cache says so, the next event spawns
      yield* world.cluster.patchJobStatus("manual-running", {
        active: 0,
        succeeded: 1,
        conditions: [{ type: "Complete", status: "True" }]
      })
      yield* settle
      expect(
        (yield* handle(taskEvent(taskId, { current_job: "manual-running", job_started_at: "2026-04-18T10:00:00Z", trigger_count: 1 }))).result
      ).toBe("spawned")
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(2)
    }))

  it.scoped("a run the tracker knows blocks a spawn even while the Job cache lags behind", () =>
    Effect.gen(function* () {
      const world = yield* worldAtT0(PodBehaviour.always(PodBehaviour.hang))
      // a Job cache that never shows any Job: only the tracker knows the run
      const executor = yield* startWithWatchIn(world, { ...world.cluster.watch, jobs: Effect.succeed([]) })
      const handle = (fm: Record<string, unknown>) =>
        executor.use(Effect.flatMap(Dispatcher, (d) => d.handle(taskEvent(taskId, fm), Option.none())))
      yield* settle
      expect((yield* handle({})).result).toBe("spawned")
      // another event of the same task (the controller's echo of the spawn, say) while the run is in flight
      expect((yield* handle({ trigger_count: 1, current_job: "whatever", job_started_at: "2026-04-18T10:00:00Z" })).result).toBe(
        "skipped_active_job"
      )
      expect((yield* handle({ phase: "ai_review" })).result).toBe("skipped_active_job")
      expect(yield* jobsOfTask(world, taskId)).toHaveLength(1)
      expect((yield* world.cluster.writes).filter((w) => w.operation === "createJob")).toHaveLength(1)
    }))
})

