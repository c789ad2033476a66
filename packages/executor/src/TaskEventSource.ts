import { Context, type Effect, type Option, Schema, type Stream } from "effect"

/** A consumer position: the handled message (the next one to read is `offset + 1`). */
export interface ConsumedOffset {
  readonly topic: string
  readonly partition: number
  /** The offset of the handled message; the next one to read is `offset + 1`. */
  readonly offset: string
}

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
 * partition arrive in order; an offset is committed only once everything its message caused is in
 * the request topic.
 */
export interface TaskEventSourceShape {
  readonly messages: Stream.Stream<ConsumedMessage, ConsumeError>
  /** Moves the group past the message (commits `offset + 1`, no metadata). */
  readonly commit: (offset: ConsumedOffset) => Effect.Effect<void, ConsumeError>
  /**
   * Commits the group's position at the message itself (not yet past it) with `metadata`: a note a
   * fresh executor reads back with `recall` when the message is delivered again.
   */
  readonly hold: (offset: ConsumedOffset, metadata: string) => Effect.Effect<void, ConsumeError>
  /** The metadata of the group's committed position, when that position is this very message. */
  readonly recall: (offset: ConsumedOffset) => Effect.Effect<Option.Option<string>, ConsumeError>
}

export class TaskEventSource extends Context.Tag("executor/TaskEventSource")<TaskEventSource, TaskEventSourceShape>() {}
