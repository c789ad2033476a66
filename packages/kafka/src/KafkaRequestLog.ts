import { Clock, type ConfigError, Effect, Layer, Option, Ref, Schema, type Scope } from "effect"
import { type Producer, Partitioners } from "kafkajs"
import { Commands, Partition } from "@executor/domain"
import {
  CommandPublisher,
  type OutgoingRecord,
  RequestLog,
  RequestLogError,
  type RequestLogShape
} from "@executor/executor"
import { attempt, cleanup, KafkaCallError, makeKafka, withDeadline } from "./KafkaClient.js"
import * as KafkaConfig from "./KafkaConfig.js"
import type { KafkaConfigError } from "./KafkaConfig.js"
import * as PartitionReader from "./PartitionReader.js"

export interface RequestLogOptions {
  /** Runs after each send's answer came (or its failure), before it is reported: a test seam. */
  readonly afterSend?: Effect.Effect<void, unknown>
}

const RequestIdOf = Schema.parseJson(Schema.Struct({ requestID: Schema.String }))
const decodeRequestId = Schema.decodeUnknownOption(RequestIdOf)

/**
 * `RequestLog` on a real broker: an idempotent, non-transactional kafkajs producer (every record is
 * visible to every reader the moment it is appended) and a group-less partition reader.
 *
 * What kafkajs 2.2.4 does with the idempotent producer's sequence numbers (checked on the broker
 * of test/infra, see docs/design.md): inside one `send`, its own retries resend the batch with the
 * same producer id, epoch and sequence, and the broker drops a copy it already has (also after a
 * broker kill -9 and restart). Once a `send` has failed, kafkajs has rolled the sequence back: the
 * next batch of the same size on that partition is acknowledged as a duplicate and silently
 * dropped if the failed one had been appended, and one of another size fails with
 * OUT_OF_ORDER_SEQUENCE_NUMBER. And a `send` keeps retrying after `producer.disconnect()`. Hence:
 * - a send is awaited until kafkajs settles it, never abandoned by a deadline;
 * - after any failed send the producer is thrown away (a fresh one gets a new producer id);
 * - a failed send is `uncertain` (the caller reads back), except a failed connect (`unavailable`);
 * - `find` first waits until no send of this adapter is still in flight (one that an interruption
 *   left behind), so nothing of ours can land after the read.
 *
 * Every batch names its partition (Kafka's default partitioner over the topic's partition count),
 * so the partition is known before the send. Records carry the send time as their timestamp.
 */
