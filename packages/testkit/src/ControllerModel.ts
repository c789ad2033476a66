import { Clock, Duration, Effect, Option, Schema, Stream } from "effect"
import { Commands, Frontmatter, Time } from "@executor/domain"
import type { InMemoryBus } from "./InMemoryBus.js"
import { randomUuidV4 } from "./InMemoryBus.js"

/** A task as the controller holds it in the vault. */
export interface TaskState {
  readonly frontmatter: Readonly<Record<string, unknown>>
  readonly content: string
}

export const applyDelayMillis = 1_000
const escalationHeading = "## Trigger Cap Escalation"

/**
 * The task controller as decisions D5 describes it: the single writer of the vault. It applies
 * each command 1 s after its transaction commits and then publishes the task as a new event.
 */
export interface ControllerModel {
  /** A snapshot of every task. */
  readonly tasks: Effect.Effect<ReadonlyMap<string, TaskState>>
  readonly task: (taskId: string) => Effect.Effect<Option.Option<TaskState>>
  /** A human edits (or creates) a task file: the controller publishes it as an event. */
  readonly edit: (taskId: string, frontmatter: Readonly<Record<string, unknown>>, content: string) => Effect.Effect<void>
}

/** Replaces the section that starts with `heading` (up to the next heading of its level), or appends it. */
export const upsertSection = (content: string, heading: string, section: string): string => {
  const lines = content.split("\n")
  const start = lines.findIndex((line) => line.trim() === heading)
  const body = section.replace(/\n+$/, "")
  if (start === -1) return `${content.replace(/\n+$/, "")}${content.trim() === "" ? "" : "\n\n"}${body}\n`
  const level = heading.match(/^#+/)?.[0].length ?? 2
  let end = lines.length
  for (let i = start + 1; i < lines.length; i++) {
    const match = lines[i]?.match(/^(#+)\s/)
    if (match !== undefined && match !== null && (match[1]?.length ?? 0) <= level) {
      end = i
      break
    }
  }
  const after = lines.slice(end).join("\n")
  return [...lines.slice(0, start), ...body.split("\n"), ...(after === "" ? [] : ["", after])].join("\n").replace(/\n*$/, "\n")
}

const clearAssignee = (fm: Record<string, unknown>) => {
  const prior = Frontmatter.assignee(fm)
  fm["assignee"] = ""
  if (prior !== "") fm["previous_assignee"] = prior
}

const Envelope = Schema.parseJson(
  Schema.Struct({ operation: Schema.String, data: Schema.Unknown })
)
const AgentUpdate = Schema.Struct({
  taskIdentifier: Schema.String,
  frontmatter: Schema.Record({ key: Schema.String, value: Schema.Unknown }),
  content: Schema.String
})

/** D5's rules for one command; returns the new task, or `None` when the command does not apply. */
export const applyCommand = (
  tasks: ReadonlyMap<string, TaskState>,
  operation: string,
  data: unknown
): Option.Option<readonly [string, TaskState]> => {
  switch (operation) {
    case "create-task": {
      return Option.map(Schema.decodeUnknownOption(Commands.CreateTask)(data), (c) => [
        c.taskIdentifier,
        { frontmatter: { ...c.frontmatter }, content: c.body ?? "" }
      ] as const)
    }
    case "update-frontmatter": {
      return Option.flatMap(Schema.decodeUnknownOption(Commands.UpdateFrontmatter)(data), (c) => {
        const task = tasks.get(c.taskIdentifier)
        if (task === undefined) return Option.none()
        const fm: Record<string, unknown> = { ...task.frontmatter, ...c.updates }
        const content = c.body === undefined ? task.content : upsertSection(task.content, c.body.heading, c.body.section)
        if (Frontmatter.phase(fm).pipe(Option.contains("human_review"))) clearAssignee(fm)
        return Option.some([c.taskIdentifier, { frontmatter: fm, content }] as const)
      })
    }
    case "increment-frontmatter": {
      return Option.flatMap(Schema.decodeUnknownOption(Commands.IncrementFrontmatter)(data), (c) => {
        const task = tasks.get(c.taskIdentifier)
        if (task === undefined) return Option.none()
        const current = task.frontmatter[c.field]
        const value = (typeof current === "number" ? current : 0) + c.delta
        const fm: Record<string, unknown> = { ...task.frontmatter, [c.field]: value }
        if (c.field === "trigger_count" && value >= Frontmatter.maxTriggers(fm)) fm["assignee"] = ""
        return Option.some([c.taskIdentifier, { ...task, frontmatter: fm }] as const)
      })
    }
    case "update": {
      return Option.flatMap(Schema.decodeUnknownOption(AgentUpdate)(data), (u) => {
        const task = tasks.get(u.taskIdentifier)
        if (task === undefined) return Option.none()
        const fm: Record<string, unknown> = { ...task.frontmatter, ...u.frontmatter }
        let content = u.content
        if (Frontmatter.status(fm) !== "completed") {
          const count = Frontmatter.triggerCount(fm)
          if (count > 0 && count >= Frontmatter.maxTriggers(fm)) {
            clearAssignee(fm)
            if (!content.includes(escalationHeading)) {
              content = upsertSection(content, escalationHeading, `${escalationHeading}\n\ntrigger_count ${count} reached max_triggers\n`)
            }
          }
          if (Frontmatter.phase(fm).pipe(Option.contains("human_review"))) clearAssignee(fm)
        }
        return Option.some([u.taskIdentifier, { frontmatter: fm, content }] as const)
      })
    }
    default:
      return Option.none()
  }
}

export const make = (bus: InMemoryBus, options: { readonly topicPrefix: string }) =>
  Effect.gen(function* () {
    const topics = Commands.topics(options.topicPrefix)
    // Written only here, one synchronous step per change; readers get copies or single entries.
    const tasks = new Map<string, TaskState>()

    const publishEvent = (taskId: string, task: TaskState) =>
      Effect.gen(function* () {
        const now = Time.formatIso(yield* Clock.currentTimeMillis)
        const event = {
          identifier: yield* randomUuidV4,
          created: now,
          modified: now,
          taskIdentifier: taskId,
          frontmatter: task.frontmatter,
          content: task.content
        }
        yield* bus.produce(topics.event, taskId, JSON.stringify(event))
      })

    const edit = (taskId: string, frontmatter: Readonly<Record<string, unknown>>, content: string) =>
      Effect.gen(function* () {
        const previous = tasks.get(taskId)
        const fm: Record<string, unknown> = { ...frontmatter }
        // An operator who hands a parked task back to an agent gives it a fresh retry budget.
        if (previous !== undefined && Frontmatter.assignee(previous.frontmatter) === "" && Frontmatter.assignee(fm) !== "") {
          fm["trigger_count"] = 0
          fm["retry_count"] = 0
        }
        const task = { frontmatter: fm, content }
        tasks.set(taskId, task)
        yield* publishEvent(taskId, task)
      })

    yield* bus.committed.pipe(
      Stream.filter((record) => record.topic === topics.request),
      Stream.runForEach((record) =>
        Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const due = record.committedAt + applyDelayMillis
          if (due > now) yield* Effect.sleep(Duration.millis(due - now))
          const envelope = Schema.decodeUnknownOption(Envelope)(record.value)
          if (Option.isNone(envelope)) return
          const applied = applyCommand(tasks, envelope.value.operation, envelope.value.data)
          if (Option.isNone(applied)) return
          const [taskId, task] = applied.value
          tasks.set(taskId, task)
          yield* publishEvent(taskId, task)
        })
      ),
      Effect.forkScoped
    )

    return {
      tasks: Effect.sync(() => new Map(tasks)),
      task: (taskId) => Effect.sync(() => Option.fromNullable(tasks.get(taskId))),
      edit
    } satisfies ControllerModel
  })
