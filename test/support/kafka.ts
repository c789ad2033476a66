// The broker side of the end-to-end tests: the controller producing task events, and a reader of
// the request topic that reads uncommitted, as the controller does (docs/contract.md#what-the-controller-does-with-them).
import { randomUUID } from "node:crypto"
import { Kafka, logLevel } from "kafkajs"
import { eventually } from "./wait.js"

export const kafka = (brokers: string, clientId = "e2e") =>
  new Kafka({
    clientId,
    brokers: brokers.split(","),
    logLevel: logLevel.NOTHING,
    connectionTimeout: 3_000,
    retry: { retries: 8, initialRetryTime: 200, maxRetryTime: 3_000 }
  })

/**
 * Creates 1-partition topics and waits for their leaders. A broker that has just started may not
 * host the new partitions yet ("does not host this topic-partition"): retried for a while.
 */
export const createTopics = async (brokers: string, topics: ReadonlyArray<string>) => {
  for (let attempt = 1; ; attempt++) {
    const admin = kafka(brokers).admin()
    try {
      await admin.connect()
      await admin.createTopics({
        topics: topics.map((topic) => ({ topic, numPartitions: 1, replicationFactor: 1 })),
        waitForLeaders: true,
        timeout: 15_000
      })
      await admin.fetchTopicMetadata({ topics: [...topics] })
      return
    } catch (error) {
      if (attempt >= 15) throw error
      await new Promise((resolve) => setTimeout(resolve, 1_000))
    } finally {
      await admin.disconnect().catch(() => undefined)
    }
  }
}

/** The group's committed (next) offset of partition 0, -1 when none. */
export const committedOffset = async (brokers: string, groupId: string, topic: string): Promise<number> => {
  const admin = kafka(brokers).admin()
  await admin.connect()
  try {
    const offsets = await admin.fetchOffsets({ groupId, topics: [topic] })
    return Number(offsets[0]?.partitions.find((p) => p.partition === 0)?.offset ?? "-1")
  } finally {
    await admin.disconnect()
  }
}

/** The offset the next message of partition 0 gets (the high watermark). */
export const endOffset = async (brokers: string, topic: string): Promise<number> => {
  const admin = kafka(brokers).admin()
  await admin.connect()
  try {
    const offsets = await admin.fetchTopicOffsets(topic)
    return Number(offsets.find((p) => p.partition === 0)?.high ?? "0")
  } finally {
    await admin.disconnect()
  }
}

export type EventValue = string | Buffer | null

/** Produces raw values, as the controller does (plain producer, key = task id when given). */
export const produce = async (
  brokers: string,
  topic: string,
  messages: ReadonlyArray<{ readonly key?: string; readonly value: EventValue }>
) => {
  const producer = kafka(brokers).producer({ allowAutoTopicCreation: false })
  await producer.connect()
  try {
    await producer.send({
      topic,
      acks: -1,
      messages: messages.map((m) => ({ key: m.key ?? null, value: m.value }))
    })
  } finally {
    await producer.disconnect()
  }
}

// ---------------------------------------------------------------------------------------------
// task events
// ---------------------------------------------------------------------------------------------

export interface TaskEventInput {
  readonly taskId: string
  readonly assignee: string
  readonly stage?: string
  readonly triggerCount?: number
  readonly identifier?: string
  readonly frontmatter?: Record<string, unknown>
  readonly content?: string
}

/** A task event that passes every gate for `assignee` (status in_progress, phase execution, type llm). */
export const taskEvent = (input: TaskEventInput) => ({
  identifier: input.identifier ?? randomUUID(),
  created: "2026-06-01T11:59:58Z",
  modified: "2026-06-01T11:59:58Z",
  taskIdentifier: input.taskId,
  frontmatter: {
    status: "in_progress",
    phase: "execution",
    assignee: input.assignee,
    task_type: "llm",
    stage: input.stage ?? "dev",
    trigger_count: input.triggerCount ?? 0,
    max_triggers: 3,
    current_job: "",
    clone_url: "https://example.invalid/org/repo.git",
    ...input.frontmatter
  },
  content: input.content ?? `# Task ${input.taskId}\n\nDo the work.\n`
})

// ---------------------------------------------------------------------------------------------
// the request topic, read uncommitted
// ---------------------------------------------------------------------------------------------

