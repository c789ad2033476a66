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

/** A command the controller took off the request topic, and what it did with it. */
export interface Handled {
  readonly requestId: string
  readonly operation: string
  readonly taskId: string
  /** When the controller handled it. */
  readonly at: number
  readonly requestTime: string
  readonly offset: string
  readonly partition: number
}

/**
 * The task controller as docs/decisions.md#doctrine describes it, consuming like the real one
 * (docs/contract.md#what-the-controller-does-with-them):
 * it reads uncommitted (every appended record), never de-duplicates (the same command twice is
 * applied twice), drops a command whose `requestTime` is more than 5 minutes old (recorded, no
 * result), and skips a command it cannot decode without a word. It handles each command 1 s after
 * it was appended and then publishes the task as a new event.
 */
export interface ControllerModel {
  /** A snapshot of every task. */
  readonly tasks: Effect.Effect<ReadonlyMap<string, TaskState>>
  readonly task: (taskId: string) => Effect.Effect<Option.Option<TaskState>>
  /** A human edits (or creates) a task file: the controller publishes it as an event. */
  readonly edit: (taskId: string, frontmatter: Readonly<Record<string, unknown>>, content: string) => Effect.Effect<void>
  /** Every command applied so far, in order (duplicates included). */
  readonly applied: Effect.Effect<ReadonlyArray<Handled>>
  /** Every command dropped as expired so far. */
  readonly expired: Effect.Effect<ReadonlyArray<Handled>>
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

/** The envelope as the controller decodes it (docs/contract.md#command-envelope); anything else is skipped silently. */
const Envelope = Schema.parseJson(
  Schema.Struct({
    requestID: Schema.NonEmptyString,
    requestTime: Schema.optional(Schema.NullOr(Schema.String)),
    initiator: Schema.NonEmptyString,
    operation: Schema.String.pipe(Schema.pattern(/^[a-z][a-z-]*$/)),
    id: Schema.optional(Schema.String),
    data: Schema.Record({ key: Schema.String, value: Schema.Unknown }),
    header: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String }))
  })
)

/** Commands older than this when the controller gets to them are dropped (docs/contract.md#what-the-controller-does-with-them). */
export const expiryMillis = 5 * 60 * 1000
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

    const applied: Array<Handled> = []
    const expired: Array<Handled> = []

    yield* bus.appended.pipe(
      Stream.filter((record) => record.topic === topics.request),
      Stream.runForEach((record) =>
        Effect.gen(function* () {
          const due = record.appendedAt + applyDelayMillis
          const before = yield* Clock.currentTimeMillis
          if (due > before) yield* Effect.sleep(Duration.millis(due - before))
          const now = yield* Clock.currentTimeMillis
          const envelope = Schema.decodeUnknownOption(Envelope)(record.value)
          if (Option.isNone(envelope)) return
          const { requestID, requestTime, operation, data } = envelope.value
          const handled: Handled = {
            requestId: requestID,
            operation,
            taskId: typeof data["taskIdentifier"] === "string" ? data["taskIdentifier"] : "",
            at: now,
            requestTime: requestTime ?? "",
            offset: record.offset,
            partition: record.partition
          }
          const sent = Time.parseTimestamp(requestTime ?? undefined)
          if (Option.isNone(sent) || sent.value + expiryMillis < now) {
            expired.push(handled)
            return
          }
          const result = applyCommand(tasks, operation, data)
          if (Option.isNone(result)) return
          applied.push(handled)
          const [taskId, task] = result.value
          tasks.set(taskId, task)
          yield* publishEvent(taskId, task)
        })
      ),
      Effect.forkScoped
    )

    return {
      tasks: Effect.sync(() => new Map(tasks)),
      task: (taskId) => Effect.sync(() => Option.fromNullable(tasks.get(taskId))),
      edit,
      applied: Effect.sync(() => [...applied]),
      expired: Effect.sync(() => [...expired])
    } satisfies ControllerModel
  })
