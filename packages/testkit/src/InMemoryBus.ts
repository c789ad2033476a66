import { Chunk, Clock, Data, Effect, HashMap, Layer, Option, Random, Ref, Schema, Stream, SubscriptionRef } from "effect"
import { Commands, Partition } from "@executor/domain"
import {
  CommandPublisher,
  type ConsumedMessage,
  ConsumeError,
  RequestLog,
  RequestLogError,
  TaskEventSource
} from "@executor/executor"

/** The consumer group of the executor (executor.md §3.1). */
export const executorGroup = "agent-task-executor"

/**
 * A record of the log. There are no transactions: a record is visible to every reader from the
 * moment it is appended, like a record of a non-transactional producer on a real broker. Offsets
 * count from "0" per partition.
 */
export interface BusRecord {
  readonly topic: string
  readonly partition: number
  readonly offset: string
  readonly key: string | null
  readonly value: string
  /** Clock millis of the append (the record's timestamp). */
  readonly appendedAt: number
}

export interface BusMessage {
  readonly key: string | null
  readonly value: string
}

export class BusError extends Data.TaggedError("BusError")<{
  /**
   * `down`: the bus is down, nothing appended; `refused`: an injected failure, nothing appended;
   * `uncertain`: the batch was appended but its answer was lost (the caller cannot tell).
   */
  readonly reason: "down" | "refused" | "uncertain"
  readonly message: string
}> {}

/** A batch of the executor about to be appended. */
export interface Batch {
  readonly topic: string
  readonly partition: number
  readonly messages: ReadonlyArray<BusMessage>
}

/**
 * Runs before an executor batch is appended: a failure refuses it (nothing appended); an
 * interruption is a sender that died before its request reached the broker.
 */
export type BeforeAppend = (batch: Batch) => Effect.Effect<void, unknown>

/**
 * Runs after an executor batch was appended, before its answer: a failure loses the answer (the
 * sender sees an uncertain outcome); an interruption is a sender that died waiting for it.
 */
export type AfterAppend = (records: ReadonlyArray<BusRecord>) => Effect.Effect<void, unknown>

export interface ReadBack {
  readonly topic: string
  readonly partition: number
  readonly from: string
}

export interface InMemoryBus {
  readonly partitions: (topic: string) => number
  /** Kafka's default partitioner: murmur2 of the key modulo the topic's partition count. */
  readonly partitionOf: (topic: string, key: string) => number
  /**
   * The executor's producer: appends `messages` to one partition as one batch. Fails with `down`
   * while the bus is down, with `refused` for an injected failure; with `uncertain` when the answer
   * is lost (`loseNextAcks`, an `AfterAppend` hook that fails): then the records are in the log.
   */
  readonly append: (topic: string, partition: number, messages: ReadonlyArray<BusMessage>) => Effect.Effect<ReadonlyArray<BusRecord>, BusError>
  /**
   * A model's own message, partitioned by its key: held while the bus is down, appended once it is
   * up again. Injected faults and hooks do not apply to it.
   */
  readonly produce: (topic: string, key: string | null, value: string) => Effect.Effect<BusRecord>
  /** The offset the next record of the partition gets. */
  readonly endOffset: (topic: string, partition: number) => Effect.Effect<string, BusError>
  /** The first offset whose record was appended at or after `at` (the end offset when none). */
  readonly offsetForTime: (topic: string, partition: number, at: number) => Effect.Effect<string, BusError>
  /** The records of the partition from `from` to the end offset of now. Recorded in `readBacks`. */
  readonly read: (topic: string, partition: number, from: string) => Effect.Effect<ReadonlyArray<BusRecord>, BusError>
  /** Every `read` so far, in order. */
  readonly readBacks: Effect.Effect<ReadonlyArray<ReadBack>>
  /**
   * Records of every partition of `topic` from the group's committed positions (the oldest when
   * none), then live. Fails with `down` when subscribing while down or once the bus goes down;
   * running the stream again resumes from the then committed positions.
   */
  readonly consume: (group: string, topic: string) => Stream.Stream<BusRecord, BusError>
  /** Stores `offset + 1` as the group's next position (no metadata). */
  readonly commit: (group: string, topic: string, partition: number, offset: string) => Effect.Effect<void, BusError>
  /** Stores `offset` itself as the group's next position, with `metadata`. */
  readonly hold: (group: string, topic: string, partition: number, offset: string, metadata: string) => Effect.Effect<void, BusError>
  /** The group's next position, if it ever committed one. */
  readonly committedOffset: (group: string, topic: string, partition?: number) => Effect.Effect<Option.Option<string>>
  /** The metadata of the group's committed position ("" when none was given). */
  readonly committedMetadata: (group: string, topic: string, partition: number) => Effect.Effect<Option.Option<{ readonly offset: string; readonly metadata: string }>>
  /** A snapshot of the records of a topic, in append order. */
  readonly records: (topic: string) => Effect.Effect<ReadonlyArray<BusRecord>>
  /** Every record of every topic in append order, from the first one, then live. Never fails. */
  readonly appended: Stream.Stream<BusRecord>
  readonly setDown: (down: boolean) => Effect.Effect<void>
  readonly isDown: Effect.Effect<boolean>
  /** Completes once the bus is up (at once when it is). */
  readonly awaitUp: Effect.Effect<void>
  /** The next `n` executor appends are refused (nothing appended). */
  readonly failNextAppends: (n: number) => Effect.Effect<void>
  /** The next `n` executor appends reach the log, and their answers are lost (`uncertain`). */
  readonly loseNextAcks: (n: number) => Effect.Effect<void>
  readonly setBeforeAppend: (hook: BeforeAppend | undefined) => Effect.Effect<void>
  readonly setAfterAppend: (hook: AfterAppend | undefined) => Effect.Effect<void>
}

