/**
 * Benchmark of publishing on a real broker: the exactly-once path of this executor (a placement,
 * then one non-transactional batch on the task's partition; for a spawn also the consumed offset,
 * committed after the batch) against the transactional path it replaced (one Kafka transaction:
 * the batch, `sendOffsets` for a spawn, commit), kept here as a small copy for the comparison.
 * Prints p50/p99 latency per spawn and per verdict, throughput with one publisher (the executor
 * serialises its sends) and with 8 concurrent callers, and the cost of a restart's read-back.
 *
 *   KAFKA_BROKERS=127.0.0.1:9092 node --import tsx scripts/bench-publish.ts [--n 500]
 *
 * Without KAFKA_BROKERS it starts a private broker from the jars of test/infra/prepare.sh.
 * Not a timed test: the figures depend on the machine.
 */
import { randomUUID } from "node:crypto"
import { Context, Effect, Either, Layer, Logger, LogLevel } from "effect"
import { Kafka, logLevel, Partitioners } from "kafkajs"
import { CommandGroup, Commands, Doctrine, Time } from "@executor/domain"
import { CommandPublisher, encodeCommand } from "@executor/executor"
import { KafkaConfig, KafkaRequestLog } from "@executor/kafka"
import { makeKafka } from "../packages/kafka/src/KafkaClient.js"
import { findBinaries, privateBroker } from "../packages/kafka/test/support/broker.js"
import { createTopics, produce } from "../packages/kafka/test/support/kafka.js"

