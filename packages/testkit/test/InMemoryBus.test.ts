import { assert, describe, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Exit, Fiber, Option, Random, Ref, Schedule, Stream, TestClock } from "effect"
import { Commands } from "@executor/domain"
import { CommandPublisher, TaskEventSource } from "@executor/executor"
import * as InMemoryBus from "../src/InMemoryBus.js"

const taskA = "4aa57614-8835-4992-87e9-ca483ddbeae6"
const taskB = "9d1f6e0a-0a4b-4e51-9a77-1f2f1c1b2c3d"
const uuidV4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

const values = (records: Iterable<InMemoryBus.BusRecord>) => Array.from(records, (record) => record.value)

/** Waits until the fiber is blocked (suspended) or done: its mailbox is FIFO, so this is deterministic. */
const awaitBlocked = <A, E>(fiber: Fiber.RuntimeFiber<A, E>) =>
  Effect.yieldNow().pipe(
    Effect.zipRight(Fiber.status(fiber)),
    Effect.repeat({ until: (status) => status._tag !== "Running" }),
    Effect.asVoid
  )

// Not `deepStrictEqual` on an Option: chai's deep equality finds `None` equal to `Some(x)`.
const nextOffset = (bus: InMemoryBus.InMemoryBus, group: string, topic: string) =>
  Effect.map(bus.committedOffset(group, topic), Option.getOrUndefined)

const take = (stream: Stream.Stream<InMemoryBus.BusRecord, InMemoryBus.BusError>, n: number) =>
  stream.pipe(Stream.take(n), Stream.runCollect, Effect.map(Chunk.toReadonlyArray))

const publisherOn = (bus: InMemoryBus.InMemoryBus, options: InMemoryBus.PublisherOptions) =>
  Effect.provide(CommandPublisher, InMemoryBus.layerPublisher(bus, options))

const spawnCommands = (taskId: string) => [
  Commands.incrementFrontmatter({ taskIdentifier: taskId, field: "trigger_count", delta: 1 }),
  Commands.updateFrontmatter({
    taskIdentifier: taskId,
    updates: { current_job: "claude-agent-4aa57614-abc", job_started_at: "2026-01-05T00:00:00Z", spawn_notification: true }
  })
]

