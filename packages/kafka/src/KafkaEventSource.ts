import { type ConfigError, Deferred, Duration, Effect, Either, FiberSet, Layer, Option, Queue, Ref, Schedule, type Scope, Stream } from "effect"
import type { Consumer, EachMessagePayload } from "kafkajs"
import { Commands } from "@executor/domain"
import {
  type ConsumedMessage,
  type ConsumedOffset,
  ConsumeError,
  TaskEventSource,
  type TaskEventSourceShape
} from "@executor/executor"
import { attempt, cleanup, describeError, KafkaCallError, makeKafka, tlsOptions, withDeadline } from "./KafkaClient.js"
import * as KafkaConfig from "./KafkaConfig.js"
import type { KafkaConfigError } from "./KafkaConfig.js"
import { nextOffset } from "./Offsets.js"

interface Subscription {
  readonly consumer: Consumer
  /** Completed once kafkajs reports a crash: the consumer is gone, its stream fails. */
  readonly crashed: Deferred.Deferred<never, ConsumeError>
}

/**
 * `TaskEventSource` on a kafkajs consumer of the event topic (read-committed, group `groupId`, from
 * the oldest offset when the group has none, no auto-commit).
 *
 * Every run of `messages` is a fresh consumer that resumes from the group's committed offsets, and its
 * end (or interruption) disconnects it. kafkajs hands over one message at a time and waits until the
 * stream has taken it (a queue of one), so messages come out strictly in partition order and nothing
 * is read ahead beyond one message; while it waits it keeps heartbeating, so a slow handler does not
 * cost the group membership. kafkajs does not restart a crashed consumer (`restartOnFailure` false):
 * a crash fails the stream with `ConsumeError` and the caller resubscribes with its own back-off.
 *
 * `commit` stores `offset + 1` for the group: through the running consumer, or, when no consumer is
 * running (the stream crashed or ended, e.g. a handler commits after a broker outage), through a
 * short-lived member of the group. So `commit` never depends on the stream being alive, as with the
 * in-memory bus: a caller that retries a commit before it pulls again cannot deadlock. `hold`
 * stores the message's own offset (the group has not moved past it) with metadata the same way;
 * `recall` reads the group's committed offset and metadata back through an admin client.
 */