const argument = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`)
  return i < 0 ? undefined : process.argv[i + 1]
}
const n = Number(argument("n") ?? 500)
const concurrency = 8

const percentile = (sorted: ReadonlyArray<number>, p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0
const summary = (label: string, samples: ReadonlyArray<number>, wallMs: number) => {
  const sorted = [...samples].sort((a, b) => a - b)
  return `${label.padEnd(44)} p50 ${percentile(sorted, 50).toFixed(2).padStart(7)} ms   p99 ${percentile(sorted, 99).toFixed(2).padStart(7)} ms   ${(
    (samples.length * 1000) /
    wallMs
  ).toFixed(0).padStart(6)} /s`
}

const spawnGroup = (i: number) => {
  const taskId = randomUUID()
  const jobName = `bench-${taskId.slice(0, 8)}-${i}`
  return CommandGroup.make(CommandGroup.spawnId(jobName), taskId, Doctrine.spawnCommands({ taskId, jobName, at: 0 }))
}
const verdictGroup = (i: number) => {
  const taskId = randomUUID()
  const jobName = `bench-${taskId.slice(0, 8)}-${i}`
  return CommandGroup.make(
    CommandGroup.verdictId(jobName, Time.formatIso(i)),
    taskId,
    Doctrine.zombieFailure({ taskId, jobName, reason: "pod_config_error", detail: "InvalidImageName", at: 0 })
  )
}

/** Runs `op` n times, `parallel` at a time; latencies in ms and the wall time. */
const measure = (parallel: number, op: (i: number) => Effect.Effect<void, unknown>) =>
  Effect.gen(function* () {
    const latencies: Array<number> = []
    const started = performance.now()
    yield* Effect.forEach(
      Array.from({ length: n }, (_, i) => i),
      (i) =>
        Effect.suspend(() => {
          const t0 = performance.now()
          return Effect.map(op(i), () => void latencies.push(performance.now() - t0))
        }),
      { concurrency: parallel, discard: true }
    )
    return { latencies, wallMs: performance.now() - started }
  })

/** A joined member of a consumer group, to commit consumed offsets the way the executor's consumer does. */
const groupMember = (brokers: string, groupId: string, topic: string) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const consumer = new Kafka({ clientId: "bench-consumer", brokers: [brokers], logLevel: logLevel.NOTHING }).consumer({ groupId })
      await consumer.connect()
      await consumer.subscribe({ topic, fromBeginning: true })
      await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: () => Promise.resolve() })
      consumer.pause([{ topic }])
      return consumer
    }),
    (consumer) => Effect.promise(() => consumer.disconnect())
  )

/**
 * The transactional path this executor used before (a small copy of it, for the comparison only),
 * on a client with the executor's own settings (timeouts, retries), as it had.
 */
const transactional = (config: KafkaConfig.KafkaConfig, topic: string, groupId: string) =>
  Effect.acquireRelease(
    Effect.flatMap(makeKafka(config, "bench-tx"), (kafka) =>
      Effect.promise(async () => {
        const producer = kafka.producer({
          idempotent: true,
          maxInFlightRequests: 1,
          transactionalId: `bench-tx-${randomUUID()}`,
          transactionTimeout: 30_000,
          createPartitioner: Partitioners.DefaultPartitioner
        })
        await producer.connect()
        return producer
      })
    ),
    (producer) => Effect.promise(() => producer.disconnect())
  ).pipe(
    Effect.map((producer) => {
      const lock = Effect.unsafeMakeSemaphore(1)
      return (group: CommandGroup.CommandGroup, consumed?: { readonly topic: string; readonly offset: string }) =>
        Effect.gen(function* () {
          const messages = yield* Effect.forEach(group.commands, (command) =>
            encodeCommand(command, { requestId: randomUUID(), requestTime: new Date().toISOString(), initiator: "executor" })
          )
          yield* Effect.promise(async () => {
            const transaction = await producer.transaction()
            try {
              await transaction.send({ topic, acks: -1, messages })
              if (consumed !== undefined) {
                await transaction.sendOffsets({
                  consumerGroupId: groupId,
                  topics: [{ topic: consumed.topic, partitions: [{ partition: 0, offset: consumed.offset }] }]
                })
              }
              await transaction.commit()
            } catch (error) {
              await transaction.abort()
              throw error
            }
          })
        }).pipe(lock.withPermits(1))
    })
  )

const bench = (brokers: string) =>
  Effect.gen(function* () {
    const prefix = `bench-${randomUUID().slice(0, 6)}`
    const topics = Commands.topics(prefix)
    yield* createTopics(brokers, [topics.event, topics.request])
    yield* produce(brokers, topics.event, ["e"])
    const groupId = `bench-group-${randomUUID().slice(0, 6)}`
    const config = Either.getOrThrow(KafkaConfig.make({ brokers, topicPrefix: prefix, groupId }))
    const publisher = Context.get(yield* Layer.build(KafkaRequestLog.layerPublisher(config)), CommandPublisher)
    const member = yield* groupMember(brokers, groupId, topics.event)
    const txPublish = yield* transactional(config, topics.request, groupId)

    const commitConsumed = Effect.promise(() => member.commitOffsets([{ topic: topics.event, partition: 0, offset: "1" }]))
    const newSpawn = (i: number) => {
      const group = spawnGroup(i)
      return Effect.flatMap(publisher.place(group), (placement) => publisher.publish(group, placement)).pipe(Effect.zipRight(commitConsumed))
    }
    const newVerdict = (i: number) => {
      const group = verdictGroup(i)
      return Effect.flatMap(publisher.place(group), (placement) => publisher.publish(group, placement))
    }
    const oldSpawn = (i: number) => txPublish(spawnGroup(i), { topic: topics.event, offset: "1" })
    const oldVerdict = (i: number) => txPublish(verdictGroup(i))

    // warm up connections and metadata on both paths
    yield* newSpawn(-1)
    yield* newVerdict(-1)
    yield* oldSpawn(-1)
    yield* oldVerdict(-1)

    const lines: Array<string> = [`publish benchmark: ${n} operations each, broker ${brokers}`]
    for (const [label, op] of [
      ["spawn, exactly-once (place + batch + offset)", newSpawn],
      ["spawn, transactional (batch + sendOffsets)", oldSpawn],
      ["verdict, exactly-once (place + batch)", newVerdict],
      ["verdict, transactional (batch)", oldVerdict]
    ] as const) {
      const one = yield* measure(1, op)
      lines.push(summary(`${label}, 1 caller`, one.latencies, one.wallMs))
      const many = yield* measure(concurrency, op)
      lines.push(summary(`${label}, ${concurrency} callers`, many.latencies, many.wallMs))
    }

    // what a restart costs: settling 200 placed groups (half of them in the log) over everything published above
    const pending = yield* Effect.forEach(Array.from({ length: 200 }, (_, i) => spawnGroup(100_000 + i)), (group) =>
      Effect.map(publisher.place(group), (placement) => [group, { ...placement, from: "0" }] as const)
    )
    for (const [group, placement] of pending.slice(0, 100)) yield* publisher.publish(group, placement)
    const t0 = performance.now()
    const found = yield* publisher.published(pending)
    const readBackMs = performance.now() - t0
    lines.push(
      `read-back at a restart: 200 groups placed at offset 0, ${found.size} found, one read of the whole partition: ${readBackMs.toFixed(0)} ms`
    )
    return lines
  })

const program = Effect.gen(function* () {
  const given = process.env["KAFKA_BROKERS"]
  if (given !== undefined && given !== "") return yield* bench(given)
  const binaries = findBinaries()
  if (binaries === undefined) return yield* Effect.dieMessage("set KAFKA_BROKERS or run test/infra/prepare.sh (for a private broker)")
  const broker = yield* privateBroker(binaries)
  return yield* bench(broker.brokers)
}).pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.Error))

Effect.runPromise(program).then(
  (lines) => {
    console.log(lines.join("\n"))
    process.exit(0)
  },
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  }
)