interface Position {
  readonly next: number
  readonly metadata: string
}

interface State {
  readonly down: boolean
  /** The records of each topic, every partition, in append order. */
  readonly topics: HashMap.HashMap<string, Chunk.Chunk<BusRecord>>
  /** The next offset of each (topic, partition). */
  readonly ends: HashMap.HashMap<string, number>
  readonly log: Chunk.Chunk<BusRecord>
  /** Committed positions, by (group, topic, partition). */
  readonly positions: HashMap.HashMap<string, Position>
}

const emptyState: State = {
  down: false,
  topics: HashMap.empty(),
  ends: HashMap.empty(),
  log: Chunk.empty(),
  positions: HashMap.empty()
}

const positionKey = (group: string, topic: string, partition: number): string => JSON.stringify([group, topic, partition])
const endKey = (topic: string, partition: number): string => JSON.stringify([topic, partition])

const topicRecords = (state: State, topic: string): Chunk.Chunk<BusRecord> =>
  Option.getOrElse(HashMap.get(state.topics, topic), () => Chunk.empty<BusRecord>())

const endOf = (state: State, topic: string, partition: number): number =>
  Option.getOrElse(HashMap.get(state.ends, endKey(topic, partition)), () => 0)

const parseOffset = (offset: string): Effect.Effect<number> =>
  /^(0|[1-9][0-9]*)$/.test(offset) && Number.isSafeInteger(Number(offset))
    ? Effect.succeed(Number(offset))
    : Effect.dieMessage(`InMemoryBus: invalid offset ${JSON.stringify(offset)}`)

const appendRecords = (
  state: State,
  topic: string,
  partition: number,
  messages: ReadonlyArray<BusMessage>,
  appendedAt: number
): readonly [ReadonlyArray<BusRecord>, State] => {
  let next = endOf(state, topic, partition)
  const appended = messages.map(
    (message): BusRecord => ({ topic, partition, offset: String(next++), key: message.key, value: message.value, appendedAt })
  )
  return [
    appended,
    {
      ...state,
      topics: HashMap.set(state.topics, topic, Chunk.appendAll(topicRecords(state, topic), Chunk.fromIterable(appended))),
      ends: HashMap.set(state.ends, endKey(topic, partition), next),
      log: Chunk.appendAll(state.log, Chunk.fromIterable(appended))
    }
  ]
}

const downError = (operation: string) => new BusError({ reason: "down", message: `bus is down (${operation})` })

