// Raw kafkajs helpers for the integration tests: topics, plain produce, independent readers.
import { randomUUID } from "node:crypto"
import { Chunk, Data, Deferred, Duration, Effect, Ref, Runtime, Schedule } from "effect"
import { Kafka, logLevel } from "kafkajs"

export class TestKafkaError extends Data.TaggedError("TestKafkaError")<{ readonly message: string }> {}

const call = <A>(what: string, f: () => Promise<A>) =>
  Effect.tryPromise({ try: f, catch: (cause) => new TestKafkaError({ message: `${what}: ${String(cause)}` }) })

export const client = (brokers: string) =>
  new Kafka({ clientId: "it-helper", brokers: brokers.split(","), logLevel: logLevel.NOTHING, retry: { retries: 3 } })

export const uniqueName = (label: string) => `${label}-${randomUUID().slice(0, 8)}`

/**
 * Creates topics (1 partition unless told) and waits for their leaders. A broker that has just started may not
 * host the new partitions yet ("does not host this topic-partition"): retried for a while.
 */
export const createTopics = (brokers: string, topics: ReadonlyArray<string>, numPartitions = 1) =>
  Effect.scoped(
    Effect.gen(function* () {
      const admin = client(brokers).admin()
      yield* Effect.acquireRelease(call("admin connect", () => admin.connect()), () =>
        Effect.promise(() => admin.disconnect())
      )
      yield* call("createTopics", () =>
        admin.createTopics({
          topics: topics.map((topic) => ({ topic, numPartitions, replicationFactor: 1 })),
          waitForLeaders: true,
          timeout: 10_000
        })
      )
      yield* call("fetchTopicMetadata", () => admin.fetchTopicMetadata({ topics: [...topics] }))
    })
  ).pipe(Effect.retry(Schedule.spaced("1 second").pipe(Schedule.intersect(Schedule.recurs(15)))))

/** The group's committed (next) offset of partition 0, or "-1" if none. */
export const committedOffset = (brokers: string, groupId: string, topic: string) =>
  Effect.scoped(
    Effect.gen(function* () {
      const admin = client(brokers).admin()
      yield* Effect.acquireRelease(call("admin connect", () => admin.connect()), () =>
        Effect.promise(() => admin.disconnect())
      )
      const offsets = yield* call("fetchOffsets", () => admin.fetchOffsets({ groupId, topics: [topic] }))
      return offsets[0]?.partitions.find((p) => p.partition === 0)?.offset ?? "-1"
    })
  )

/** Plain (non-transactional) produce, e.g. task events written by the controller. */
export const produce = (brokers: string, topic: string, values: ReadonlyArray<string | null>) =>
  Effect.scoped(
    Effect.gen(function* () {
      const producer = client(brokers).producer({ allowAutoTopicCreation: false })
      yield* Effect.acquireRelease(call("producer connect", () => producer.connect()), () =>
        Effect.promise(() => producer.disconnect())
      )
      yield* call("send", () =>
        producer.send({ topic, messages: values.map((value, i) => ({ key: `event-${i}`, value })) })
      )
    })
  )

export interface Record {
  readonly partition: number
  readonly offset: string
  readonly key: string | null
  readonly value: string | null
  /** The record batch it came in: its first offset, and whether it was transactional. */
  readonly batch: { readonly firstOffset: string; readonly inTransaction: boolean }
}

interface BatchContext {
  readonly firstOffset?: string
  readonly inTransaction?: boolean
}

/**
 * Reads the topic from the start with a fresh group until `done(records)` holds, or fails after
 * `within`. `readUncommitted` shows records of open and aborted transactions too.
 */
export const readUntil = (
  brokers: string,
  topic: string,
  done: (records: ReadonlyArray<Record>) => boolean,
  options: { readonly readUncommitted?: boolean; readonly within?: Duration.DurationInput } = {}
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const runtime = yield* Effect.runtime<never>()
      const records = yield* Ref.make(Chunk.empty<Record>())
      const finished = yield* Deferred.make<void>()
      const consumer = client(brokers).consumer({
        groupId: uniqueName("it-reader"),
        readUncommitted: options.readUncommitted ?? false,
        maxWaitTimeInMs: 100
      })
      yield* Effect.acquireRelease(call("consumer connect", () => consumer.connect()), () =>
        Effect.promise(() => consumer.disconnect())
      )
      yield* call("subscribe", () => consumer.subscribe({ topic, fromBeginning: true }))
      yield* call("run", () =>
        consumer.run({
          autoCommit: false,
          eachMessage: async ({ message, partition }) => {
            const batch = (message as unknown as { readonly batchContext?: BatchContext }).batchContext ?? {}
            const record: Record = {
              partition,
              offset: message.offset,
              key: message.key === null ? null : message.key.toString(),
              value: message.value === null ? null : message.value.toString(),
              batch: { firstOffset: String(batch.firstOffset ?? ""), inTransaction: batch.inTransaction === true }
            }
            Runtime.runSync(runtime)(
              Ref.updateAndGet(records, Chunk.append(record)).pipe(
                Effect.flatMap((all) =>
                  done(Chunk.toReadonlyArray(all)) ? Deferred.succeed(finished, undefined) : Effect.void
                )
              )
            )
          }
        })
      )
      const seen = yield* Deferred.await(finished).pipe(
        Effect.timeout(options.within ?? "15 seconds"),
        Effect.zipRight(Ref.get(records)),
        Effect.catchTag("TimeoutException", () =>
          Effect.flatMap(Ref.get(records), (all) =>
            Effect.fail(new TestKafkaError({ message: `read ${topic}: gave up, saw ${JSON.stringify(Chunk.toReadonlyArray(all))}` }))
          )
        )
      )
      return Chunk.toReadonlyArray(seen)
    })
  )
