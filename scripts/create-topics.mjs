#!/usr/bin/env node
// create-topics.mjs BROKERS TOPIC_PREFIX - the event and request topics of `run` (1 partition each),
// for scripts that start `run` against the test stack before anything else created them.
import { Kafka, logLevel } from "kafkajs"

const [brokers, prefix] = process.argv.slice(2)
if (brokers === undefined || prefix === undefined) {
  process.stderr.write("usage: create-topics.mjs BROKERS TOPIC_PREFIX\n")
  process.exit(2)
}
const topic = (suffix) => (prefix === "" ? `agent-task-v1-${suffix}` : `${prefix}-agent-task-v1-${suffix}`)
const admin = new Kafka({ brokers: brokers.split(","), logLevel: logLevel.NOTHING }).admin()
await admin.connect()
await admin.createTopics({ waitForLeaders: true, topics: ["event", "request"].map((s) => ({ topic: topic(s), numPartitions: 1 })) })
await admin.disconnect()