const takeOne = (ref: Ref.Ref<number>) =>
  Ref.modify(ref, (n): readonly [boolean, number] => (n > 0 ? [true, n - 1] : [false, 0]))

export interface BusOptions {
  /** Partitions of a topic (default 1 for every topic). */
  readonly partitions?: (topic: string) => number
}

export const make = (options: BusOptions = {}): Effect.Effect<InMemoryBus> =>
  Effect.gen(function* () {
    const state = yield* SubscriptionRef.make(emptyState)
    const refuseNext = yield* Ref.make(0)
    const loseNext = yield* Ref.make(0)
    const beforeAppend = yield* Ref.make(Option.none<BeforeAppend>())
    const afterAppend = yield* Ref.make(Option.none<AfterAppend>())
    const readLog = yield* Ref.make<ReadonlyArray<ReadBack>>([])
    const partitions = (topic: string) => Math.max(1, Math.floor(options.partitions?.(topic) ?? 1))
    const partitionOf = (topic: string, key: string) => Partition.partitionOf(key, partitions(topic))

    const isDown = Effect.map(SubscriptionRef.get(state), (s) => s.down)

    const awaitUp = state.changes.pipe(
      Stream.filter((s) => !s.down),
      Stream.take(1),
      Stream.runDrain
    )

    /** One atomic state change, published to every subscriber, never cut in half by an interruption. */
    const appendAtomically = (topic: string, partition: number, messages: ReadonlyArray<BusMessage>, operation: string) =>
      SubscriptionRef.modifyEffect(state, (s) =>
        s.down
          ? Effect.fail(downError(operation))
          : Effect.map(Clock.currentTimeMillis, (now) => appendRecords(s, topic, partition, messages, now))
      ).pipe(Effect.uninterruptible)

    const append = Effect.fn("InMemoryBus.append")(function* (
      topic: string,
      partition: number,
      messages: ReadonlyArray<BusMessage>
    ) {
      if (yield* isDown) return yield* Effect.fail(downError("append"))
      if (partition < 0 || partition >= partitions(topic)) {
        return yield* Effect.dieMessage(`InMemoryBus: ${topic} has no partition ${partition}`)
      }
      if (yield* takeOne(refuseNext)) {
        return yield* Effect.fail(new BusError({ reason: "refused", message: "append refused (injected failure)" }))
      }
      const before = yield* Ref.get(beforeAppend)
      if (Option.isSome(before)) {
        yield* before.value({ topic, partition, messages }).pipe(
          Effect.mapError((cause) => new BusError({ reason: "refused", message: `append refused: ${String(cause)}` }))
        )
      }
      const records = yield* appendAtomically(topic, partition, messages, "append")
      if (yield* takeOne(loseNext)) {
        return yield* Effect.fail(new BusError({ reason: "uncertain", message: "answer lost after the append (injected)" }))
      }
      const after = yield* Ref.get(afterAppend)
      if (Option.isSome(after)) {
        yield* after.value(records).pipe(
          Effect.mapError((cause) => new BusError({ reason: "uncertain", message: `answer lost after the append: ${String(cause)}` }))
        )
      }
      return records
    })

    const produce = (topic: string, key: string | null, value: string): Effect.Effect<BusRecord> =>
      appendAtomically(topic, key === null ? 0 : partitionOf(topic, key), [{ key, value }], "produce").pipe(
        Effect.flatMap((records) =>
          Option.match(Option.fromNullable(records[0]), {
            onNone: () => Effect.dieMessage("InMemoryBus: produce appended nothing"),
            onSome: Effect.succeed
          })
        ),
        Effect.catchTag("BusError", () => Effect.zipRight(awaitUp, Effect.suspend(() => produce(topic, key, value))))
      )

    const whileUp = <A>(operation: string, f: (s: State) => A): Effect.Effect<A, BusError> =>
      Effect.flatMap(SubscriptionRef.get(state), (s) => (s.down ? Effect.fail(downError(operation)) : Effect.succeed(f(s))))

    const endOffset = (topic: string, partition: number) => whileUp("endOffset", (s) => String(endOf(s, topic, partition)))

    const offsetForTime = (topic: string, partition: number, at: number) =>
      whileUp("offsetForTime", (s) => {
        const first = Chunk.findFirst(topicRecords(s, topic), (r) => r.partition === partition && r.appendedAt >= at)
        return Option.match(first, { onNone: () => String(endOf(s, topic, partition)), onSome: (r) => r.offset })
      })

    const read = (topic: string, partition: number, from: string) =>
      Effect.gen(function* () {
        const start = yield* parseOffset(from)
        const found = yield* whileUp("read", (s) =>
          Chunk.toReadonlyArray(Chunk.filter(topicRecords(s, topic), (r) => r.partition === partition && Number(r.offset) >= start))
        )
        yield* Ref.update(readLog, (all) => [...all, { topic, partition, from }])
        return found
      })

    const positionOf = (s: State, group: string, topic: string, partition: number) =>
      HashMap.get(s.positions, positionKey(group, topic, partition))

    const consume = (group: string, topic: string): Stream.Stream<BusRecord, BusError> =>
      state.changes.pipe(
        Stream.mapAccumEffect(Option.none<number>(), (seen, s) => {
          if (s.down) return Effect.fail(downError("consume"))
          const records = topicRecords(s, topic)
          const fresh = Option.match(seen, {
            // first look: everything at or after the group's positions
            onNone: () =>
              Chunk.filter(records, (r) => Number(r.offset) >= Option.match(positionOf(s, group, topic, r.partition), { onNone: () => 0, onSome: (p) => p.next })),
            onSome: (n) => Chunk.drop(records, n)
          })
          return Effect.succeed([Option.some(Chunk.size(records)), fresh] as const)
        }),
        Stream.flattenChunks
      )

    const setPosition = (group: string, topic: string, partition: number, position: Position) =>
      SubscriptionRef.modifyEffect(state, (s) =>
        s.down
          ? Effect.fail(downError("commit"))
          : Effect.succeed([undefined, { ...s, positions: HashMap.set(s.positions, positionKey(group, topic, partition), position) }] as const)
      ).pipe(Effect.uninterruptible)

    const commit = Effect.fn("InMemoryBus.commit")(function* (group: string, topic: string, partition: number, offset: string) {
      yield* setPosition(group, topic, partition, { next: (yield* parseOffset(offset)) + 1, metadata: "" })
    })

    const hold = Effect.fn("InMemoryBus.hold")(function* (
      group: string,
      topic: string,
      partition: number,
      offset: string,
      metadata: string
    ) {
      yield* setPosition(group, topic, partition, { next: yield* parseOffset(offset), metadata })
    })

    const committedOffset = (group: string, topic: string, partition = 0): Effect.Effect<Option.Option<string>> =>
      Effect.map(SubscriptionRef.get(state), (s) => Option.map(positionOf(s, group, topic, partition), (p) => String(p.next)))

    const committedMetadata = (group: string, topic: string, partition: number) =>
      Effect.map(SubscriptionRef.get(state), (s) =>
        Option.map(positionOf(s, group, topic, partition), (p) => ({ offset: String(p.next), metadata: p.metadata }))
      )

    const records = (topic: string): Effect.Effect<ReadonlyArray<BusRecord>> =>
      Effect.map(SubscriptionRef.get(state), (s) => Chunk.toReadonlyArray(topicRecords(s, topic)))

    const appended: Stream.Stream<BusRecord> = state.changes.pipe(
      Stream.mapAccum(0, (position, s) => [Chunk.size(s.log), Chunk.drop(s.log, position)] as const),
      Stream.flattenChunks
    )

    return {
      partitions,
      partitionOf,
      append,
      produce,
      endOffset,
      offsetForTime,
      read,
      readBacks: Ref.get(readLog),
      consume,
      commit,
      hold,
      committedOffset,
      committedMetadata,
      records,
      appended,
      setDown: (down) => SubscriptionRef.update(state, (s) => ({ ...s, down })),
      isDown,
      awaitUp,
      failNextAppends: (n) => Ref.set(refuseNext, Math.max(0, Math.floor(n))),
      loseNextAcks: (n) => Ref.set(loseNext, Math.max(0, Math.floor(n))),
      setBeforeAppend: (hook) => Ref.set(beforeAppend, Option.fromNullable(hook)),
      setAfterAppend: (hook) => Ref.set(afterAppend, Option.fromNullable(hook))
    } satisfies InMemoryBus
  })