describe("InMemoryBus transactions", () => {
  it.effect("a transaction is all-or-nothing under an injected failure, for exactly n transactions", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      const batch: InMemoryBus.Transaction = {
        messages: [
          { topic: "out-a", key: "k", value: "a" },
          { topic: "out-b", key: "k", value: "b" }
        ],
        offsets: { group: "g", topic: "in", partition: 0, offset: "4" }
      }
      yield* bus.failNextTransactions(2)
      for (let attempt = 0; attempt < 2; attempt++) {
        const error = yield* Effect.flip(bus.transaction(batch))
        assert.strictEqual(error.reason, "aborted")
        assert.deepStrictEqual(yield* bus.records("out-a"), [])
        assert.deepStrictEqual(yield* bus.records("out-b"), [])
        assert.isUndefined(yield* nextOffset(bus, "g", "in"))
      }
      const committed = yield* bus.transaction(batch)
      assert.deepStrictEqual(
        committed.map((r) => [r.topic, r.offset, r.value]),
        [
          ["out-a", "0", "a"],
          ["out-b", "0", "b"]
        ]
      )
      assert.deepStrictEqual(values(yield* bus.records("out-a")), ["a"])
      assert.deepStrictEqual(values(yield* bus.records("out-b")), ["b"])
      assert.strictEqual(yield* nextOffset(bus, "g", "in"), "5")
    }))

  it.effect("a failing beforeCommit hook aborts the batch; the hook runs before the batch is visible", () =>
    Effect.gen(function* () {
      const calls = yield* Ref.make(0)
      const seenByHook = yield* Ref.make<ReadonlyArray<number>>([])
      const bus: InMemoryBus.InMemoryBus = yield* InMemoryBus.make({
        beforeCommit: (batch) =>
          Effect.gen(function* () {
            const visible = (yield* bus.records("out")).length
            yield* Ref.update(seenByHook, (seen) => [...seen, batch.messages.length, visible])
            const call = yield* Ref.getAndUpdate(calls, (n) => n + 1)
            if (call === 0) yield* Effect.fail("boom")
          })
      })
      const batch = { messages: [{ topic: "out", key: null, value: "x" }, { topic: "out", key: null, value: "y" }] }
      const error = yield* Effect.flip(bus.transaction(batch))
      assert.strictEqual(error.reason, "aborted")
      assert.deepStrictEqual(yield* bus.records("out"), [])
      yield* bus.transaction(batch)
      assert.deepStrictEqual(yield* Ref.get(seenByHook), [2, 0, 2, 0])
      assert.deepStrictEqual(values(yield* bus.records("out")), ["x", "y"])
    }))

  it.effect("a crash at the commit point appends nothing and commits no offset", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      const entered = yield* Deferred.make<void>()
      yield* bus.setBeforeCommit(() => Deferred.succeed(entered, undefined).pipe(Effect.zipRight(Effect.never)))
      const batch = {
        messages: [{ topic: "out", key: "k", value: "x" }],
        offsets: { group: "g", topic: "in", partition: 0, offset: "0" }
      }
      const fiber = yield* Effect.fork(bus.transaction(batch))
      yield* Deferred.await(entered)
      yield* Fiber.interrupt(fiber)
      assert.deepStrictEqual(yield* bus.records("out"), [])
      assert.isUndefined(yield* nextOffset(bus, "g", "in"))
      yield* bus.setBeforeCommit(undefined)
      yield* bus.transaction(batch)
      assert.deepStrictEqual(values(yield* bus.records("out")), ["x"])
      assert.strictEqual(yield* nextOffset(bus, "g", "in"), "1")
    }))

  it.effect("a read-committed reader never sees an aborted message", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      const live = yield* Effect.fork(take(bus.consume("g", "out"), 1))
      const journal = yield* Effect.fork(take(bus.committed, 1))
      yield* bus.failNextTransactions(1)
      yield* Effect.flip(bus.transaction({ messages: [{ topic: "out", key: "k", value: "aborted-1" }] }))
      yield* bus.setBeforeCommit(() => Effect.fail("no"))
      yield* Effect.flip(bus.transaction({ messages: [{ topic: "out", key: "k", value: "aborted-2" }] }))
      yield* bus.setBeforeCommit(undefined)
      yield* bus.transaction({ messages: [{ topic: "out", key: "k", value: "ok" }] })
      const seen = yield* Fiber.join(live)
      assert.deepStrictEqual(seen.map((r) => [r.offset, r.value]), [["0", "ok"]])
      assert.deepStrictEqual(values(yield* Fiber.join(journal)), ["ok"])
      assert.deepStrictEqual(values(yield* take(bus.consume("fresh", "out"), 1)), ["ok"])
      assert.deepStrictEqual(values(yield* bus.records("out")), ["ok"])
    }))

  it.effect("records carry per-topic offsets from 0, the key and the commit time from the Clock", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      yield* TestClock.adjust("90 seconds")
      yield* bus.transaction({
        messages: [
          { topic: "t1", key: "a", value: "1" },
          { topic: "t2", key: null, value: "2" },
          { topic: "t1", key: "b", value: "3" }
        ]
      })
      yield* TestClock.adjust("1 second")
      const produced = yield* bus.produce("t2", "c", "4")
      assert.deepStrictEqual(yield* bus.records("t1"), [
        { topic: "t1", partition: 0, offset: "0", key: "a", value: "1", committedAt: 90_000 },
        { topic: "t1", partition: 0, offset: "1", key: "b", value: "3", committedAt: 90_000 }
      ])
      assert.deepStrictEqual(yield* bus.records("t2"), [
        { topic: "t2", partition: 0, offset: "0", key: null, value: "2", committedAt: 90_000 },
        { topic: "t2", partition: 0, offset: "1", key: "c", value: "4", committedAt: 91_000 }
      ])
      assert.deepStrictEqual(produced, { topic: "t2", partition: 0, offset: "1", key: "c", value: "4", committedAt: 91_000 })
    }))
})

