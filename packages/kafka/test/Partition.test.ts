import { randomUUID } from "node:crypto"
import { assert, describe, it } from "@effect/vitest"
import { Partitioners } from "kafkajs"
import { Partition } from "@executor/domain"

// The executor names the partition of every batch itself: it must be the one kafkajs's (and the
// Java client's) default partitioner picks for the same key, so task ids keep their partitions.

describe("Partition.partitionOf", () => {
  it("equals kafkajs's DefaultPartitioner for task ids, odd lengths, non-ASCII keys and any partition count", () => {
    const kafkajs = Partitioners.DefaultPartitioner()
    const keys = [
      "",
      "a",
      "ab",
      "abc",
      "4aa57614-8835-4992-87e9-ca483ddbeae6",
      "täsk-ünïcode-✓",
      "x".repeat(257),
      ...Array.from({ length: 300 }, () => randomUUID())
    ]
    for (const partitions of [1, 2, 3, 6, 12, 50, 101]) {
      const partitionMetadata = Array.from({ length: partitions }, (_, partitionId) => ({
        partitionId,
        leader: 1,
        replicas: [1],
        isr: [1],
        partitionErrorCode: 0
      }))
      for (const key of keys) {
        const expected = kafkajs({ topic: "t", partitionMetadata, message: { key, value: "" } })
        assert.strictEqual(Partition.partitionOf(key, partitions), expected, `${key} over ${partitions}`)
      }
    }
  })

  it("murmur2 matches the reference values of Kafka's Utils.murmur2", () => {
    // from Kafka's UtilsTest.testMurmur2
    const cases: ReadonlyArray<readonly [string, number]> = [
      ["21", -973932308],
      ["foobar", -790332482],
      ["a-little-bit-long-string", -985981536],
      ["a-little-bit-longer-string", -1486304829],
      ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971],
      ["abc", 479470107]
    ]
    for (const [key, hash] of cases) assert.strictEqual(Partition.murmur2(new TextEncoder().encode(key)), hash, key)
  })
})
