import { Context, DateTime, Effect, Either, HashMap, Layer, Metric, Option, Ref, Schema } from "effect"
import { CommandGroup, Commands } from "@executor/domain"
import * as Metrics from "./Metrics.js"
import { type OutgoingRecord, RequestLog, type RequestLogError } from "./RequestLog.js"

export class PublishError extends Schema.TaggedError<PublishError>()("PublishError", {
  /** `invalid` groups never go out and are not retried; `unavailable` is retried by the caller. */
  kind: Schema.Literal("invalid", "unavailable"),
  message: Schema.String
}) {}

/**
 * Publishes command groups exactly once for a consumer that applies every record it sees
 * (the controller reads uncommitted and never de-duplicates: docs/contract.md#what-the-controller-does-with-them).
 *
 * A group is first placed (its partition and that partition's end offset, the `Placement`); the
 * caller writes the placement down where a fresh executor finds it, then publishes. A send whose
 * outcome is unknown is never repeated blindly: the group is remembered as uncertain, and the next
 * attempt reads the partition back from the placement, looking for the group's request ids; only a
 * group that is not there is sent again, with a new `requestTime` (the controller drops commands
 * older than 5 minutes, so the time is that of the real send).
 */
export interface CommandPublisherShape {
  /** Validates `group` and finds where it goes; `since` places it at the first record at or after that time instead of the end. */
  readonly place: (group: CommandGroup.CommandGroup, since?: number) => Effect.Effect<CommandGroup.Placement, PublishError>
  /**
   * Publishes `group` at `placement` once. `maybeSent`: an earlier attempt (perhaps of another
   * executor process) may have sent it, so read back first.
   */
  readonly publish: (
    group: CommandGroup.CommandGroup,
    placement: CommandGroup.Placement,
    options?: { readonly maybeSent?: boolean }
  ) => Effect.Effect<void, PublishError>
  /** The ids of those placed groups that are already in the log: one read per partition, whatever their number. */
  readonly published: (
    pending: ReadonlyArray<readonly [CommandGroup.CommandGroup, CommandGroup.Placement]>
  ) => Effect.Effect<ReadonlySet<string>, PublishError>
}

export class CommandPublisher extends Context.Tag("executor/CommandPublisher")<
  CommandPublisher,
  CommandPublisherShape
>() {
  static readonly layer = (options: { readonly initiator?: string } = {}) =>
    Layer.effect(CommandPublisher, make(options.initiator ?? "executor"))
}

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
): Effect.Effect<OutgoingRecord, PublishError> =>
  Effect.gen(function* () {
    const envelope = Commands.toEnvelope(command, meta)
    const value = yield* Effect.try({
      try: () => JSON.stringify(envelope),
      catch: (cause) => new PublishError({ kind: "invalid", message: `not serialisable as JSON: ${String(cause)}` })
    })
    return { key: Commands.taskIdOf(command), value }
  })

const unavailable = (error: RequestLogError) => new PublishError({ kind: "unavailable", message: error.message })

