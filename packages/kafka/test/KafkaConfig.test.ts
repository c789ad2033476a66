import { mkdtemp, rm, writeFile } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Exit } from "effect"
import { KafkaConfig, nextOffset } from "@executor/kafka"
import { tlsOptions } from "../src/KafkaClient.js"

const parsed = (raw: string) => Either.getOrThrow(KafkaConfig.parseBrokers(raw))
const problem = (raw: string) => Either.match(KafkaConfig.parseBrokers(raw), { onLeft: (e) => e.message, onRight: () => "ok" })

describe("KafkaConfig.parseBrokers", () => {
  it("plain host:port entries, comma-separated, blanks ignored", () => {
    assert.deepStrictEqual(parsed("kafka-0:9092, kafka-1.kafka:9093,,10.0.0.7:19092 "), {
      addresses: ["kafka-0:9092", "kafka-1.kafka:9093", "10.0.0.7:19092"],
      tls: false
    })
    assert.deepStrictEqual(parsed("plaintext://kafka:9092"), { addresses: ["kafka:9092"], tls: false })
  })

  it("tls:// means mTLS for the client; the scheme is stripped for kafkajs", () => {
    assert.deepStrictEqual(parsed("tls://kafka-0.kafka:9093,TLS://kafka-1.kafka:9093"), {
      addresses: ["kafka-0.kafka:9093", "kafka-1.kafka:9093"],
      tls: true
    })
  })

  it("rejects empty lists, missing or bad ports, unknown schemes and mixed schemes", () => {
    assert.strictEqual(problem(""), "no Kafka brokers configured")
    assert.strictEqual(problem(" , "), "no Kafka brokers configured")
    assert.include(problem("kafka"), `broker "kafka": expected host:port`)
    assert.include(problem("kafka:0"), "expected host:port")
    assert.include(problem("kafka:70000"), "expected host:port")
    assert.include(problem("kafka:90x"), "expected host:port")
    assert.include(problem("tls://"), "expected host:port")
    assert.include(problem("sasl_ssl://kafka:9093"), "unsupported scheme sasl_ssl://")
    assert.include(problem("tls://a:9093,b:9092"), "mix tls:// and plaintext")
    // every bad entry is named, not only the first
    const both = problem("a,b:1")
    assert.include(both, `"a"`)
    assert.notInclude(both, `"b:1"`)
  })
})