// --- Layers for the executor's ports -------------------------------------------------------------

/** A v4 UUID from Effect's `Random`, so a seeded run repeats its ids. */
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

const RequestIdOf = Schema.parseJson(Schema.Struct({ requestID: Schema.String }))
const decodeRequestId = Schema.decodeUnknownOption(RequestIdOf)

/** The request id of a record's envelope, if it has one. */
export const requestIdOf = (record: { readonly value: string }): Option.Option<string> =>
  Option.map(decodeRequestId(record.value), (envelope) => envelope.requestID)

/**
 * `RequestLog` on the bus: the request topic's partition of a key by Kafka's default partitioner,
 * appends through `append` (so injected faults and hooks apply), read-backs through `read`.
 */
export const layerRequestLog = (bus: InMemoryBus, options: { readonly topicPrefix: string }): Layer.Layer<RequestLog> => {
  const topic = Commands.topics(options.topicPrefix).request
  const toLogError = (error: BusError) =>
    new RequestLogError({ outcome: error.reason === "uncertain" ? "uncertain" : "unavailable", message: error.message })
  return Layer.succeed(
    RequestLog,
    RequestLog.of({
      place: (key, since) =>
        Effect.gen(function* () {
          const partition = bus.partitionOf(topic, key)
          const from = since === undefined ? yield* bus.endOffset(topic, partition) : yield* bus.offsetForTime(topic, partition, since)
          return { partition, from }
        }).pipe(Effect.mapError(toLogError)),
      send: (partition, records) => Effect.asVoid(bus.append(topic, partition, records)).pipe(Effect.mapError(toLogError)),
      find: (partition, from, requestIds) =>
        bus.read(topic, partition, from).pipe(
          Effect.map((records) => {
            const found = new Set<string>()
            for (const record of records) {
              const id = requestIdOf(record)
              if (Option.isSome(id) && requestIds.has(id.value)) found.add(id.value)
            }
            return found as ReadonlySet<string>
          }),
          Effect.mapError(toLogError)
        )
    })
  )
}