describe("InMemoryBus consumer groups", () => {
  it.effect("an offset committed in a transaction moves the group, so a new consumer resumes after it", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      for (const value of ["e0", "e1", "e2"]) yield* bus.produce("events", taskA, value)
      const [first] = yield* take(bus.consume("g", "events"), 1)
      assert.strictEqual(first?.value, "e0")
      yield* bus.transaction({
        messages: [{ topic: "requests", key: taskA, value: "cmd" }],
        offsets: { group: "g", topic: "events", partition: 0, offset: first?.offset ?? "" }
      })
      assert.strictEqual(yield* nextOffset(bus, "g", "events"), "1")
      assert.deepStrictEqual(values(yield* take(bus.consume("g", "events"), 2)), ["e1", "e2"])
      // another group starts from the oldest record
      assert.deepStrictEqual(values(yield* take(bus.consume("other", "events"), 1)), ["e0"])
    }))

  it.effect("an uncommitted message is redelivered to a new consumer; a committed one is not", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      yield* bus.produce("events", taskA, "e0")
      yield* bus.produce("events", taskA, "e1")
      yield* bus.commit("g", "events", 0, "0")
      assert.deepStrictEqual(values(yield* take(bus.consume("g", "events"), 1)), ["e1"])
      // handled but not committed: the next consumer ("after a restart") gets it again
      assert.deepStrictEqual(values(yield* take(bus.consume("g", "events"), 1)), ["e1"])
      yield* bus.commit("g", "events", 0, "1")
      assert.strictEqual(yield* nextOffset(bus, "g", "events"), "2")
      const next = yield* Effect.fork(take(bus.consume("g", "events"), 1))
      yield* awaitBlocked(next)
      assert.isTrue(Option.isNone(yield* Fiber.poll(next)))
      yield* bus.produce("events", taskA, "e2")
      assert.deepStrictEqual(values(yield* Fiber.join(next)), ["e2"])
    }))

  it.effect("live consumption sees records committed after it subscribed", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      yield* bus.produce("events", null, "before")
      const gotFirst = yield* Deferred.make<void>()
      const consumer = yield* Effect.fork(
        take(bus.consume("g", "events").pipe(Stream.tap(() => Deferred.succeed(gotFirst, undefined))), 3)
      )
      yield* Deferred.await(gotFirst)
      yield* bus.produce("events", null, "after-1")
      yield* bus.transaction({ messages: [{ topic: "elsewhere", key: null, value: "x" }] })
      yield* bus.transaction({ messages: [{ topic: "events", key: null, value: "after-2" }] })
      yield* awaitBlocked(consumer)
      const done = yield* Fiber.poll(consumer)
      assert.isTrue(Option.isSome(done), "the consumer did not see the records committed after it subscribed")
      assert.deepStrictEqual(values(yield* Fiber.join(consumer)), ["before", "after-1", "after-2"])
    }))

  it.effect("while down, publish, consume and commit fail, and a running consumer stops", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      yield* bus.produce("events", null, "e0")
      const gotFirst = yield* Deferred.make<void>()
      const running = yield* Effect.fork(
        bus.consume("g", "events").pipe(
          Stream.tap(() => Deferred.succeed(gotFirst, undefined)),
          Stream.runCollect
        )
      )
      yield* Deferred.await(gotFirst)
      yield* bus.failNextTransactions(1)
      yield* bus.setDown(true)
      const stopped = yield* Fiber.await(running)
      assert.isTrue(Exit.isFailure(stopped))
      const errors = [
        yield* Effect.flip(bus.transaction({ messages: [{ topic: "out", key: null, value: "x" }] })),
        yield* Effect.flip(take(bus.consume("g", "events"), 1)),
        yield* Effect.flip(bus.commit("g", "events", 0, "0"))
      ]
      assert.deepStrictEqual(errors.map((e) => e.reason), ["down", "down", "down"])
      assert.deepStrictEqual(yield* bus.records("out"), [])
      assert.isUndefined(yield* nextOffset(bus, "g", "events"))
      yield* bus.setDown(false)
      // the injected failure was not used up by the outage
      assert.strictEqual((yield* Effect.flip(bus.transaction({ messages: [] }))).reason, "aborted")
      yield* bus.commit("g", "events", 0, "0")
      assert.strictEqual(yield* nextOffset(bus, "g", "events"), "1")
    }))
})

