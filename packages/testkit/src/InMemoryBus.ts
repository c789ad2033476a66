import {
  Chunk,
  Clock,
  Data,
  DateTime,
  Effect,
  HashMap,
  Layer,
  Option,
  Random,
  Ref,
  Stream,
  SubscriptionRef
} from "effect"
import { Commands } from "@executor/domain"
import {
  type ConsumedMessage,
  type ConsumedOffset,
  CommandPublisher,
  ConsumeError,
  encodeCommand,
  PublishError,
  TaskEventSource,
  validateCommands
} from "@executor/executor"

/** The consumer group of the executor (executor.md §3.1). */
export const executorGroup = "agent-task-executor"

/** A committed message. The bus has one partition per topic (0); offsets count from "0" per topic. */
export interface BusRecord {
  readonly topic: string
  readonly partition: number
  readonly offset: string
  readonly key: string | null
  readonly value: string
  /** Clock millis of the commit of the record's transaction. */
  readonly committedAt: number
}

export interface BusMessage {
  readonly topic: string
  readonly key: string | null
  readonly value: string
}

/** A consumer group position to commit; `offset` is the handled message, the next to read is `offset + 1`. */
export interface GroupOffset {
  readonly group: string
  readonly topic: string
  readonly partition: number
  readonly offset: string
}

export interface Transaction {
  readonly messages: ReadonlyArray<BusMessage>
  readonly offsets?: GroupOffset
}

/** Runs before a transaction commits; a failure (or an interruption: a crash) aborts it. */
export type BeforeCommit = (transaction: Transaction) => Effect.Effect<void, unknown>

export class BusError extends Data.TaggedError("BusError")<{
  readonly reason: "down" | "aborted"
  readonly message: string
}> {}

export interface InMemoryBus {
  /**
   * Appends all messages and commits the group offset together, or nothing: fails with `down` while the
   * bus is down, with `aborted` for an injected failure or a failing `beforeCommit` hook.
   */
  readonly transaction: (transaction: Transaction) => Effect.Effect<ReadonlyArray<BusRecord>, BusError>
  /**
   * A model's own message: held while the bus is down, committed once it is up again. Injected
   * transaction failures and the `beforeCommit` hook do not apply to it.
   */
  readonly produce: (topic: string, key: string | null, value: string) => Effect.Effect<BusRecord>
  /**
   * Read-committed records of partition 0 from the group's committed position (the oldest when none),
   * then live. Fails with `down` when subscribing while down or once the bus goes down; running the
   * stream again resumes from the then committed position.
   */
  readonly consume: (group: string, topic: string) => Stream.Stream<BusRecord, BusError>
  /** Stores `offset + 1` as the group's next position. */
  readonly commit: (group: string, topic: string, partition: number, offset: string) => Effect.Effect<void, BusError>
  /** The group's next position, if it ever committed one. */
  readonly committedOffset: (group: string, topic: string, partition?: number) => Effect.Effect<Option.Option<string>>
  /** A snapshot of the committed records of a topic. */
  readonly records: (topic: string) => Effect.Effect<ReadonlyArray<BusRecord>>
  /** Every committed record of every topic in commit order, from the first one, then live. Never fails. */
  readonly committed: Stream.Stream<BusRecord>
  readonly setDown: (down: boolean) => Effect.Effect<void>
  readonly isDown: Effect.Effect<boolean>
  /** Completes once the bus is up (at once when it is). */
  readonly awaitUp: Effect.Effect<void>
  /** The next `n` transactions abort. */
  readonly failNextTransactions: (n: number) => Effect.Effect<void>
  readonly setBeforeCommit: (hook: BeforeCommit | undefined) => Effect.Effect<void>
}

interface State {
  readonly down: boolean
  readonly topics: HashMap.HashMap<string, Chunk.Chunk<BusRecord>>
  readonly log: Chunk.Chunk<BusRecord>
  /** Next offset to read, by (group, topic, partition). */
  readonly positions: HashMap.HashMap<string, number>
}

const emptyState: State = { down: false, topics: HashMap.empty(), log: Chunk.empty(), positions: HashMap.empty() }

const positionKey = (group: string, topic: string, partition: number): string =>
  JSON.stringify([group, topic, partition])

const topicRecords = (state: State, topic: string): Chunk.Chunk<BusRecord> =>
  Option.getOrElse(HashMap.get(state.topics, topic), () => Chunk.empty<BusRecord>())

const nextPosition = (offset: string): Effect.Effect<number> =>
  /^(0|[1-9][0-9]*)$/.test(offset) && Number.isSafeInteger(Number(offset))
    ? Effect.succeed(Number(offset) + 1)
    : Effect.dieMessage(`InMemoryBus: invalid offset ${JSON.stringify(offset)}`)