export const make = (
  config: KafkaConfig.KafkaConfig,
  options: RequestLogOptions = {}
): Effect.Effect<RequestLogShape, KafkaConfigError, Scope.Scope> =>
  Effect.gen(function* () {
    const topic = Commands.topics(config.topicPrefix).request
    const { timeouts } = config
    const afterSend = options.afterSend ?? Effect.void
    const lock = yield* Effect.makeSemaphore(1)
    const current = yield* Ref.make(Option.none<Producer>())
    // sends kafkajs may still be working on (an interrupted caller does not stop them)
    const inFlight = new Set<Promise<unknown>>()
    const reader = yield* PartitionReader.make(yield* makeKafka(config, "reader"), timeouts)

    const newProducer = Effect.gen(function* () {
      const kafka = yield* makeKafka(config, "producer")
      return yield* Effect.try({
        // throws synchronously on a bad combination (e.g. idempotent without retries)
        try: () =>
          kafka.producer({
            idempotent: true,
            maxInFlightRequests: 1,
            allowAutoTopicCreation: false,
            // every message names its partition; this only keeps kafkajs from warning
            createPartitioner: Partitioners.DefaultPartitioner
            // no `retry`: kafkajs gives the producer the client's (makeKafka)
          }),
        catch: (cause) => new KafkaCallError({ operation: "create producer", cause })
      })
    })

    // fail fast on a bad config or unreadable TLS files; the connection itself is made lazily
    yield* newProducer.pipe(Effect.catchTag("KafkaCallError", (error) => Effect.dieMessage(error.message)))

    const disconnect = (producer: Producer) =>
      cleanup("producer disconnect", () => producer.disconnect(), timeouts.cleanupTimeoutMs)

    const connected: Effect.Effect<Producer, KafkaCallError | KafkaConfigError> = Effect.flatMap(
      Ref.get(current),
      Option.match({
        onSome: Effect.succeed,
        onNone: () =>
          Effect.gen(function* () {
            const producer = yield* newProducer
            // connect also fetches a fresh producer id (InitProducerId)
            yield* withDeadline(
              "producer connect",
              attempt("producer connect", () => producer.connect()),
              timeouts.publishTimeoutMs
            ).pipe(Effect.onError(() => disconnect(producer)))
            yield* Ref.set(current, Option.some(producer))
            return producer
          })
      })
    )

    const discard = Effect.flatMap(
      Ref.getAndSet(current, Option.none()),
      Option.match({ onNone: () => Effect.void, onSome: disconnect })
    )

    const unavailable = (error: { readonly message: string }) => new RequestLogError({ outcome: "unavailable", message: error.message })
    const uncertain = (error: { readonly message: string }) => new RequestLogError({ outcome: "uncertain", message: error.message })

    /** The kafkajs send, tracked until it settles whatever happens to the fiber that waits for it. */
    const tracked = (producer: Producer, partition: number, records: ReadonlyArray<OutgoingRecord>, timestamp: number) =>
      attempt("send", () => {
        const promise = producer.send({
          topic,
          acks: -1,
          messages: records.map((r) => ({ key: r.key, value: r.value, partition, timestamp: String(timestamp) }))
        })
        inFlight.add(promise)
        const settle = () => void inFlight.delete(promise)
        promise.then(settle, settle)
        return promise
      })

    const send = (partition: number, records: ReadonlyArray<OutgoingRecord>) =>
      Effect.gen(function* () {
        if (records.length === 0) return
        const producer = yield* connected.pipe(Effect.mapError(unavailable))
        const timestamp = yield* Clock.currentTimeMillis
        yield* tracked(producer, partition, records, timestamp).pipe(
          Effect.zipLeft(afterSend.pipe(Effect.mapError((cause) => new KafkaCallError({ operation: "after send", cause })))),
          // failed or interrupted: this producer is not trusted again
          Effect.onError(() => discard),
          Effect.mapError(uncertain)
        )
      }).pipe(lock.withPermits(1), Effect.withSpan("KafkaRequestLog.send", { attributes: { topic, partition, records: records.length } }))

    const place = (key: string, since?: number) =>
      Effect.gen(function* () {
        const count = yield* reader.partitions(topic)
        const partition = Partition.partitionOf(key, count)
        const from = yield* reader.offset(topic, partition, since === undefined ? "latest" : { timestamp: since })
        return { partition, from }
      }).pipe(Effect.mapError(unavailable))

    const settled = Effect.promise(() => Promise.allSettled([...inFlight]))

    const find = (partition: number, from: string, requestIds: ReadonlySet<string>) =>
      Effect.gen(function* () {
        yield* settled
        const [start, end] = yield* Effect.all([reader.offset(topic, partition, "earliest"), reader.offset(topic, partition, "latest")])
        if (BigInt(from) < BigInt(start)) {
          // retention removed the start of the range: what is left is read; a group that was only
          // in the removed part cannot be found (placements are written seconds before their send)
          yield* Effect.logWarning(`read-back of ${topic}/${partition} from ${from}: the log starts at ${start}`)
        }
        const records = yield* reader.read(topic, partition, BigInt(from) < BigInt(start) ? start : from, end)
        const found = new Set<string>()
        for (const record of records) {
          const id = Option.flatMap(Option.fromNullable(record.value), decodeRequestId)
          if (Option.isSome(id) && requestIds.has(id.value.requestID)) found.add(id.value.requestID)
        }
        return found as ReadonlySet<string>
      }).pipe(Effect.mapError(unavailable), Effect.withSpan("KafkaRequestLog.find", { attributes: { topic, partition, from } }))

    yield* Effect.addFinalizer(() => lock.withPermits(1)(discard))

    return RequestLog.of({ place, send, find })
  }).pipe(Effect.annotateLogs({ service: "KafkaRequestLog" }))

/** `RequestLog` on a real broker; producer and reader are disconnected when the layer's scope closes. */
export const layer = (config: KafkaConfig.KafkaConfig, options?: RequestLogOptions): Layer.Layer<RequestLog, KafkaConfigError> =>
  Layer.scoped(RequestLog, make(config, options))

/** The executor's `CommandPublisher` on a real broker. */
export const layerPublisher = (config: KafkaConfig.KafkaConfig, options?: RequestLogOptions): Layer.Layer<CommandPublisher, KafkaConfigError> =>
  CommandPublisher.layer().pipe(Layer.provide(layer(config, options)))

/** `layerPublisher` with the config from the environment (`KafkaConfig.fromEnv`). */
export const layerPublisherFromEnv = (
  options?: RequestLogOptions
): Layer.Layer<CommandPublisher, ConfigError.ConfigError | KafkaConfigError> =>
  Layer.unwrapEffect(Effect.map(KafkaConfig.fromEnv, (config) => layerPublisher(config, options)))
