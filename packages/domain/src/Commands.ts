import { Schema } from "effect"

/** `## Failure` and similar sections the controller replaces or appends in the task body. */
export const BodySection = Schema.Struct({ heading: Schema.NonEmptyString, section: Schema.String })

const TaskId = Schema.NonEmptyString.annotations({ identifier: "TaskId" })

export const UpdateFrontmatter = Schema.Struct({
  taskIdentifier: TaskId,
  updates: Schema.Record({ key: Schema.String, value: Schema.Unknown }).pipe(
    Schema.filter((updates) => Object.keys(updates).length > 0 || "updates must not be empty")
  ),
  body: Schema.optional(BodySection)
})
export type UpdateFrontmatter = typeof UpdateFrontmatter.Type

export const IncrementFrontmatter = Schema.Struct({
  taskIdentifier: TaskId,
  field: Schema.NonEmptyString,
  delta: Schema.Int
})
export type IncrementFrontmatter = typeof IncrementFrontmatter.Type

export const CreateTask = Schema.Struct({
  taskIdentifier: TaskId,
  title: Schema.NonEmptyString,
  frontmatter: Schema.Record({ key: Schema.String, value: Schema.Unknown }),
  body: Schema.optional(Schema.String.pipe(Schema.maxLength(500 * 1024))),
  targetVault: Schema.optional(Schema.String)
})
export type CreateTask = typeof CreateTask.Type

/** A command before it is wrapped in the envelope; the operation names the payload. */
export const Command = Schema.Union(
  Schema.TaggedStruct("update-frontmatter", { data: UpdateFrontmatter }),
  Schema.TaggedStruct("increment-frontmatter", { data: IncrementFrontmatter }),
  Schema.TaggedStruct("create-task", { data: CreateTask })
)
export type Command = typeof Command.Type
export type Operation = Command["_tag"]

export const updateFrontmatter = (data: UpdateFrontmatter): Command => ({ _tag: "update-frontmatter", data })
export const incrementFrontmatter = (data: IncrementFrontmatter): Command => ({
  _tag: "increment-frontmatter",
  data
})
export const createTask = (data: CreateTask): Command => ({ _tag: "create-task", data })

/** The CQRS envelope on the request topic, exactly as the controller parses it. */
export const CommandEnvelope = Schema.Struct({
  requestID: Schema.NonEmptyString,
  requestTime: Schema.String,
  initiator: Schema.NonEmptyString,
  operation: Schema.Literal("update-frontmatter", "increment-frontmatter", "create-task", "update"),
  id: Schema.String,
  data: Schema.Unknown,
  header: Schema.Record({ key: Schema.String, value: Schema.Unknown })
})
export type CommandEnvelope = typeof CommandEnvelope.Type

export const validateCommand = Schema.validateEither(Command, { errors: "all" })

export const taskIdOf = (command: Command): string => command.data.taskIdentifier

/** Topic names of schema `agent-task-v1`, prefixed unless the prefix is empty. */
export const topics = (prefix: string) => {
  const name = (suffix: string) => (prefix === "" ? `agent-task-v1-${suffix}` : `${prefix}-agent-task-v1-${suffix}`)
  return { event: name("event"), request: name("request"), result: name("result") } as const
}

/** Wraps a command in the envelope; ids and time come from the caller (Effect's Random and Clock). */
export const toEnvelope = (
  command: Command,
  meta: { readonly requestId: string; readonly requestTime: string; readonly initiator?: string }
): CommandEnvelope => ({
  requestID: meta.requestId,
  requestTime: meta.requestTime,
  initiator: meta.initiator ?? "executor",
  operation: command._tag,
  id: "",
  data: command.data,
  header: {}
})