const make = (initiator: string) =>
  Effect.gen(function* () {
    const log = yield* RequestLog
    // Groups whose last send had an unknown outcome, with the placement of that send: the next
    // attempt reads back from there first (also when its caller placed the group anew).
    const uncertain = yield* Ref.make(HashMap.empty<string, CommandGroup.Placement>())
    const uncertainOf = (group: CommandGroup.CommandGroup) => Effect.map(Ref.get(uncertain), HashMap.get(group.id))

    /** A group is sent only when every command is valid and about the group's task. */
    const validate = (group: CommandGroup.CommandGroup) =>
      Effect.gen(function* () {
        if (group.commands.length === 0) return yield* new PublishError({ kind: "invalid", message: "empty command group" })
        yield* validateCommands(group.commands)
        const strays = group.commands.filter((c) => Commands.taskIdOf(c) !== group.taskId)
        if (strays.length > 0) {
          return yield* new PublishError({ kind: "invalid", message: `commands about another task than ${group.taskId}` })
        }
      }).pipe(
        Effect.tapError((error) =>
          Effect.zipRight(
            Metric.increment(Metrics.commandsInvalid),
            Effect.logError("command group failed validation; nothing sent").pipe(
              Effect.annotateLogs({ event: "command_invalid", task: group.taskId, group: group.id, error: error.message })
            )
          )
        )
      )

    const place = (group: CommandGroup.CommandGroup, since?: number) =>
      Effect.gen(function* () {
        yield* validate(group)
        const earlier = yield* uncertainOf(group)
        if (Option.isSome(earlier)) return earlier.value
        const position = yield* log.place(group.taskId, since).pipe(Effect.mapError(unavailable))
        return { group: group.id, ...position } satisfies CommandGroup.Placement
      })

    const records = (group: CommandGroup.CommandGroup) =>
      Effect.gen(function* () {
        // the time of this very send, whatever happened to earlier attempts
        const requestTime = DateTime.formatIso(yield* DateTime.now)
        return yield* Effect.forEach(group.commands, (command, index) =>
          encodeCommand(command, { requestId: CommandGroup.requestId(group.id, index), requestTime, initiator })
        )
      })

    const readBack = (group: CommandGroup.CommandGroup, placement: CommandGroup.Placement) =>
      Effect.gen(function* () {
        const ids = new Set(CommandGroup.requestIds(group))
        const found = yield* log.find(placement.partition, placement.from, ids).pipe(Effect.mapError(unavailable))
        const there = found.size > 0
        yield* Metric.increment(Metric.tagged(Metrics.publishReadBacks, "outcome", there ? "found" : "missing"))
        if (there && found.size < ids.size) {
          yield* Effect.logError("part of a command group is in the log").pipe(
            Effect.annotateLogs({ task: group.taskId, group: group.id, found: found.size, of: ids.size })
          )
        }
        return there
      })

    const publish = (
      group: CommandGroup.CommandGroup,
      placement: CommandGroup.Placement,
      options: { readonly maybeSent?: boolean } = {}
    ) =>
      Effect.gen(function* () {
        yield* validate(group)
        const earlier = yield* uncertainOf(group)
        // where the uncertain send went (the lower bound of both when the caller places it there too)
        const from = Option.match(earlier, {
          onNone: () => placement,
          onSome: (e) => (e.partition === placement.partition ? { ...e, from: CommandGroup.minOffset(e.from, placement.from) } : e)
        })
        if ((options.maybeSent === true || Option.isSome(earlier)) && (yield* readBack(group, from))) {
          yield* Ref.update(uncertain, HashMap.remove(group.id))
          return
        }
        const batch = yield* records(group)
        yield* log.send(from.partition, batch).pipe(
          Effect.tapError((error) =>
            error.outcome === "uncertain"
              ? Effect.zipRight(Metric.increment(Metrics.publishUncertain), Ref.update(uncertain, HashMap.set(group.id, from)))
              : Effect.void
          ),
          Effect.mapError(unavailable)
        )
        yield* Ref.update(uncertain, HashMap.remove(group.id))
      }).pipe(Effect.withSpan("CommandPublisher.publish", { attributes: { group: group.id } }))

    const published = (pending: ReadonlyArray<readonly [CommandGroup.CommandGroup, CommandGroup.Placement]>) =>
      Effect.gen(function* () {
        const byPartition = new Map<number, { from: string; ids: Map<string, string> }>()
        for (const [group, placement] of pending) {
          const entry = byPartition.get(placement.partition) ?? { from: placement.from, ids: new Map<string, string>() }
          entry.from = CommandGroup.minOffset(entry.from, placement.from)
          for (const id of CommandGroup.requestIds(group)) entry.ids.set(id, group.id)
          byPartition.set(placement.partition, entry)
        }
        const found = new Set<string>()
        for (const [partition, { from, ids }] of byPartition) {
          const seen = yield* log.find(partition, from, new Set(ids.keys())).pipe(Effect.mapError(unavailable))
          for (const id of seen) {
            const group = ids.get(id)
            if (group !== undefined) found.add(group)
          }
        }
        yield* Ref.update(uncertain, HashMap.removeMany(found))
        return found as ReadonlySet<string>
      })

    return CommandPublisher.of({ place, publish, published })
  })