describe("InMemoryBus produce and observers", () => {
  it.effect("produce while down is held and delivered once the bus is up", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      yield* bus.setDown(true)
      const held = yield* Effect.fork(bus.produce("events", taskA, "held"))
      yield* awaitBlocked(held)
      assert.isTrue(Option.isNone(yield* Fiber.poll(held)))
      assert.deepStrictEqual(yield* bus.records("events"), [])
      yield* TestClock.adjust("5 minutes")
      yield* bus.setDown(false)
      const record = yield* Fiber.join(held)
      assert.deepStrictEqual([record.value, record.offset, record.committedAt], ["held", "0", 300_000])
      assert.deepStrictEqual(values(yield* bus.records("events")), ["held"])
    }))

  it.effect("the committed stream replays from the first record, then follows commits of every topic in order", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      yield* bus.produce("t1", null, "a")
      yield* bus.transaction({
        messages: [
          { topic: "t2", key: null, value: "b" },
          { topic: "t1", key: null, value: "c" }
        ]
      })
      const seenThree = yield* Deferred.make<void>()
      const count = yield* Ref.make(0)
      const journal = yield* Effect.fork(
        bus.committed.pipe(
          Stream.tap(() =>
            Ref.updateAndGet(count, (n) => n + 1).pipe(
              Effect.flatMap((n) => (n === 3 ? Deferred.succeed(seenThree, undefined) : Effect.void))
            )
          ),
          Stream.take(4),
          Stream.runCollect
        )
      )
      yield* Deferred.await(seenThree)
      yield* bus.failNextTransactions(1)
      yield* Effect.flip(bus.transaction({ messages: [{ topic: "t1", key: null, value: "aborted" }] }))
      yield* bus.produce("t2", null, "d")
      const seen = Chunk.toReadonlyArray(yield* Fiber.join(journal))
      assert.deepStrictEqual(
        seen.map((r) => [r.topic, r.offset, r.value]),
        [
          ["t1", "0", "a"],
          ["t2", "0", "b"],
          ["t1", "1", "c"],
          ["t2", "1", "d"]
        ]
      )
    }))
})

