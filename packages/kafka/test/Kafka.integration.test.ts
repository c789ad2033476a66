// The Kafka adapters against a real Kafka 4.x broker. Needs KAFKA_BROKERS (host:port of a broker
// such as the one test/infra/up.sh starts); skipped without it. The outage test starts its own
// private broker from the jars of test/infra/prepare.sh and is skipped when they are missing.
import { assert, describe, it } from "@effect/vitest"
import { Chunk, Clock, DateTime, Effect, Either, Exit, Fiber, Logger, LogLevel, Option, Ref, Schedule, Schema, Stream } from "effect"
import { Commands } from "@executor/domain"
import { CommandPublisher, type ConsumedMessage, PublishError } from "@executor/executor"
import { KafkaConfig, KafkaEventSource, KafkaPublisher } from "@executor/kafka"
import { findBinaries, privateBroker } from "./support/broker.js"
import { committedOffset, createTopics, produce, readUntil, type Record, uniqueName } from "./support/kafka.js"

const brokers = process.env["KAFKA_BROKERS"]
const binaries = findBinaries()
if (brokers === undefined || brokers === "") {
  console.warn("Kafka.integration.test.ts: KAFKA_BROKERS is unset, skipping the real-broker tests")
}

const taskA = "4aa57614-8835-4992-87e9-ca483ddbeae6"
const taskB = "9d1f6e0a-0a4b-4e51-9a77-1f2f1c1b2c3d"
const uuidV4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

const increment = (taskIdentifier: string) =>
  Commands.incrementFrontmatter({ taskIdentifier, field: "trigger_count", delta: 1 })
const setJob = (taskIdentifier: string, job: string) =>
  Commands.updateFrontmatter({ taskIdentifier, updates: { current_job: job } })

const decodeEnvelope = Schema.decodeUnknownSync(Schema.parseJson(Commands.CommandEnvelope))
const jobOf = (record: Record): string | undefined => {
  const data = decodeEnvelope(record.value).data as { readonly updates?: { readonly current_job?: unknown } }
  return typeof data.updates?.current_job === "string" ? data.updates.current_job : undefined
}
const jobs = (records: ReadonlyArray<Record>) => records.flatMap((record) => jobOf(record) ?? [])
const seesJob = (job: string) => (records: ReadonlyArray<Record>) => jobs(records).includes(job)

/** Small bounds so that failures show in seconds. */
const testTimeouts: Partial<KafkaConfig.KafkaTimeouts> = {
  connectionTimeoutMs: 1_000,
  requestTimeoutMs: 3_000,
  retries: 2,
  initialRetryTimeMs: 100,
  maxRetryTimeMs: 1_000,
  transactionTimeoutMs: 15_000,
  publishTimeoutMs: 8_000,
  operationTimeoutMs: 15_000,
  cleanupTimeoutMs: 1_500,
  sessionTimeoutMs: 10_000,
  heartbeatIntervalMs: 1_000,
  maxWaitTimeMs: 100
}

/** Fresh topics (1 partition), group and transactional id per test: tests share the broker. */
const setup = (address: string, timeouts: Partial<KafkaConfig.KafkaTimeouts> = testTimeouts) =>
  Effect.gen(function* () {
    const topicPrefix = uniqueName("it")
    const topics = Commands.topics(topicPrefix)
    yield* createTopics(address, [topics.event, topics.request])
    const config = Either.getOrThrow(
      KafkaConfig.make({
        brokers: address,
        topicPrefix,
        groupId: uniqueName("it-group"),
        transactionalId: uniqueName("it-tx"),
        timeouts
      })
    )
    return { config, topics }
  })

const quiet = Logger.minimumLogLevel(process.env["KAFKA_IT_LOG"] === "debug" ? LogLevel.Debug : LogLevel.Error)
const elapsedSince = (start: number) => Effect.map(Clock.currentTimeMillis, (now) => now - start)