/** The executor's `CommandPublisher` over the bus's request topic (`layerRequestLog`). */
export const layerPublisher = (bus: InMemoryBus, options: { readonly topicPrefix: string; readonly initiator?: string }): Layer.Layer<CommandPublisher> =>
  CommandPublisher.layer(options.initiator === undefined ? {} : { initiator: options.initiator }).pipe(
    Layer.provide(layerRequestLog(bus, options))
  )

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
 * `TaskEventSource` on the bus: the event topic for the group, from its committed positions. Every
 * run of `messages` subscribes afresh, so a retrying consumer resumes from the committed offsets.
 */
export const layerEventSource = (bus: InMemoryBus, options: EventSourceOptions): Layer.Layer<TaskEventSource> => {
  const topic = Commands.topics(options.topicPrefix).event
  const group = options.group ?? executorGroup
  const toConsumeError = (error: BusError) => new ConsumeError({ message: error.message })
  return Layer.succeed(
    TaskEventSource,
    TaskEventSource.of({
      messages: bus.consume(group, topic).pipe(Stream.map(toConsumed), Stream.mapError(toConsumeError)),
      commit: (offset) => bus.commit(group, offset.topic, offset.partition, offset.offset).pipe(Effect.mapError(toConsumeError)),
      hold: (offset, metadata) =>
        bus.hold(group, offset.topic, offset.partition, offset.offset, metadata).pipe(Effect.mapError(toConsumeError)),
      recall: (offset) =>
        Effect.map(bus.committedMetadata(group, offset.topic, offset.partition), (position) =>
          Option.flatMap(position, (p) => (p.offset === offset.offset && p.metadata !== "" ? Option.some(p.metadata) : Option.none()))
        )
    })
  )
}