describe("InMemoryBus.layerPublisher", () => {
  it.effect("keys every command by task id and wraps it in the envelope, on the prefixed request topic", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      const publisher = yield* publisherOn(bus, { topicPrefix: "develop" })
      yield* TestClock.adjust("65 seconds")
      const failure = Commands.updateFrontmatter({
        taskIdentifier: taskA,
        updates: { current_job: "" },
        body: { heading: "## Failure", section: "## Failure\n\n- **Reason:** image_pull_backoff\n" }
      })
      const increment = Commands.incrementFrontmatter({ taskIdentifier: taskB, field: "trigger_count", delta: 1 })
      yield* publisher.publish([failure, increment])
      assert.deepStrictEqual(yield* bus.records("agent-task-v1-request"), [])
      const records = yield* bus.records("develop-agent-task-v1-request")
      assert.deepStrictEqual(records.map((r) => r.key), [taskA, taskB])
      const envelopes = records.map((r) => JSON.parse(r.value) as Record<string, unknown>)
      for (const envelope of envelopes) {
        assert.deepStrictEqual(Object.keys(envelope), [
          "requestID",
          "requestTime",
          "initiator",
          "operation",
          "id",
          "data",
          "header"
        ])
        assert.match(String(envelope["requestID"]), uuidV4)
      }
      assert.notStrictEqual(envelopes[0]?.["requestID"], envelopes[1]?.["requestID"])
      assert.deepStrictEqual(
        envelopes.map(({ requestID: _, ...rest }) => rest),
        [
          {
            requestTime: "1970-01-01T00:01:05.000Z",
            initiator: "executor",
            operation: "update-frontmatter",
            id: "",
            data: failure.data,
            header: {}
          },
          {
            requestTime: "1970-01-01T00:01:05.000Z",
            initiator: "executor",
            operation: "increment-frontmatter",
            id: "",
            data: increment.data,
            header: {}
          }
        ]
      )
    }))

  it.effect("uses the unprefixed topics when the prefix is empty", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      const publisher = yield* publisherOn(bus, { topicPrefix: "" })
      yield* publisher.publish(spawnCommands(taskA))
      assert.deepStrictEqual(
        (yield* bus.records("agent-task-v1-request")).map((r) => (JSON.parse(r.value) as { operation: string }).operation),
        ["increment-frontmatter", "update-frontmatter"]
      )
      yield* bus.produce("agent-task-v1-event", taskA, "{}")
      const source = yield* Effect.provide(TaskEventSource, InMemoryBus.layerEventSource(bus, { topicPrefix: "" }))
      const [message] = Chunk.toReadonlyArray(yield* source.messages.pipe(Stream.take(1), Stream.runCollect))
      assert.deepStrictEqual(message?.offset, { topic: "agent-task-v1-event", partition: 0, offset: "0" })
    }))

  it.effect("commits the consumed offset for the executor's group in the same transaction", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      const events = Commands.topics("develop").event
      const publisher = yield* publisherOn(bus, { topicPrefix: "develop" })
      const consumed = { topic: events, partition: 0, offset: "3" }
      yield* bus.failNextTransactions(1)
      const error = yield* Effect.flip(publisher.publish(spawnCommands(taskA), consumed))
      assert.strictEqual(error.kind, "unavailable")
      assert.deepStrictEqual(yield* bus.records("develop-agent-task-v1-request"), [])
      assert.isUndefined(yield* nextOffset(bus, "agent-task-executor", events))
      yield* publisher.publish(spawnCommands(taskA), consumed)
      assert.strictEqual((yield* bus.records("develop-agent-task-v1-request")).length, 2)
      assert.strictEqual(yield* nextOffset(bus, "agent-task-executor", events), "4")
      // an offset alone is committed too; a configured group is used
      const other = yield* publisherOn(bus, { topicPrefix: "develop", group: "other" })
      yield* other.publish([], consumed)
      assert.strictEqual(yield* nextOffset(bus, "other", events), "4")
      assert.strictEqual((yield* bus.records("develop-agent-task-v1-request")).length, 2)
    }))

  it.effect("rejects an invalid payload (empty taskIdentifier) without sending anything", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      const publisher = yield* publisherOn(bus, { topicPrefix: "" })
      const events = Commands.topics("").event
      const invalid = Commands.incrementFrontmatter({ taskIdentifier: "", field: "trigger_count", delta: 1 })
      const error = yield* Effect.flip(
        publisher.publish([...spawnCommands(taskA), invalid], { topic: events, partition: 0, offset: "0" })
      )
      assert.strictEqual(error.kind, "invalid")
      assert.include(error.message, "commands[2]")
      assert.include(error.message, "taskIdentifier")
      assert.deepStrictEqual(yield* bus.records("agent-task-v1-request"), [])
      assert.isUndefined(yield* nextOffset(bus, "agent-task-executor", events))
    }))

  it.effect("down ⇒ PublishError unavailable and nothing appended; up again ⇒ published", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      const publisher = yield* publisherOn(bus, { topicPrefix: "" })
      yield* bus.setDown(true)
      const error = yield* Effect.flip(publisher.publish(spawnCommands(taskA)))
      assert.strictEqual(error._tag, "PublishError")
      assert.strictEqual(error.kind, "unavailable")
      assert.deepStrictEqual(yield* bus.records("agent-task-v1-request"), [])
      yield* bus.setDown(false)
      yield* publisher.publish(spawnCommands(taskA))
      assert.deepStrictEqual(
        (yield* bus.records("agent-task-v1-request")).map((r) => r.key),
        [taskA, taskA]
      )
    }))

  it.effect("request ids are v4 UUIDs from Effect's Random, repeatable under a seed", () =>
    Effect.gen(function* () {
      const requestIds = (seed: string) =>
        Effect.gen(function* () {
          const bus = yield* InMemoryBus.make()
          const publisher = yield* publisherOn(bus, { topicPrefix: "" })
          yield* publisher.publish(spawnCommands(taskA))
          return (yield* bus.records("agent-task-v1-request")).map(
            (r) => (JSON.parse(r.value) as { requestID: string }).requestID
          )
        }).pipe(Effect.withRandom(Random.make(seed)))
      const first = yield* requestIds("seed-1")
      assert.deepStrictEqual(yield* requestIds("seed-1"), first)
      assert.notDeepEqual(yield* requestIds("seed-2"), first)
      for (const id of first) assert.match(id, uuidV4)
      assert.strictEqual(new Set(first).size, 2)
    }))
})

