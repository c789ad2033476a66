import { Effect, Option } from "effect"
import type { TaskEvent } from "@executor/domain"
import { Dispatcher } from "@executor/executor"
import { InMemoryBus, type PodBehaviour, World } from "@executor/testkit"

export const assignee = "claude-agent"

export const agentSpec = (overrides: Record<string, unknown> = {}) => ({
  assignee,
  image: "registry.example/agent-claude:v1",
  heartbeat: "1h",
  taskTypes: ["llm"],
  ...overrides
})

export const taskEvent = (taskIdentifier: string, frontmatter: Record<string, unknown> = {}): TaskEvent.TaskEvent => ({
  identifier: `event-${taskIdentifier}-${JSON.stringify(frontmatter)}`,
  taskIdentifier,
  frontmatter: {
    status: "in_progress",
    phase: "execution",
    assignee,
    task_type: "llm",
    stage: "prod",
    max_triggers: 3,
    ...frontmatter
  },
  content: "# Fix the flaky test"
})

/** A world with one agent, an executor in detection mode, and a helper that spawns a run. */
export const setup = (podBehaviour: PodBehaviour.Resolver, spec: Record<string, unknown> = {}) =>
  Effect.gen(function* () {
    const world = yield* World.make({ podBehaviour })
    yield* world.cluster.applyConfig("claude", agentSpec(spec))
    const executor = yield* world.startExecutor("detection")
    const spawn = (taskId: string, frontmatter: Record<string, unknown> = {}) =>
      executor.use(Effect.flatMap(Dispatcher, (d) => d.handle(taskEvent(taskId, frontmatter), Option.none())))
    return { world, executor, spawn }
  })

export interface PublishedCommand {
  readonly key: string | null
  readonly operation: string
  readonly data: { readonly taskIdentifier: string } & Record<string, unknown>
}

export const published = (world: World.World) =>
  Effect.map(world.bus.records("agent-task-v1-request"), (records) =>
    records.map((r): PublishedCommand => {
      const envelope = JSON.parse(r.value) as { operation: string; data: PublishedCommand["data"] }
      return { key: r.key, operation: envelope.operation, data: envelope.data }
    })
  )

export const failures = (world: World.World) =>
  Effect.map(published(world), (commands) =>
    commands.filter((c) => c.operation === "update-frontmatter" && c.data["updates"] !== undefined && (c.data["updates"] as Record<string, unknown>)["current_job"] === "")
  )

export const verdicts = (world: World.World) =>
  Effect.map(world.journal, (entries) => entries.filter((e) => e._tag === "Verdict"))

export { InMemoryBus }
