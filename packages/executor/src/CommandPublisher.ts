import { Context, Effect, Either, Schema } from "effect"
import { Commands } from "@executor/domain"

/** The consumed position to commit together with a batch of commands (kafkajs `sendOffsets`). */
export interface ConsumedOffset {
  readonly topic: string
  readonly partition: number
  /** The offset of the handled message; the next one to read is `offset + 1`. */
  readonly offset: string
}

export class PublishError extends Schema.TaggedError<PublishError>()("PublishError", {
  /** `invalid` payloads never go out and are not retried; `unavailable` is retried. */
  kind: Schema.Literal("invalid", "unavailable"),
  message: Schema.String
}) {}

/**
 * Publishes commands on the request topic, keyed by task id, as one transaction: a read-committed
 * consumer sees all of a batch or none of it, in order.
 */
export interface CommandPublisherShape {
  readonly publish: (
    commands: ReadonlyArray<Commands.Command>,
    consumed?: ConsumedOffset
  ) => Effect.Effect<void, PublishError>
}

export class CommandPublisher extends Context.Tag("executor/CommandPublisher")<
  CommandPublisher,
  CommandPublisherShape
>() {}

/** Every payload is checked before anything is sent (REF §8.19); a bad one sends nothing. */
export const validateCommands = (commands: ReadonlyArray<Commands.Command>): Effect.Effect<void, PublishError> => {
  const problems = commands.flatMap((command, index) =>
    Either.match(Commands.validateCommand(command), {
      onLeft: (error) => [`commands[${index}]: ${error.message}`],
      onRight: () => []
    })
  )
  return problems.length === 0
    ? Effect.void
    : Effect.fail(new PublishError({ kind: "invalid", message: problems.join("\n") }))
}

/**
 * A command as a request-topic message: the envelope (ids and time from the caller) as JSON, keyed by
 * its task id. A payload that is not serialisable fails with `invalid`.
 */
export const encodeCommand = (
  command: Commands.Command,
  meta: { readonly requestId: string; readonly requestTime: string; readonly initiator: string }
): Effect.Effect<{ key: string; value: string }, PublishError> =>
  Effect.gen(function* () {
    const envelope = Commands.toEnvelope(command, meta)
    const value = yield* Effect.try({
      try: () => JSON.stringify(envelope),
      catch: (cause) => new PublishError({ kind: "invalid", message: `not serialisable as JSON: ${String(cause)}` })
    })
    return { key: Commands.taskIdOf(command), value }
  })
