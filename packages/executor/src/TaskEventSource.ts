import { Context, type Effect, Schema, type Stream } from "effect"
import type { ConsumedOffset } from "./CommandPublisher.js"

/** One message of the event topic, raw: decoding (and skipping bad input) is the dispatcher's job. */
export interface ConsumedMessage {
  readonly value: string | null
  readonly offset: ConsumedOffset
}

export class ConsumeError extends Schema.TaggedError<ConsumeError>()("ConsumeError", {
  message: Schema.String
}) {}

/**
 * The task-event consumer (group `agent-task-executor`, from the oldest offset). Messages of one
 * partition arrive in order; an offset is committed only once its message is handled, either
 * alone (`commit`) or inside a command transaction (`CommandPublisher.publish`).
 */
export interface TaskEventSourceShape {
  readonly messages: Stream.Stream<ConsumedMessage, ConsumeError>
  readonly commit: (offset: ConsumedOffset) => Effect.Effect<void, ConsumeError>
}

export class TaskEventSource extends Context.Tag("executor/TaskEventSource")<TaskEventSource, TaskEventSourceShape>() {}