describe("KafkaConfig.make and fromEnv", () => {
  it("defaults: files of executor.md §3.4, group agent-task-executor", () => {
    const config = Either.getOrThrow(KafkaConfig.make({ brokers: "tls://kafka:9093" }))
    assert.deepStrictEqual(config.tlsFiles, {
      ca: "/server-cert/file",
      cert: "/client-cert/file",
      key: "/client-key/file"
    })
    assert.strictEqual(config.groupId, "agent-task-executor")
    assert.strictEqual(config.topicPrefix, "")
    assert.strictEqual(config.clientId, "agent-task-executor")
  })

  it("refuses retries 0 (kafkajs would throw synchronously for the idempotent producer)", () => {
    const result = KafkaConfig.make({ brokers: "k:9092", timeouts: { retries: 0 } })
    assert.isTrue(Either.isLeft(result))
  })

  it.effect("reads the environment", () =>
    Effect.gen(function* () {
      const config = yield* KafkaConfig.fromEnv
      assert.deepStrictEqual(config.brokers, { addresses: ["a:9093", "b:9093"], tls: true })
      assert.strictEqual(config.topicPrefix, "develop")
      assert.strictEqual(config.groupId, "agent-task-executor")
      assert.deepStrictEqual(config.tlsFiles, { ca: "/etc/ca.pem", cert: "/client-cert/file", key: "/client-key/file" })
      const bad = yield* Effect.exit(
        KafkaConfig.fromEnv.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["KAFKA_BROKERS", "tls://a:1,b:2"]]))))
      )
      assert.isTrue(Exit.isFailure(bad))
    }).pipe(
      Effect.withConfigProvider(
        ConfigProvider.fromMap(
          new Map([
            ["KAFKA_BROKERS", "tls://a:9093,tls://b:9093"],
            ["TOPIC_PREFIX", "develop"],
            ["KAFKA_GROUP_ID", "agent-task-executor"],
            ["KAFKA_TLS_CA_FILE", "/etc/ca.pem"]
          ])
        )
      )
    )
  )

  it.effect("KAFKA_SESSION_TIMEOUT_MS and KAFKA_REBALANCE_TIMEOUT_MS tune the consumer (heartbeat a third of the session); out of range is refused", () =>
    Effect.gen(function* () {
      const read = (entries: ReadonlyArray<readonly [string, string]>) =>
        KafkaConfig.fromEnv.pipe(Effect.withConfigProvider(ConfigProvider.fromMap(new Map([["KAFKA_BROKERS", "k:9092"], ...entries]))))
      const defaults = yield* read([])
      assert.deepStrictEqual(
        [defaults.timeouts.sessionTimeoutMs, defaults.timeouts.rebalanceTimeoutMs, defaults.timeouts.heartbeatIntervalMs],
        [30_000, 30_000, 3_000]
      )
      const tuned = yield* read([
        ["KAFKA_SESSION_TIMEOUT_MS", "6000"],
        ["KAFKA_REBALANCE_TIMEOUT_MS", "8000"]
      ])
      assert.deepStrictEqual([tuned.timeouts.sessionTimeoutMs, tuned.timeouts.rebalanceTimeoutMs, tuned.timeouts.heartbeatIntervalMs], [6_000, 8_000, 2_000])
      for (const bad of ["5999", "abc", "300001"]) {
        assert.isTrue(Exit.isFailure(yield* Effect.exit(read([["KAFKA_SESSION_TIMEOUT_MS", bad]]))), bad)
      }
    }))

  it.effect("tls:// reads ca, cert and key from the configured files; plaintext reads none", () =>
    Effect.gen(function* () {
      const dir = yield* Effect.acquireRelease(
        Effect.promise(() => mkdtemp(join(tmpdir(), "kafka-tls-"))),
        (path) => Effect.promise(() => rm(path, { recursive: true, force: true }))
      )
      const files = { ca: join(dir, "ca"), cert: join(dir, "cert"), key: join(dir, "key") }
      yield* Effect.promise(() =>
        Promise.all([writeFile(files.ca, "CA PEM"), writeFile(files.cert, "CERT PEM"), writeFile(files.key, "KEY PEM")])
      )
      const tls = Either.getOrThrow(KafkaConfig.make({ brokers: "tls://kafka:9093", tlsFiles: files }))
      assert.deepStrictEqual(yield* tlsOptions(tls), { ca: ["CA PEM"], cert: "CERT PEM", key: "KEY PEM" })

      const plain = Either.getOrThrow(KafkaConfig.make({ brokers: "kafka:9092", tlsFiles: files }))
      assert.strictEqual(yield* tlsOptions(plain), undefined)

      const error = yield* Effect.flip(tlsOptions({ ...tls, tlsFiles: { ...files, key: join(dir, "nope") } }))
      assert.strictEqual(error._tag, "KafkaConfigError")
      assert.include(error.message, join(dir, "nope"))
    }).pipe(Effect.scoped)
  )
})

describe("nextOffset", () => {
  it.effect("Kafka stores the next offset to read, in 64 bits", () =>
    Effect.gen(function* () {
      assert.strictEqual(yield* nextOffset("0"), "1")
      assert.strictEqual(yield* nextOffset("41"), "42")
      assert.strictEqual(yield* nextOffset("9223372036854775806"), "9223372036854775807")
      const bad = yield* Effect.exit(nextOffset("-1"))
      assert.isTrue(Exit.isFailure(bad))
    })
  )
})