describe("InMemoryBus.layerEventSource", () => {
  it.effect("maps records to ConsumedMessage (empty value ⇒ null) and commits for its group", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      const events = Commands.topics("develop").event
      yield* bus.produce(events, taskA, "")
      yield* bus.produce(events, taskA, "{\"taskIdentifier\":\"x\"}")
      yield* bus.produce("agent-task-v1-event", taskA, "unprefixed")
      const source = yield* Effect.provide(
        TaskEventSource,
        InMemoryBus.layerEventSource(bus, { topicPrefix: "develop", group: "g" })
      )
      const messages = Chunk.toReadonlyArray(yield* source.messages.pipe(Stream.take(2), Stream.runCollect))
      assert.deepStrictEqual(messages, [
        { value: null, offset: { topic: events, partition: 0, offset: "0" } },
        { value: "{\"taskIdentifier\":\"x\"}", offset: { topic: events, partition: 0, offset: "1" } }
      ])
      yield* source.commit({ topic: events, partition: 0, offset: "0" })
      assert.strictEqual(yield* nextOffset(bus, "g", events), "1")
      assert.isUndefined(yield* nextOffset(bus, "agent-task-executor", events))
    }))

  it.effect("fails with ConsumeError while down; a retrying consumer re-subscribes and resumes from the committed offset", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      const events = Commands.topics("").event
      const source = yield* Effect.provide(TaskEventSource, InMemoryBus.layerEventSource(bus, { topicPrefix: "" }))
      yield* bus.setDown(true)
      const refused = yield* Effect.flip(source.messages.pipe(Stream.runHead))
      assert.strictEqual(refused._tag, "ConsumeError")
      assert.strictEqual((yield* Effect.flip(source.commit({ topic: events, partition: 0, offset: "0" })))._tag, "ConsumeError")
      yield* bus.setDown(false)

      yield* bus.produce(events, taskA, "e0")
      const handledFirst = yield* Deferred.make<void>()
      const subscriptions = yield* Ref.make(0)
      const consumer = yield* Effect.fork(
        Stream.unwrap(Effect.as(Ref.update(subscriptions, (n) => n + 1), source.messages)).pipe(
          Stream.tap((message) =>
            source.commit(message.offset).pipe(Effect.zipRight(Deferred.succeed(handledFirst, undefined)))
          ),
          Stream.retry(Schedule.spaced("5 seconds")),
          Stream.take(2),
          Stream.runCollect
        )
      )
      yield* Deferred.await(handledFirst)
      yield* bus.setDown(true)
      const held = yield* Effect.fork(bus.produce(events, taskA, "e1"))
      yield* awaitBlocked(consumer)
      yield* TestClock.adjust("5 seconds") // still down: the retry fails again
      yield* awaitBlocked(consumer)
      yield* bus.setDown(false)
      yield* Fiber.join(held)
      yield* TestClock.adjust("5 seconds")
      const messages = Chunk.toReadonlyArray(yield* Fiber.join(consumer))
      assert.deepStrictEqual(
        messages.map((m) => [m.value, m.offset.offset]),
        [
          ["e0", "0"],
          ["e1", "1"]
        ]
      )
      assert.strictEqual(yield* Ref.get(subscriptions), 3)
      assert.strictEqual(yield* nextOffset(bus, "agent-task-executor", events), "2")
    }))
})