const appendMessages = (
  state: State,
  messages: ReadonlyArray<BusMessage>,
  committedAt: number
): readonly [ReadonlyArray<BusRecord>, State] => {
  const appended: Array<BusRecord> = []
  let topics = state.topics
  let log = state.log
  for (const message of messages) {
    const existing = Option.getOrElse(HashMap.get(topics, message.topic), () => Chunk.empty<BusRecord>())
    const record: BusRecord = {
      topic: message.topic,
      partition: 0,
      offset: String(Chunk.size(existing)),
      key: message.key,
      value: message.value,
      committedAt
    }
    topics = HashMap.set(topics, message.topic, Chunk.append(existing, record))
    log = Chunk.append(log, record)
    appended.push(record)
  }
  return [appended, { ...state, topics, log }]
}

const moveGroupTo = (offsets: GroupOffset): Effect.Effect<(state: State) => State> =>
  Effect.map(nextPosition(offsets.offset), (position) => (state) => ({
    ...state,
    positions: HashMap.set(state.positions, positionKey(offsets.group, offsets.topic, offsets.partition), position)
  }))

const downError = (operation: string) => new BusError({ reason: "down", message: `bus is down (${operation})` })

export const make = (options?: { readonly beforeCommit?: BeforeCommit }): Effect.Effect<InMemoryBus> =>
  Effect.gen(function* () {
    const state = yield* SubscriptionRef.make(emptyState)
    const failNext = yield* Ref.make(0)
    const beforeCommit = yield* Ref.make(Option.fromNullable(options?.beforeCommit))

    const isDown = Effect.map(SubscriptionRef.get(state), (s) => s.down)

    const awaitUp = state.changes.pipe(
      Stream.filter((s) => !s.down),
      Stream.take(1),
      Stream.runDrain
    )

    // The commit point: one atomic state change (records and position together), published to every
    // subscriber under the same lock, and never cut in half by an interruption.
    const commitAtomically = (
      messages: ReadonlyArray<BusMessage>,
      offsets: GroupOffset | undefined,
      operation: string
    ): Effect.Effect<ReadonlyArray<BusRecord>, BusError> =>
      Effect.gen(function* () {
        const moveGroup = offsets === undefined ? (s: State) => s : yield* moveGroupTo(offsets)
        return yield* SubscriptionRef.modifyEffect(state, (s) =>
          s.down
            ? Effect.fail(downError(operation))
            : Effect.map(Clock.currentTimeMillis, (now) => {
                const [records, next] = appendMessages(s, messages, now)
                return [records, moveGroup(next)] as const
              })
        )
      }).pipe(Effect.uninterruptible)

    const transaction = Effect.fn("InMemoryBus.transaction")(function* (input: Transaction) {
      if (yield* isDown) return yield* Effect.fail(downError("transaction"))
      const injected = yield* Ref.modify(failNext, (n): readonly [boolean, number] => (n > 0 ? [true, n - 1] : [false, 0]))
      if (injected) {
        return yield* Effect.fail(new BusError({ reason: "aborted", message: "transaction aborted (injected failure)" }))
      }
      const hook = yield* Ref.get(beforeCommit)
      if (Option.isSome(hook)) {
        yield* hook.value(input).pipe(
          Effect.mapError(
            (cause) => new BusError({ reason: "aborted", message: `transaction aborted before commit: ${String(cause)}` })
          )
        )
      }
      return yield* commitAtomically(input.messages, input.offsets, "transaction")
    })

    const produce = (topic: string, key: string | null, value: string): Effect.Effect<BusRecord> =>
      commitAtomically([{ topic, key, value }], undefined, "produce").pipe(
        Effect.flatMap((records) =>
          Option.match(Option.fromNullable(records[0]), {
            onNone: () => Effect.dieMessage("InMemoryBus: produce appended nothing"),
            onSome: Effect.succeed
          })
        ),
        Effect.catchTag("BusError", () => Effect.zipRight(awaitUp, Effect.suspend(() => produce(topic, key, value))))
      )

    const consume = (group: string, topic: string): Stream.Stream<BusRecord, BusError> =>
      state.changes.pipe(
        Stream.mapAccumEffect(Option.none<number>(), (position, s) => {
          if (s.down) return Effect.fail(downError("consume"))
          const records = topicRecords(s, topic)
          const from = Option.getOrElse(position, () =>
            Option.getOrElse(HashMap.get(s.positions, positionKey(group, topic, 0)), () => 0)
          )
          return Effect.succeed([Option.some(Math.max(from, Chunk.size(records))), Chunk.drop(records, from)] as const)
        }),
        Stream.flattenChunks
      )

    const commit = Effect.fn("InMemoryBus.commit")(function* (
      group: string,
      topic: string,
      partition: number,
      offset: string
    ) {
      yield* commitAtomically([], { group, topic, partition, offset }, "commit")
    })

    const committedOffset = (group: string, topic: string, partition = 0): Effect.Effect<Option.Option<string>> =>
      Effect.map(SubscriptionRef.get(state), (s) =>
        Option.map(HashMap.get(s.positions, positionKey(group, topic, partition)), String)
      )

    const records = (topic: string): Effect.Effect<ReadonlyArray<BusRecord>> =>
      Effect.map(SubscriptionRef.get(state), (s) => Chunk.toReadonlyArray(topicRecords(s, topic)))

    const committed: Stream.Stream<BusRecord> = state.changes.pipe(
      Stream.mapAccum(0, (position, s) => [Chunk.size(s.log), Chunk.drop(s.log, position)] as const),
      Stream.flattenChunks
    )

    return {
      transaction,
      produce,
      consume,
      commit,
      committedOffset,
      records,
      committed,
      setDown: (down) => SubscriptionRef.update(state, (s) => ({ ...s, down })),
      isDown,
      awaitUp,
      failNextTransactions: (n) => Ref.set(failNext, Math.max(0, Math.floor(n))),
      setBeforeCommit: (hook) => Ref.set(beforeCommit, Option.fromNullable(hook))
    } satisfies InMemoryBus
  })

