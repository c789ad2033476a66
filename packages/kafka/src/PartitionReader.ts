import { Duration, Effect, Option, Ref, Schedule, Schema, type Scope } from "effect"
import type { Kafka } from "kafkajs"
import { attempt, cleanup, KafkaCallError, withDeadline } from "./KafkaClient.js"
import type { KafkaTimeouts } from "./KafkaConfig.js"

/**
 * The part of kafkajs's `Cluster` this reader uses. kafkajs has no public way to read a partition
 * from an offset without joining a consumer group (no `assign`), and a group per read-back would
 * cost a join (3 s of `group.initial.rebalance.delay.ms` on a default broker) and leave groups
 * behind. Its consumer and admin are built on this `Cluster` and its `Broker`s; kafkajs 2.2.4 is
 * pinned (and no longer released), and every answer is decoded with Schema before use.
 */
interface Cluster {
  connect(): Promise<void>
  disconnect(): Promise<void>
  addTargetTopic(topic: string): Promise<void>
  refreshMetadataIfNecessary(): Promise<void>
  findTopicPartitionMetadata(topic: string): unknown
  findLeaderForPartitions(topic: string, partitions: ReadonlyArray<number>): unknown
  findBroker(node: { readonly nodeId: string }): Promise<{ fetch(request: unknown): Promise<unknown> }>
  fetchTopicsOffset(topics: ReadonlyArray<unknown>): Promise<unknown>
}

type ClusterFactory = (options: {
  readonly metadataMaxAge?: number
  readonly allowAutoTopicCreation?: boolean
  readonly isolationLevel?: number
}) => Cluster

/** kafkajs's `ISOLATION_LEVEL.READ_UNCOMMITTED`: every appended record, like the controller. */
const readUncommitted = 0

/** The client's own cluster factory, so the reader has the client's brokers, TLS, retries and logger. */
const clusterFactory = (kafka: Kafka): Option.Option<ClusterFactory> => {
  const key = Object.getOwnPropertySymbols(kafka).find((symbol) => symbol.description === "private:Kafka:createCluster")
  const factory: unknown = key === undefined ? undefined : (kafka as unknown as Record<symbol, unknown>)[key]
  return typeof factory === "function" ? Option.some(factory as ClusterFactory) : Option.none()
}

const PartitionMetadata = Schema.Array(Schema.Struct({ partitionId: Schema.Number, leader: Schema.Number }))
const Leaders = Schema.Record({ key: Schema.String, value: Schema.Array(Schema.Number) })
const TopicOffsets = Schema.Array(
  Schema.Struct({ topic: Schema.String, partitions: Schema.Array(Schema.Struct({ partition: Schema.Number, offset: Schema.String })) })
)
const Fetched = Schema.Struct({
  responses: Schema.Array(
    Schema.Struct({
      topicName: Schema.String,
      partitions: Schema.Array(
        Schema.Struct({
          partition: Schema.Number,
          errorCode: Schema.Number,
          highWatermark: Schema.String,
          messages: Schema.Array(
            Schema.Struct({ offset: Schema.String, value: Schema.NullOr(Schema.Uint8ArrayFromSelf) })
          )
        })
      )
    })
  )
})

export interface ReadRecord {
  readonly offset: string
  readonly value: string | null
}

export type OffsetSpec = "earliest" | "latest" | { readonly timestamp: number }

export interface PartitionReader {
  /** The topic's partition count (from metadata, refreshed as kafkajs refreshes it). */
  readonly partitions: (topic: string) => Effect.Effect<number, KafkaCallError>
  readonly offset: (topic: string, partition: number, at: OffsetSpec) => Effect.Effect<string, KafkaCallError>
  /** The records of `partition` at offsets `from` (inclusive) to `to` (exclusive), read uncommitted. */
  readonly read: (topic: string, partition: number, from: string, to: string) => Effect.Effect<ReadonlyArray<ReadRecord>, KafkaCallError>
}

const decode =
  <A, I>(schema: Schema.Schema<A, I>, operation: string) =>
  (value: unknown): Effect.Effect<A, KafkaCallError> =>
    Schema.decodeUnknown(schema)(value).pipe(Effect.mapError((cause) => new KafkaCallError({ operation, cause })))

const textDecoder = new TextDecoder()

/**
 * A group-less, read-uncommitted reader of partitions on one long-lived connection, made anew after
 * any failure (kafkajs can stay broken after a broker outage). Disconnected when the scope closes.
 */
