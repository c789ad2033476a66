import { randomUUID } from "node:crypto"
import { type ConfigError, DateTime, Effect, Layer, Option, Ref, type Scope } from "effect"
import type { Message, Producer, Transaction } from "kafkajs"
import { Commands } from "@executor/domain"
import {
  type CommandPublisherShape,
  type ConsumedOffset,
  CommandPublisher,
  encodeCommand,
  PublishError,
  validateCommands
} from "@executor/executor"
import { attempt, cleanup, KafkaCallError, makeKafka, withDeadline } from "./KafkaClient.js"
import * as KafkaConfig from "./KafkaConfig.js"
import type { KafkaConfigError } from "./KafkaConfig.js"
import { nextOffset } from "./Offsets.js"

export interface PublisherOptions {
  /** Default `executor`. */
  readonly initiator?: string
  /**
   * Runs inside every transaction after the messages (and offsets) were sent, before the commit: a
   * failure or an interruption aborts the transaction. A test seam, like `InMemoryBus.setBeforeCommit`.
   */
  readonly beforeCommit?: Effect.Effect<void, unknown>
}


/**
 * `CommandPublisher` on an idempotent, transactional kafkajs producer. Each publish is one
 * transaction: every command on the request topic keyed by its task id, then the consumed offset
 * (`sendOffsets`, the next offset to read), then the commit. Publishes are serialised (one open
 * transaction per producer). On any failure, timeout or interruption the transaction is aborted and
 * the producer is thrown away (kafkajs can stay broken after a broker outage); the next publish
 * connects a fresh producer with the same transactional id, which also fences and aborts whatever
 * the old one left open. The caller retries `unavailable`.
 */
export const make = (
  config: KafkaConfig.KafkaConfig,
  options: PublisherOptions = {}
): Effect.Effect<CommandPublisherShape, KafkaConfigError, Scope.Scope> =>
  Effect.gen(function* () {
    const topic = Commands.topics(config.topicPrefix).request
    const initiator = options.initiator ?? "executor"
    const beforeCommit = options.beforeCommit ?? Effect.void
    const { timeouts } = config
    const lock = yield* Effect.makeSemaphore(1)
    const current = yield* Ref.make(Option.none<Producer>())

    const newProducer = Effect.gen(function* () {
      const kafka = yield* makeKafka(config, "producer")
      return yield* Effect.try({
        // throws synchronously on a bad combination (e.g. idempotent without retries)
        try: () =>
          kafka.producer({
            idempotent: true,
            maxInFlightRequests: 1,
            transactionalId: config.transactionalId,
            transactionTimeout: timeouts.transactionTimeoutMs
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
            // connect also fetches the producer id and epoch (InitProducerId), fencing an older producer
            yield* attempt("producer connect", () => producer.connect()).pipe(Effect.onError(() => disconnect(producer)))
            yield* Ref.set(current, Option.some(producer))
            return producer
          })
      })
    )

    const discard = Effect.flatMap(
      Ref.getAndSet(current, Option.none()),
      Option.match({ onNone: () => Effect.void, onSome: disconnect })
    )

    const inTransaction = (
      transaction: Transaction,
      messages: ReadonlyArray<Message>,
      consumed: { readonly offset: ConsumedOffset; readonly next: string } | undefined
    ) =>
      Effect.gen(function* () {
        if (messages.length > 0) {
          yield* attempt("send", () => transaction.send({ topic, messages: [...messages], acks: -1 }))
        }
        if (consumed !== undefined) {
          yield* attempt("sendOffsets", () =>
            transaction.sendOffsets({
              consumerGroupId: config.groupId,
              topics: [
                {
                  topic: consumed.offset.topic,
                  partitions: [{ partition: consumed.offset.partition, offset: consumed.next }]
                }
              ]
            })
          )
        }
        yield* beforeCommit.pipe(Effect.mapError((cause) => new KafkaCallError({ operation: "before commit", cause })))
        yield* attempt("commit", () => transaction.commit())
      }).pipe(
        Effect.onError(() => cleanup("abort", () => transaction.abort(), timeouts.cleanupTimeoutMs))
      )

    const toMessage = (command: Commands.Command): Effect.Effect<Message, PublishError> =>
      Effect.gen(function* () {
        const requestId = randomUUID()
        const requestTime = DateTime.formatIso(yield* DateTime.now)
        return yield* encodeCommand(command, { requestId, requestTime, initiator })
      })

    const publish = Effect.fn("KafkaPublisher.publish")(function* (
      commands: ReadonlyArray<Commands.Command>,
      consumed?: ConsumedOffset
    ) {
      yield* validateCommands(commands)
      const offsets = consumed === undefined ? undefined : { offset: consumed, next: yield* nextOffset(consumed.offset) }
      const messages = yield* Effect.forEach(commands, toMessage)
      if (messages.length === 0 && offsets === undefined) return
      yield* Effect.annotateCurrentSpan({ topic, messages: messages.length })
      yield* connected.pipe(
        Effect.flatMap((producer) =>
          Effect.flatMap(attempt("begin transaction", () => producer.transaction()), (transaction) =>
            inTransaction(transaction, messages, offsets)
          )
        ),
        (effect) => withDeadline("publish", effect, timeouts.publishTimeoutMs),
        // failed, timed out or interrupted: this producer is not trusted again
        Effect.onError(() => discard),
        Effect.mapError((error) => new PublishError({ kind: "unavailable", message: error.message })),
        lock.withPermits(1)
      )
    })

    yield* Effect.addFinalizer(() => lock.withPermits(1)(discard))

    return CommandPublisher.of({ publish })
  }).pipe(Effect.annotateLogs({ service: "KafkaPublisher" }))

/** `CommandPublisher` on a real broker; the producer is disconnected when the layer's scope closes. */
export const layer = (config: KafkaConfig.KafkaConfig, options?: PublisherOptions): Layer.Layer<CommandPublisher, KafkaConfigError> =>
  Layer.scoped(CommandPublisher, make(config, options))

/** `layer` with the config from the environment (`KafkaConfig.fromEnv`). */
export const layerFromEnv = (options?: PublisherOptions): Layer.Layer<CommandPublisher, ConfigError.ConfigError | KafkaConfigError> =>
  Layer.unwrapEffect(Effect.map(KafkaConfig.fromEnv, (config) => layer(config, options)))