describe.skipIf(brokers === undefined || brokers === "")("Kafka adapters on a real broker (KAFKA_BROKERS)", () => {
  const address = brokers ?? ""

  it.scopedLive("a batch is one transaction: a read-committed reader sees every command, keyed by task id, in order, in the envelope", () =>
    Effect.gen(function* () {
      const { config, topics } = yield* setup(address)
      const commands = [increment(taskA), setJob(taskA, "claude-agent-4aa57614-1"), increment(taskB)]
      const before = yield* DateTime.now
      yield* Effect.gen(function* () {
        const publisher = yield* CommandPublisher
        yield* publisher.publish(commands)
      }).pipe(Effect.provide(KafkaPublisher.layer(config)))

      const records = yield* readUntil(address, topics.request, (seen) => seen.length >= 3)
      assert.deepStrictEqual(records.map((r) => r.key), [taskA, taskA, taskB])
      assert.deepStrictEqual(records.map((r) => r.offset), ["0", "1", "2"])
      const envelopes = records.map((record) => decodeEnvelope(record.value))
      envelopes.forEach((envelope, i) => {
        assert.strictEqual(envelope.initiator, "executor")
        assert.strictEqual(envelope.id, "")
        assert.deepStrictEqual(envelope.header, {})
        assert.strictEqual(envelope.operation, commands[i]?._tag)
        assert.deepStrictEqual(envelope.data, commands[i]?.data)
        assert.match(envelope.requestID, uuidV4)
        const time = Option.getOrThrow(DateTime.make(envelope.requestTime))
        assert.isTrue(DateTime.lessThanOrEqualTo(DateTime.subtract(before, { seconds: 1 }), time))
      })
      assert.strictEqual(new Set(envelopes.map((e) => e.requestID)).size, 3)
    }).pipe(Effect.provide(quiet))
  )

  it.scopedLive("a failed or interrupted transaction is aborted: read-committed readers never see it; the next publish works", () =>
    Effect.gen(function* () {
      const { config, topics } = yield* setup(address)
      const mode = yield* Ref.make<"commit" | "fail" | "hang">("commit")
      const publisher = yield* KafkaPublisher.make(config, {
        beforeCommit: Effect.flatMap(Ref.get(mode), (m) =>
          m === "fail" ? Effect.fail("injected failure before commit") : m === "hang" ? Effect.never : Effect.void
        )
      })
      yield* publisher.publish([setJob(taskA, "committed-1")])

      yield* Ref.set(mode, "fail")
      const failed = yield* Effect.flip(publisher.publish([setJob(taskA, "aborted-fail"), increment(taskA)]))
      assert.strictEqual(failed.kind, "unavailable")
      assert.include(failed.message, "injected failure before commit")

      yield* Ref.set(mode, "hang")
      const interrupted = yield* publisher.publish([setJob(taskA, "aborted-interrupted")]).pipe(
        Effect.timeout("1 second"),
        Effect.exit
      )
      assert.isTrue(Exit.isFailure(interrupted))

      yield* Ref.set(mode, "commit")
      yield* publisher.publish([setJob(taskA, "committed-2")])

      const committed = yield* readUntil(address, topics.request, seesJob("committed-2"))
      assert.deepStrictEqual(jobs(committed), ["committed-1", "committed-2"])
      // they were written, then aborted: a read-uncommitted reader (the controller's default) sees them
      const uncommitted = yield* readUntil(address, topics.request, seesJob("committed-2"), { readUncommitted: true })
      assert.deepStrictEqual(jobs(uncommitted), ["committed-1", "aborted-fail", "aborted-interrupted", "committed-2"])
    }).pipe(Effect.provide(quiet))
  )

  it.scopedLive("concurrent publishes are serialised (one open transaction per producer) and all commit", () =>
    Effect.gen(function* () {
      const { config, topics } = yield* setup(address)
      const publisher = yield* KafkaPublisher.make(config)
      const batches = Array.from({ length: 6 }, (_, i) => [setJob(taskA, `job-${i}`), increment(taskA)])
      yield* Effect.forEach(batches, (batch) => publisher.publish(batch), { concurrency: "unbounded", discard: true })
      const records = yield* readUntil(address, topics.request, (seen) => seen.length >= 12)
      assert.strictEqual(records.length, 12)
      // each batch stays contiguous: its update is directly followed by its increment
      records.forEach((record, i) => {
        const operation = decodeEnvelope(record.value).operation
        assert.strictEqual(operation, i % 2 === 0 ? "update-frontmatter" : "increment-frontmatter")
      })
      assert.sameMembers(jobs(records), batches.map((_, i) => `job-${i}`))
    }).pipe(Effect.provide(quiet))
  )

  it.scopedLive("invalid commands fail with `invalid` and nothing is sent", () =>
    Effect.gen(function* () {
      const { config, topics } = yield* setup(address)
      const publisher = yield* KafkaPublisher.make(config)
      const invalid = yield* Effect.flip(
        publisher.publish([setJob(taskA, "never-1"), Commands.updateFrontmatter({ taskIdentifier: "", updates: {} })])
      )
      assert.deepStrictEqual([invalid._tag, invalid.kind], ["PublishError", "invalid"])
      assert.include(invalid.message, "commands[1]")
      const unserialisable = yield* Effect.flip(
        publisher.publish([Commands.updateFrontmatter({ taskIdentifier: taskA, updates: { big: 1n } })])
      )
      assert.strictEqual(unserialisable.kind, "invalid")

      yield* publisher.publish([setJob(taskA, "marker")])
      const all = yield* readUntil(address, topics.request, seesJob("marker"), { readUncommitted: true })
      assert.deepStrictEqual(jobs(all), ["marker"])
      assert.deepStrictEqual(all.map((r) => r.offset), ["0"])
    }).pipe(Effect.provide(quiet))
  )

  it.scopedLive("sendOffsets moves the group's offset exactly when the commands commit; a new consumer resumes after it", () =>
    Effect.gen(function* () {
      const { config, topics } = yield* setup(address)
      yield* produce(address, topics.event, ["e0", "e1", "e2"])
      const mode = yield* Ref.make<"commit" | "fail">("commit")
      const publisher = yield* KafkaPublisher.make(config, {
        beforeCommit: Effect.flatMap(Ref.get(mode), (m) => (m === "fail" ? Effect.fail("injected") : Effect.void))
      })
      const source = yield* KafkaEventSource.make(config)
      const offsetNow = committedOffset(address, config.groupId, topics.event)

      yield* Effect.scoped(
        Effect.gen(function* () {
          // the consumer stays a live member of the group while the publisher commits its offsets
          const pull = yield* Stream.toPull(source.messages)
          const first = Chunk.unsafeHead(yield* pull)
          assert.deepStrictEqual(first, { value: "e0", offset: { topic: topics.event, partition: 0, offset: "0" } })
          assert.strictEqual(yield* offsetNow, "-1")

          yield* publisher.publish([increment(taskA), setJob(taskA, "job-for-e0")], first.offset)
          assert.strictEqual(yield* offsetNow, "1")

          const second = Chunk.unsafeHead(yield* pull)
          assert.strictEqual(second.offset.offset, "1")
          yield* Ref.set(mode, "fail")
          const failed = yield* Effect.flip(publisher.publish([setJob(taskA, "job-for-e1")], second.offset))
          assert.strictEqual(failed.kind, "unavailable")
          assert.strictEqual(yield* offsetNow, "1")
        })
      )

      // a new consumer of the group resumes at the committed position
      const resumed = yield* source.messages.pipe(Stream.take(1), Stream.runCollect)
      assert.deepStrictEqual(Chunk.toReadonlyArray(resumed).map((m) => [m.offset.offset, m.value]), [["1", "e1"]])

      // no commands, only the offset: still one transaction
      yield* Ref.set(mode, "commit")
      yield* publisher.publish([], Chunk.unsafeHead(resumed).offset)
      assert.strictEqual(yield* offsetNow, "2")
      const commands = yield* readUntil(address, topics.request, seesJob("job-for-e0"))
      assert.deepStrictEqual(jobs(commands), ["job-for-e0"])
      assert.strictEqual(commands.length, 2)
    }).pipe(Effect.provide(quiet))
  )

  it.scopedLive("a message handed out but not committed is delivered again to the next consumer of the group", () =>
    Effect.gen(function* () {
      const { config, topics } = yield* setup(address)
      yield* produce(address, topics.event, ["e0", "e1", "e2"])
      const source = yield* KafkaEventSource.make(config)

      // handle two, commit only the first (from inside the stream: the consumer is running)
      const handled = yield* source.messages.pipe(
        Stream.take(2),
        Stream.tap((message) => (message.offset.offset === "0" ? source.commit(message.offset) : Effect.void)),
        Stream.runCollect
      )
      assert.deepStrictEqual(Chunk.toReadonlyArray(handled).map((m) => m.value), ["e0", "e1"])
      assert.strictEqual(yield* committedOffset(address, config.groupId, topics.event), "1")

      const again = yield* source.messages.pipe(Stream.take(2), Stream.runCollect)
      assert.deepStrictEqual(Chunk.toReadonlyArray(again).map((m) => [m.offset.offset, m.value]), [
        ["1", "e1"],
        ["2", "e2"]
      ])
    }).pipe(Effect.provide(quiet))
  )

  it.scopedLive("messages come out in order with raw values (null kept); commit stores offset+1, also once the stream ended", () =>
    Effect.gen(function* () {
      const { config, topics } = yield* setup(address)
      yield* produce(address, topics.event, ["e0", "{not json", null, "", "e4"])
      const source = yield* KafkaEventSource.make(config)
      const seen = yield* source.messages.pipe(
        Stream.take(4),
        Stream.tap((message: ConsumedMessage) => source.commit(message.offset)),
        Stream.runCollect
      )
      assert.deepStrictEqual(Chunk.toReadonlyArray(seen).map((m) => [m.offset.offset, m.value]), [
        ["0", "e0"],
        ["1", "{not json"],
        ["2", null],
        ["3", ""]
      ])
      assert.strictEqual(yield* committedOffset(address, config.groupId, topics.event), "4")

      // take the last one, and commit it after its stream is gone (no live member: a plain group commit)
      const last = Chunk.unsafeHead(yield* source.messages.pipe(Stream.take(1), Stream.runCollect))
      assert.deepStrictEqual([last.offset.offset, last.value], ["4", "e4"])
      yield* source.commit(last.offset)
      assert.strictEqual(yield* committedOffset(address, config.groupId, topics.event), "5")
    }).pipe(Effect.provide(quiet))
  )

  it.scopedLive("a handler slower than the session timeout keeps the group membership (no rebalance, no redelivery)", () =>
    Effect.gen(function* () {
      // 6 s is the broker's default group.min.session.timeout.ms
      const timeouts = { ...testTimeouts, sessionTimeoutMs: 6_000, heartbeatIntervalMs: 1_000 }
      const { config, topics } = yield* setup(address, timeouts)
      yield* produce(address, topics.event, ["e0", "e1", "e2", "e3"])
      const source = yield* KafkaEventSource.make(config)
      const seen = yield* source.messages.pipe(
        Stream.take(4),
        Stream.tap((message) =>
          Effect.zipRight(
            message.offset.offset === "0" ? Effect.sleep("8 seconds") : Effect.void,
            source.commit(message.offset)
          )
        ),
        Stream.runCollect
      )
      assert.deepStrictEqual(Chunk.toReadonlyArray(seen).map((m) => m.offset.offset), ["0", "1", "2", "3"])
      assert.strictEqual(yield* committedOffset(address, config.groupId, topics.event), "4")
    }).pipe(Effect.provide(quiet)),
    30_000
  )

  describe.skipIf(binaries === undefined)("broker outage (private broker from the cached jars)", () => {
    it.scopedLive(
      "a hung or stopped broker makes publish fail `unavailable` within its bound and the consumer stream fail; after a restart a fresh producer publishes",
      () =>
        Effect.gen(function* () {
          const broker = yield* privateBroker(binaries!)
          const timeouts = { ...testTimeouts, publishTimeoutMs: 5_000 }
          const { config, topics } = yield* setup(broker.brokers, timeouts)
          const bound = timeouts.publishTimeoutMs + 2 * (timeouts.cleanupTimeoutMs ?? 0) + 2_000
          const publisher = yield* KafkaPublisher.make(config)
          const source = yield* KafkaEventSource.make(config)
          yield* publisher.publish([setJob(taskA, "before-outage")])

          // hung broker (SIGSTOP): requests time out
          yield* broker.pause
          let start = yield* Clock.currentTimeMillis
          const whileHung = yield* Effect.flip(publisher.publish([setJob(taskA, "while-hung")]))
          const hungMs = yield* elapsedSince(start)
          assert.strictEqual(whileHung.kind, "unavailable")
          assert.isBelow(hungMs, bound)
          yield* broker.resume

          const retrying = (job: string) =>
            publisher.publish([setJob(taskA, job)]).pipe(
              Effect.retry({ schedule: Schedule.spaced("500 millis"), times: 60, while: (e: PublishError) => e.kind === "unavailable" })
            )
          start = yield* Clock.currentTimeMillis
          yield* retrying("after-resume")
          const resumeMs = yield* elapsedSince(start)

          // stopped broker (SIGTERM): connections are refused; the consumer stream fails too
          yield* produce(broker.brokers, topics.event, ["e0"])
          const consuming = yield* source.messages.pipe(Stream.runDrain, Effect.fork)
          yield* broker.stop
          start = yield* Clock.currentTimeMillis
          const whileDown = yield* Effect.flip(publisher.publish([setJob(taskA, "while-down")]))
          const downMs = yield* elapsedSince(start)
          assert.strictEqual(whileDown.kind, "unavailable")
          assert.isBelow(downMs, bound)
          const consumeExit = yield* Fiber.await(consuming).pipe(Effect.timeout("30 seconds"))
          assert.isTrue(Exit.isFailure(consumeExit))
          const consumeFailMs = yield* elapsedSince(start)

          start = yield* Clock.currentTimeMillis
          yield* broker.start
          const restartMs = yield* elapsedSince(start)
          start = yield* Clock.currentTimeMillis
          yield* retrying("after-restart")
          const recoverMs = yield* elapsedSince(start)

          const committed = yield* readUntil(broker.brokers, topics.request, seesJob("after-restart"), { within: "30 seconds" })
          assert.deepStrictEqual(jobs(committed), ["before-outage", "after-resume", "after-restart"])
          // the event consumer resumes too
          const event = yield* source.messages.pipe(Stream.take(1), Stream.runCollect)
          assert.deepStrictEqual(Chunk.toReadonlyArray(event).map((m) => m.value), ["e0"])
          console.info(
            `outage timings (ms): hung publish failed after ${hungMs}, recovered after resume in ${resumeMs}; ` +
              `stopped publish failed after ${downMs}, consumer stream failed after ${consumeFailMs}; ` +
              `broker restart ${restartMs}, first publish after restart ${recoverMs}\n` +
              `  hung: ${whileHung.message}\n  down: ${whileDown.message}`
          )
        }).pipe(Effect.provide(quiet)),
      180_000
    )
  })
})