// --- Layers for the executor's ports -------------------------------------------------------------

export interface PublisherOptions {
  readonly topicPrefix: string
  /** Default `executor`. */
  readonly initiator?: string
  /** The group whose consumed offset a publish commits; default `agent-task-executor`. */
  readonly group?: string
}

/** A v4 UUID from Effect's `Random`, so a seeded run repeats its request ids. */
export const randomUuidV4: Effect.Effect<string> = Effect.map(
  Effect.replicateEffect(Random.nextIntBetween(0, 256), 16),
  (bytes) => {
    const hex = bytes
      .map((byte, index) => (index === 6 ? (byte & 0x0f) | 0x40 : index === 8 ? (byte & 0x3f) | 0x80 : byte))
      .map((byte) => byte.toString(16).padStart(2, "0"))
      .join("")
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
  }
)


/**
 * `CommandPublisher` on the bus: every command validated first (one invalid ⇒ nothing is sent), wrapped
 * in the envelope, keyed by its task id, on the request topic; the batch and the consumed offset (for
 * the executor's group) in one transaction.
 */
export const layerPublisher = (bus: InMemoryBus, options: PublisherOptions): Layer.Layer<CommandPublisher> => {
  const topic = Commands.topics(options.topicPrefix).request
  const initiator = options.initiator ?? "executor"
  const group = options.group ?? executorGroup

  const toMessage = (command: Commands.Command): Effect.Effect<BusMessage, PublishError> =>
    Effect.gen(function* () {
      const requestId = yield* randomUuidV4
      const requestTime = DateTime.formatIso(yield* DateTime.now)
      const { key, value } = yield* encodeCommand(command, { requestId, requestTime, initiator })
      return { topic, key, value }
    })

  const publish = Effect.fn("InMemoryBus.publish")(function* (
    commands: ReadonlyArray<Commands.Command>,
    consumed?: ConsumedOffset
  ) {
    yield* validateCommands(commands)
    const messages = yield* Effect.forEach(commands, toMessage)
    if (messages.length === 0 && consumed === undefined) return
    yield* bus
      .transaction(consumed === undefined ? { messages } : { messages, offsets: { group, ...consumed } })
      .pipe(Effect.mapError((error) => new PublishError({ kind: "unavailable", message: error.message })))
  })

  return Layer.succeed(CommandPublisher, CommandPublisher.of({ publish }))
}

export interface EventSourceOptions {
  readonly topicPrefix: string
  /** Default `agent-task-executor`. */
  readonly group?: string
}

const toConsumed = (record: BusRecord): ConsumedMessage => ({
  value: record.value === "" ? null : record.value,
  offset: { topic: record.topic, partition: record.partition, offset: record.offset }
})

/**
 * `TaskEventSource` on the bus: the event topic for the group, from its committed position. Every run of
 * `messages` subscribes afresh, so a retrying consumer resumes from the committed offset.
 */
export const layerEventSource = (bus: InMemoryBus, options: EventSourceOptions): Layer.Layer<TaskEventSource> => {
  const topic = Commands.topics(options.topicPrefix).event
  const group = options.group ?? executorGroup
  const toConsumeError = (error: BusError) => new ConsumeError({ message: error.message })
  return Layer.succeed(
    TaskEventSource,
    TaskEventSource.of({
      messages: bus.consume(group, topic).pipe(Stream.map(toConsumed), Stream.mapError(toConsumeError)),
      commit: (offset) =>
        bus.commit(group, offset.topic, offset.partition, offset.offset).pipe(Effect.mapError(toConsumeError))
    })
  )
}