export interface CommandRecord {
  readonly offset: number
  /** The message value as sent. */
  readonly raw: string
  readonly key: string | null
  readonly operation: string
  readonly taskId: string
  readonly data: Record<string, unknown>
  readonly updates: Record<string, unknown> | undefined
  readonly body: { readonly heading: string; readonly section: string } | undefined
  /** The record batch it came in: the records one send appended to a partition share one batch. */
  readonly batch: { readonly firstOffset: string; readonly inTransaction: boolean; readonly producerId: string }
  readonly receivedAt: number
}

interface BatchContext {
  readonly firstOffset?: string
  readonly inTransaction?: boolean
  readonly producerId?: string
}

const parse = (offset: number, key: string | null, value: string, batch: BatchContext): CommandRecord => {
  const envelope = JSON.parse(value) as { readonly operation?: unknown; readonly data?: unknown }
  const data = (typeof envelope.data === "object" && envelope.data !== null ? envelope.data : {}) as Record<string, unknown>
  const updates = data["updates"]
  const body = data["body"]
  return {
    offset,
    raw: value,
    key,
    operation: String(envelope.operation),
    taskId: String(data["taskIdentifier"]),
    data,
    updates: typeof updates === "object" && updates !== null ? (updates as Record<string, unknown>) : undefined,
    body: typeof body === "object" && body !== null ? (body as { heading: string; section: string }) : undefined,
    batch: {
      firstOffset: String(batch.firstOffset ?? ""),
      inTransaction: batch.inTransaction === true,
      producerId: String(batch.producerId ?? "")
    },
    receivedAt: Date.now()
  }
}

export const isFailure = (r: CommandRecord) => r.operation === "update-frontmatter" && r.body?.heading === "## Failure"
export const isIncrement = (r: CommandRecord) => r.operation === "increment-frontmatter"
export const isSpawnNotification = (r: CommandRecord) =>
  r.operation === "update-frontmatter" && r.updates?.["spawn_notification"] === true

/** The `- **Reason:** <token>` line of a `## Failure` section. */
export const reasonOf = (r: CommandRecord): string | undefined =>
  /^- \*\*Reason:\*\* (.*)$/m.exec(r.body?.section ?? "")?.[1]
export const detailOf = (r: CommandRecord): string | undefined =>
  /^- \*\*Detail:\*\* (.*)$/m.exec(r.body?.section ?? "")?.[1]

export interface CommandLog {
  /** Every command appended so far, in offset order, each offset once. */
  readonly all: () => ReadonlyArray<CommandRecord>
  readonly forTask: (taskId: string) => ReadonlyArray<CommandRecord>
  readonly waitFor: <A>(what: string, timeoutMs: number, probe: (all: ReadonlyArray<CommandRecord>) => A | undefined) => Promise<A>
  readonly stop: () => Promise<void>
}

/**
 * Reads `topic` from the start with a fresh group, read uncommitted like the controller (every
 * appended record counts, whatever became of its transaction), for as long as the test runs. A
 * consumer restart (e.g. across a broker restart) may deliver a message again: records are kept by
 * offset, once each, so a command that is in the log twice shows twice.
 */
export const commandLog = async (brokers: string, topic: string): Promise<CommandLog> => {
  const byOffset = new Map<number, CommandRecord>()
  const consumer = kafka(brokers, "e2e-reader").consumer({
    groupId: `e2e-reader-${randomUUID()}`,
    readUncommitted: true,
    maxWaitTimeInMs: 100,
    sessionTimeout: 10_000,
    heartbeatInterval: 1_000,
    retry: { retries: 30, initialRetryTime: 300, maxRetryTime: 3_000 }
  })
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning: true })
  await consumer.run({
    eachMessage: async ({ message }) => {
      const offset = Number(message.offset)
      if (byOffset.has(offset) || message.value === null) return
      const batch = (message as unknown as { readonly batchContext?: BatchContext }).batchContext ?? {}
      byOffset.set(offset, parse(offset, message.key?.toString() ?? null, message.value.toString(), batch))
    }
  })
  const all = () => [...byOffset.values()].sort((a, b) => a.offset - b.offset)
  return {
    all,
    forTask: (taskId) => all().filter((r) => r.taskId === taskId),
    waitFor: (what, timeoutMs, probe) => eventually(what, timeoutMs, () => probe(all())),
    stop: async () => {
      await consumer.disconnect().catch(() => undefined)
    }
  }
}

/** The failure pairs of a task: each `## Failure` update with the record that follows it. */
export const failuresOf = (records: ReadonlyArray<CommandRecord>, taskId: string) => {
  const all = [...records].sort((a, b) => a.offset - b.offset)
  return all.flatMap((r, i) => (r.taskId === taskId && isFailure(r) ? [{ update: r, next: all[i + 1] }] : []))
}