export const make = (kafka: Kafka, timeouts: KafkaTimeouts): Effect.Effect<PartitionReader, never, Scope.Scope> =>
  Effect.gen(function* () {
    const factory = clusterFactory(kafka)
    const current = yield* Ref.make(Option.none<Cluster>())

    const discard = Effect.flatMap(
      Ref.getAndSet(current, Option.none()),
      Option.match({
        onNone: () => Effect.void,
        onSome: (cluster) => cleanup("reader disconnect", () => cluster.disconnect(), timeouts.cleanupTimeoutMs)
      })
    )

    const connected: Effect.Effect<Cluster, KafkaCallError> = Effect.flatMap(
      Ref.get(current),
      Option.match({
        onSome: Effect.succeed,
        onNone: () =>
          Effect.gen(function* () {
            if (Option.isNone(factory)) {
              return yield* new KafkaCallError({ operation: "reader", cause: "this kafkajs has no cluster factory (kafkajs 2.2.4 expected)" })
            }
            const cluster = factory.value({ allowAutoTopicCreation: false, isolationLevel: readUncommitted })
            yield* attempt("reader connect", () => cluster.connect()).pipe(
              Effect.onError(() => cleanup("reader disconnect", () => cluster.disconnect(), timeouts.cleanupTimeoutMs))
            )
            yield* Ref.set(current, Option.some(cluster))
            return cluster
          })
      })
    )

    /**
     * One call on the cluster, bounded; a failure discards the connection, and the call is tried
     * twice more on a fresh one (fresh metadata: a leader that moved, a topic just created).
     */
    const using = <A>(operation: string, f: (cluster: Cluster) => Effect.Effect<A, KafkaCallError>) =>
      withDeadline(operation, Effect.flatMap(connected, f), timeouts.publishTimeoutMs).pipe(
        Effect.tapError(() => discard),
        Effect.retry({ times: 2, schedule: Schedule.spaced(Duration.millis(timeouts.initialRetryTimeMs)) })
      )

    const withTopic = (cluster: Cluster, topic: string) =>
      Effect.zipRight(
        attempt("metadata", () => cluster.addTargetTopic(topic)),
        attempt("metadata", () => cluster.refreshMetadataIfNecessary())
      )

    const partitions = (topic: string) =>
      using("partitions", (cluster) =>
        Effect.gen(function* () {
          yield* withTopic(cluster, topic)
          const metadata = yield* decode(PartitionMetadata, "metadata")(cluster.findTopicPartitionMetadata(topic))
          if (metadata.length === 0) return yield* new KafkaCallError({ operation: "metadata", cause: `no partitions of ${topic}` })
          return metadata.length
        })
      )

    const offset = (topic: string, partition: number, at: OffsetSpec): Effect.Effect<string, KafkaCallError> =>
      using("list offsets", (cluster) =>
        Effect.gen(function* () {
          yield* withTopic(cluster, topic)
          const spec =
            at === "earliest" ? { fromBeginning: true } : at === "latest" ? { fromBeginning: false } : { fromTimestamp: at.timestamp }
          const answer = yield* attempt("list offsets", () => cluster.fetchTopicsOffset([{ topic, partitions: [{ partition }], ...spec }]))
          const offsets = yield* decode(TopicOffsets, "list offsets")(answer)
          const found = offsets.find((t) => t.topic === topic)?.partitions.find((p) => p.partition === partition)
          if (found === undefined) return yield* new KafkaCallError({ operation: "list offsets", cause: `no offset for ${topic}/${partition}` })
          // a time after the last record: Kafka answers -1, which means the end
          if (found.offset === "-1") return yield* offset(topic, partition, "latest")
          return found.offset
        })
      )

    const fetchOnce = (cluster: Cluster, topic: string, partition: number, position: bigint) =>
      Effect.gen(function* () {
        const leaders = yield* decode(Leaders, "fetch")(cluster.findLeaderForPartitions(topic, [partition]))
        const leader = Object.keys(leaders)[0]
        if (leader === undefined) return yield* new KafkaCallError({ operation: "fetch", cause: `no leader for ${topic}/${partition}` })
        const broker = yield* attempt("fetch", () => cluster.findBroker({ nodeId: leader }))
        const answer = yield* attempt("fetch", () =>
          broker.fetch({
            isolationLevel: readUncommitted,
            maxWaitTime: 100,
            minBytes: 1,
            maxBytes: 16 * 1024 * 1024,
            topics: [{ topic, partitions: [{ partition, fetchOffset: position.toString(), maxBytes: 8 * 1024 * 1024 }] }]
          })
        )
        const fetched = yield* decode(Fetched, "fetch")(answer)
        const response = fetched.responses.find((r) => r.topicName === topic)?.partitions.find((p) => p.partition === partition)
        if (response === undefined) return yield* new KafkaCallError({ operation: "fetch", cause: `no answer for ${topic}/${partition}` })
        if (response.errorCode !== 0) return yield* new KafkaCallError({ operation: "fetch", cause: `error code ${response.errorCode}` })
        return response.messages
      })

    const read = (topic: string, partition: number, from: string, to: string) =>
      using("read", (cluster) =>
        Effect.gen(function* () {
          yield* withTopic(cluster, topic)
          const end = BigInt(to)
          const records: Array<ReadRecord> = []
          let position = BigInt(from)
          while (position < end) {
            const messages = yield* fetchOnce(cluster, topic, partition, position)
            // a fetch answers whole batches: records before `position` are dropped
            const fresh = messages.filter((m) => BigInt(m.offset) >= position && BigInt(m.offset) < end)
            const last = messages.reduce((max, m) => (BigInt(m.offset) > max ? BigInt(m.offset) : max), position - 1n)
            if (last < position) return yield* new KafkaCallError({ operation: "read", cause: `no progress at ${topic}/${partition}@${position}` })
            for (const m of fresh) records.push({ offset: m.offset, value: m.value === null ? null : textDecoder.decode(m.value) })
            position = last + 1n
          }
          return records
        })
      )

    yield* Effect.addFinalizer(() => discard)
    return { partitions, offset, read } satisfies PartitionReader
  })