export const make = (config: KafkaConfig.KafkaConfig): Effect.Effect<TaskEventSourceShape, KafkaConfigError, Scope.Scope> =>
  Effect.gen(function* () {
    const topic = Commands.topics(config.topicPrefix).event
    const { timeouts } = config
    const live = yield* Ref.make(Option.none<Subscription>())

    // fail fast on unreadable TLS files; connections are made per subscription
    yield* tlsOptions(config)

    const toConsumeError = (error: KafkaCallError | KafkaConfigError) => new ConsumeError({ message: error.message })

    // A join waits for the members that died without leaving (a crash in a broker outage) until the
    // group expels them: after their session, at most the rebalance timeout. A tighter bound gives up
    // on a join about to succeed and leaves one more dead member for the next attempt to wait for.
    const joinTimeoutMs = Math.max(timeouts.sessionTimeoutMs, timeouts.rebalanceTimeoutMs) + timeouts.requestTimeoutMs

    /** A read-committed member of the executor's group; restarts are the Effect side's job. */
    const groupMember = (role: "consumer" | "committer") =>
      Effect.flatMap(makeKafka(config, role), (kafka) =>
        Effect.try({
          try: () =>
            kafka.consumer({
              groupId: config.groupId,
              readUncommitted: false,
              sessionTimeout: timeouts.sessionTimeoutMs,
              rebalanceTimeout: timeouts.rebalanceTimeoutMs,
              heartbeatInterval: timeouts.heartbeatIntervalMs,
              maxWaitTimeInMs: timeouts.maxWaitTimeMs,
              // the rest of `retry` is the client's (makeKafka): kafkajs merges it under this
              retry: { restartOnFailure: () => Promise.resolve(false) }
            }),
          catch: (cause) => new KafkaCallError({ operation: `create ${role}`, cause })
        })
      )

    const subscribe = Effect.gen(function* () {
      const consumer = yield* groupMember("consumer")
      const crashed = yield* Deferred.make<never, ConsumeError>()
      consumer.on(consumer.events.CRASH, (event) => {
        Deferred.unsafeDone(
          crashed,
          Effect.fail(new ConsumeError({ message: `consumer crashed: ${describeError(event.payload.error)}` }))
        )
      })
      yield* Effect.addFinalizer(() =>
        Effect.zipRight(
          Ref.update(live, Option.filter((subscription) => subscription.consumer !== consumer)),
          cleanup("consumer disconnect", () => consumer.disconnect(), timeouts.cleanupTimeoutMs)
        )
      )

      const queue = yield* Queue.bounded<ConsumedMessage>(1)
      const runPromise = yield* FiberSet.makeRuntimePromise<never>()
      const closing = yield* Deferred.make<void>()
      // registered last, so it runs first: a kafkajs callback waiting to hand over returns at once
      yield* Effect.addFinalizer(() => Deferred.succeed(closing, undefined))

      const keepMembership = (heartbeat: () => Promise<void>) =>
        Effect.tryPromise({ try: heartbeat, catch: (cause) => cause }).pipe(
          Effect.repeat(Schedule.spaced(Duration.millis(timeouts.heartbeatIntervalMs))),
          Effect.zipRight(Effect.never)
        )

      // resolves once the stream took the message (or the source closes); rejects with kafkajs's own
      // error when a heartbeat finds the group rebalancing, so kafkajs rejoins
      const eachMessage = (payload: EachMessagePayload): Promise<void> => {
        const message: ConsumedMessage = {
          value: payload.message.value === null ? null : payload.message.value.toString("utf8"),
          offset: { topic: payload.topic, partition: payload.partition, offset: payload.message.offset }
        }
        return runPromise(
          Queue.offer(queue, message).pipe(
            Effect.raceFirst(keepMembership(payload.heartbeat)),
            Effect.raceFirst(Deferred.await(closing)),
            Effect.either
          )
        ).then(
          (handedOver) => {
            if (Either.isLeft(handedOver)) throw handedOver.left
          },
          () => undefined // interrupted: the source is closing and the message stays uncommitted
        )
      }

      yield* withDeadline(
        "subscribe",
        Effect.zipRight(
          attempt("consumer connect", () => consumer.connect()),
          attempt("subscribe", () => consumer.subscribe({ topic, fromBeginning: true }))
        ),
        timeouts.operationTimeoutMs
      )
      // resolves once the consumer has joined the group (or crashed trying: see `crashed`)
      yield* withDeadline(
        "join",
        attempt("consumer run", () => consumer.run({ autoCommit: false, partitionsConsumedConcurrently: 1, eachMessage })),
        joinTimeoutMs
      )
      yield* Ref.set(live, Option.some({ consumer, crashed }))
      yield* Effect.logDebug(`subscribed to ${topic} as group ${config.groupId}`)

      return Stream.repeatEffect(Effect.raceFirst(Queue.take(queue), Deferred.await(crashed)))
    }).pipe(Effect.mapError(toConsumeError))

    // A short-lived member of the group commits for the consumer that is gone. (kafkajs's
    // `admin.setOffsets` does the same, but waits out a 5 s fetch before it commits.)
    const commitAsNewMember = (offset: ConsumedOffset, next: string, metadata: string | null) =>
      Effect.scoped(
        Effect.gen(function* () {
          const consumer = yield* groupMember("committer")
          yield* Effect.addFinalizer(() =>
            cleanup("committer disconnect", () => consumer.disconnect(), timeouts.cleanupTimeoutMs)
          )
          yield* attempt("committer connect", () => consumer.connect())
          yield* attempt("committer subscribe", () => consumer.subscribe({ topic: offset.topic }))
          // reads nothing: the batches are neither handled nor resolved
          yield* attempt("committer run", () =>
            consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: () => Promise.resolve() })
          )
          // throws (not rejects) when the group could not be joined, e.g. the broker went away meanwhile
          yield* Effect.try({
            try: () => consumer.pause([{ topic: offset.topic }]),
            catch: (cause) => new KafkaCallError({ operation: "committer pause", cause })
          })
          yield* attempt("commitOffsets", () =>
            consumer.commitOffsets([{ topic: offset.topic, partition: offset.partition, offset: next, metadata }])
          )
        })
      )

    const commitAt = (offset: ConsumedOffset, next: string, metadata: string | null) =>
      Effect.gen(function* () {
      const running = yield* Ref.get(live).pipe(
        Effect.flatMap(
          Option.match({
            onNone: () => Effect.succeedNone,
            onSome: (subscription) =>
              Effect.map(Deferred.isDone(subscription.crashed), (crashed) =>
                crashed ? Option.none() : Option.some(subscription.consumer)
              )
          })
        )
      )
      const committed = Option.match(running, {
        onSome: (consumer) =>
          attempt("commitOffsets", () =>
            consumer.commitOffsets([{ topic: offset.topic, partition: offset.partition, offset: next, metadata }])
          ),
        onNone: () => commitAsNewMember(offset, next, metadata)
      })
      yield* withDeadline("commit", committed, timeouts.operationTimeoutMs).pipe(Effect.mapError(toConsumeError))
      })

    const commit = Effect.fn("KafkaEventSource.commit")(function* (offset: ConsumedOffset) {
      yield* commitAt(offset, yield* nextOffset(offset.offset), null)
    })

    const hold = Effect.fn("KafkaEventSource.hold")(function* (offset: ConsumedOffset, metadata: string) {
      yield* commitAt(offset, offset.offset, metadata)
    })

    const recall = Effect.fn("KafkaEventSource.recall")(function* (offset: ConsumedOffset) {
      const committed = yield* Effect.scoped(
        Effect.gen(function* () {
          const admin = (yield* makeKafka(config, "recall")).admin()
          yield* Effect.addFinalizer(() => cleanup("admin disconnect", () => admin.disconnect(), timeouts.cleanupTimeoutMs))
          yield* attempt("admin connect", () => admin.connect())
          return yield* attempt("fetchOffsets", () => admin.fetchOffsets({ groupId: config.groupId, topics: [offset.topic] }))
        })
      ).pipe((effect) => withDeadline("recall", effect, timeouts.operationTimeoutMs), Effect.mapError(toConsumeError))
      const position = committed.find((t) => t.topic === offset.topic)?.partitions.find((p) => p.partition === offset.partition)
      return position !== undefined && position.offset === offset.offset && position.metadata !== null && position.metadata !== ""
        ? Option.some(position.metadata)
        : Option.none<string>()
    })

    return TaskEventSource.of({
      messages: Stream.unwrapScoped(subscribe.pipe(Effect.annotateLogs({ service: "KafkaEventSource" }))),
      commit,
      hold,
      recall
    })
  }).pipe(Effect.annotateLogs({ service: "KafkaEventSource" }))

/** `TaskEventSource` on a real broker. */
export const layer = (config: KafkaConfig.KafkaConfig): Layer.Layer<TaskEventSource, KafkaConfigError> =>
  Layer.scoped(TaskEventSource, make(config))

/** `layer` with the config from the environment (`KafkaConfig.fromEnv`). */
export const layerFromEnv: Layer.Layer<TaskEventSource, ConfigError.ConfigError | KafkaConfigError> = Layer.unwrapEffect(
  Effect.map(KafkaConfig.fromEnv, layer)
)
