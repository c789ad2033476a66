import { assert, describe, it } from "@effect/vitest"
import { Chunk, Deferred, Effect, Exit, Fiber, Metric, Option, Ref, Schedule, Stream, TestClock } from "effect"
import { CommandGroup, Commands, Partition } from "@executor/domain"
import { CommandPublisher, Metrics, TaskEventSource } from "@executor/executor"
import * as InMemoryBus from "../src/InMemoryBus.js"

const taskA = "4aa57614-8835-4992-87e9-ca483ddbeae6"
const taskB = "9d1f6e0a-0a4b-4e51-9a77-1f2f1c1b2c3d"
const requests = "agent-task-v1-request"

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

const publisherOn = (bus: InMemoryBus.InMemoryBus, topicPrefix = "") =>
  Effect.provide(CommandPublisher, InMemoryBus.layerPublisher(bus, { topicPrefix }))

const spawnGroup = (taskId: string, job = "claude-agent-4aa57614-abc") =>
  CommandGroup.make(`spawn/${job}`, taskId, [
    Commands.incrementFrontmatter({ taskIdentifier: taskId, field: "trigger_count", delta: 1 }),
    Commands.updateFrontmatter({
      taskIdentifier: taskId,
      updates: { current_job: job, job_started_at: "2026-01-05T00:00:00Z", spawn_notification: true }
    })
  ])

const envelopes = (records: ReadonlyArray<InMemoryBus.BusRecord>) =>
  records.map((r) => JSON.parse(r.value) as { readonly requestID: string; readonly requestTime: string; readonly operation: string })

describe("InMemoryBus appends (the executor's producer)", () => {
  it.effect("a batch goes to one partition at consecutive offsets, stamped with the Clock; offsets count per partition", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make({ partitions: (topic) => (topic === requests ? 3 : 1) })
      yield* TestClock.adjust("65 seconds")
      const first = yield* bus.append(requests, 2, [
        { key: taskA, value: "a" },
        { key: taskA, value: "b" }
      ])
      yield* bus.append(requests, 1, [{ key: taskB, value: "c" }])
      const third = yield* bus.append(requests, 2, [{ key: taskA, value: "d" }])
      assert.deepStrictEqual(first.map((r) => [r.partition, r.offset, r.appendedAt]), [
        [2, "0", 65_000],
        [2, "1", 65_000]
      ])
      assert.deepStrictEqual(third.map((r) => [r.partition, r.offset]), [[2, "2"]])
      assert.deepStrictEqual(yield* bus.endOffset(requests, 2), "3")
      assert.deepStrictEqual(yield* bus.endOffset(requests, 1), "1")
      assert.deepStrictEqual(yield* bus.endOffset(requests, 0), "0")
      assert.deepStrictEqual(values(yield* bus.read(requests, 2, "1")), ["b", "d"])
      assert.deepStrictEqual(yield* bus.readBacks, [{ topic: requests, partition: 2, from: "1" }])
    }))

  it.effect("partitionOf is Kafka's default partitioner over the topic's partition count", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make({ partitions: (topic) => (topic === requests ? 6 : 1) })
      for (const key of [taskA, taskB, "x", ""]) {
        assert.strictEqual(bus.partitionOf(requests, key), Partition.partitionOf(key, 6))
        assert.strictEqual(bus.partitionOf("events", key), 0)
      }
      // a model's message goes to its key's partition
      const record = yield* bus.produce(requests, taskB, "from a model")
      assert.strictEqual(record.partition, Partition.partitionOf(taskB, 6))
    }))

  it.effect("injected refusals append nothing, for exactly n appends; a lost answer appends and reports uncertain", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      yield* bus.failNextAppends(2)
      const refused = [
        yield* Effect.flip(bus.append(requests, 0, [{ key: taskA, value: "r1" }])),
        yield* Effect.flip(bus.append(requests, 0, [{ key: taskA, value: "r2" }]))
      ]
      assert.deepStrictEqual(refused.map((e) => e.reason), ["refused", "refused"])
      assert.deepStrictEqual(yield* bus.records(requests), [])
      yield* bus.loseNextAcks(1)
      const lost = yield* Effect.flip(bus.append(requests, 0, [{ key: taskA, value: "in the log" }]))
      assert.strictEqual(lost.reason, "uncertain")
      yield* bus.append(requests, 0, [{ key: taskA, value: "answered" }])
      assert.deepStrictEqual(values(yield* bus.records(requests)), ["in the log", "answered"])
      // a model's own traffic is never touched by injected faults
      yield* bus.failNextAppends(1)
      yield* bus.loseNextAcks(1)
      yield* bus.produce(requests, taskA, "model")
      assert.deepStrictEqual(values(yield* bus.records(requests)), ["in the log", "answered", "model"])
    }))

  it.effect("hooks: a failing beforeAppend refuses the batch; a failing afterAppend loses the answer of an appended one; a sender killed there stays appended", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      yield* bus.setBeforeAppend((batch) => (batch.messages.some((m) => m.value === "no") ? Effect.fail("refuse") : Effect.void))
      assert.strictEqual((yield* Effect.flip(bus.append(requests, 0, [{ key: null, value: "no" }]))).reason, "refused")
      yield* bus.setBeforeAppend(undefined)
      yield* bus.setAfterAppend((records) => (records.some((r) => r.value === "lost") ? Effect.fail("cut") : Effect.void))
      assert.strictEqual((yield* Effect.flip(bus.append(requests, 0, [{ key: null, value: "lost" }]))).reason, "uncertain")
      const reached = yield* Deferred.make<void>()
      yield* bus.setAfterAppend(() => Effect.zipRight(Deferred.succeed(reached, undefined), Effect.never))
      const sender = yield* Effect.fork(bus.append(requests, 0, [{ key: null, value: "killed" }]))
      yield* Deferred.await(reached)
      yield* Fiber.interrupt(sender)
      assert.deepStrictEqual(values(yield* bus.records(requests)), ["lost", "killed"])
    }))

  it.effect("offsetForTime: the first record appended at or after a time, else the end", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      yield* bus.append(requests, 0, [{ key: null, value: "t0" }])
      yield* TestClock.adjust("10 seconds")
      yield* bus.append(requests, 0, [{ key: null, value: "t10" }])
      assert.strictEqual(yield* bus.offsetForTime(requests, 0, 0), "0")
      assert.strictEqual(yield* bus.offsetForTime(requests, 0, 1), "1")
      assert.strictEqual(yield* bus.offsetForTime(requests, 0, 10_000), "1")
      assert.strictEqual(yield* bus.offsetForTime(requests, 0, 10_001), "2")
    }))
})

describe("InMemoryBus consumer groups", () => {
  it.effect("a committed offset moves the group, so a new consumer resumes after it; a held one keeps it at the message, with its metadata", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      for (const value of ["e0", "e1", "e2"]) yield* bus.produce("events", taskA, value)
      const [first] = yield* take(bus.consume("g", "events"), 1)
      assert.strictEqual(first?.value, "e0")
      yield* bus.hold("g", "events", 0, first?.offset ?? "", "note")
      assert.strictEqual(yield* nextOffset(bus, "g", "events"), "0")
      assert.deepStrictEqual(Option.getOrUndefined(yield* bus.committedMetadata("g", "events", 0)), { offset: "0", metadata: "note" })
      assert.deepStrictEqual(values(yield* take(bus.consume("g", "events"), 1)), ["e0"])
      yield* bus.commit("g", "events", 0, first?.offset ?? "")
      assert.strictEqual(yield* nextOffset(bus, "g", "events"), "1")
      assert.deepStrictEqual(Option.getOrUndefined(yield* bus.committedMetadata("g", "events", 0)), { offset: "1", metadata: "" })
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
      yield* bus.append("elsewhere", 0, [{ key: null, value: "x" }])
      yield* bus.append("events", 0, [{ key: null, value: "after-2" }])
      yield* awaitBlocked(consumer)
      const done = yield* Fiber.poll(consumer)
      assert.isTrue(Option.isSome(done), "the consumer did not see the records committed after it subscribed")
      assert.deepStrictEqual(values(yield* Fiber.join(consumer)), ["before", "after-1", "after-2"])
    }))

  it.effect("while down, append, read-backs, consume and commit fail, and a running consumer stops", () =>
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
      yield* bus.failNextAppends(1)
      yield* bus.setDown(true)
      const stopped = yield* Fiber.await(running)
      assert.isTrue(Exit.isFailure(stopped))
      const errors = [
        yield* Effect.flip(bus.append("out", 0, [{ key: null, value: "x" }])),
        yield* Effect.flip(bus.endOffset("out", 0)),
        yield* Effect.flip(bus.read("out", 0, "0")),
        yield* Effect.flip(bus.offsetForTime("out", 0, 0)),
        yield* Effect.flip(take(bus.consume("g", "events"), 1)),
        yield* Effect.flip(bus.commit("g", "events", 0, "0"))
      ]
      assert.deepStrictEqual(errors.map((e) => e.reason), ["down", "down", "down", "down", "down", "down"])
      assert.deepStrictEqual(yield* bus.records("out"), [])
      assert.isUndefined(yield* nextOffset(bus, "g", "events"))
      yield* bus.setDown(false)
      // the injected failure was not used up by the outage
      assert.strictEqual((yield* Effect.flip(bus.append("out", 0, [{ key: null, value: "y" }]))).reason, "refused")
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
      assert.deepStrictEqual([record.value, record.offset, record.appendedAt], ["held", "0", 300_000])
      assert.deepStrictEqual(values(yield* bus.records("events")), ["held"])
    }))

  it.effect("the appended stream replays from the first record, then follows appends of every topic in order, refused ones never", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      yield* bus.produce("t1", null, "a")
      yield* bus.append("t2", 0, [{ key: null, value: "b" }])
      yield* bus.append("t1", 0, [{ key: null, value: "c" }])
      const seenThree = yield* Deferred.make<void>()
      const count = yield* Ref.make(0)
      const journal = yield* Effect.fork(
        bus.appended.pipe(
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
      yield* bus.failNextAppends(1)
      yield* Effect.flip(bus.append("t1", 0, [{ key: null, value: "refused" }]))
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

describe("CommandPublisher over the bus (InMemoryBus.layerPublisher)", () => {
  it.effect("one group is one batch on its task's partition, in the envelope, with request ids derived from the group", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make({ partitions: (topic) => (topic === "develop-agent-task-v1-request" ? 4 : 1) })
      const publisher = yield* publisherOn(bus, "develop")
      yield* TestClock.adjust("65 seconds")
      const group = spawnGroup(taskA)
      const placement = yield* publisher.place(group)
      assert.deepStrictEqual(placement, { group: group.id, partition: Partition.partitionOf(taskA, 4), from: "0" })
      yield* publisher.publish(group, placement)
      assert.deepStrictEqual(yield* bus.records(requests), [])
      const records = yield* bus.records("develop-agent-task-v1-request")
      assert.deepStrictEqual(records.map((r) => [r.key, r.partition, r.offset]), [
        [taskA, placement.partition, "0"],
        [taskA, placement.partition, "1"]
      ])
      const sent = records.map((r) => JSON.parse(r.value) as Record<string, unknown>)
      for (const envelope of sent) {
        assert.deepStrictEqual(Object.keys(envelope), ["requestID", "requestTime", "initiator", "operation", "id", "data", "header"])
      }
      assert.deepStrictEqual(
        sent.map(({ requestID, ...rest }) => [requestID, rest]),
        group.commands.map((command, i) => [
          CommandGroup.requestId(group.id, i),
          { requestTime: "1970-01-01T00:01:05.000Z", initiator: "executor", operation: command._tag, id: "", data: command.data, header: {} }
        ])
      )
    }))

  it.effect("an invalid group (empty taskIdentifier, another task's command) is never sent, never placed, and counted", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      const publisher = yield* publisherOn(bus)
      const before = (yield* Metric.value(Metrics.commandsInvalid)).count
      const empty = CommandGroup.make("g1", "", [Commands.incrementFrontmatter({ taskIdentifier: "", field: "trigger_count", delta: 1 })])
      const mixed = CommandGroup.make("g2", taskA, [
        ...spawnGroup(taskA).commands,
        Commands.incrementFrontmatter({ taskIdentifier: taskB, field: "trigger_count", delta: 1 })
      ])
      const errors = [
        yield* Effect.flip(publisher.place(empty)),
        yield* Effect.flip(publisher.publish(empty, { group: "g1", partition: 0, from: "0" })),
        yield* Effect.flip(publisher.publish(mixed, { group: "g2", partition: 0, from: "0" }))
      ]
      assert.deepStrictEqual(errors.map((e) => e.kind), ["invalid", "invalid", "invalid"])
      assert.include(errors[0]?.message, "taskIdentifier")
      assert.include(errors[2]?.message, "another task")
      assert.deepStrictEqual(yield* bus.records(requests), [])
      assert.strictEqual((yield* Metric.value(Metrics.commandsInvalid)).count - before, 3)
    }))

  it.effect("a lost answer: the group is in the log once; the retry reads the partition back, finds it, sends nothing", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      const publisher = yield* publisherOn(bus)
      yield* bus.append(requests, 0, [{ key: taskB, value: "someone else's" }])
      const group = spawnGroup(taskA)
      const placement = yield* publisher.place(group)
      yield* bus.loseNextAcks(1)
      const lost = yield* Effect.flip(publisher.publish(group, placement))
      assert.strictEqual(lost.kind, "unavailable")
      // placed again by a caller that forgot: the uncertain placement wins, the read starts there
      assert.deepStrictEqual(yield* publisher.place(group), placement)
      yield* publisher.publish(group, placement)
      assert.strictEqual((yield* bus.records(requests)).length, 3)
      assert.deepStrictEqual(yield* bus.readBacks, [{ topic: requests, partition: 0, from: "1" }])
      // resolved: a later publish of the same group is a plain send again (the caller knows best)
      yield* publisher.publish(group, yield* publisher.place(group))
      assert.strictEqual((yield* bus.records(requests)).length, 5)
    }))

  it.effect("a refused send (nothing appended) is sent again without a read-back, with the requestTime of the new send", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      const publisher = yield* publisherOn(bus)
      const group = spawnGroup(taskA)
      const placement = yield* publisher.place(group)
      yield* bus.failNextAppends(1)
      yield* Effect.flip(publisher.publish(group, placement))
      yield* TestClock.adjust("10 minutes")
      yield* publisher.publish(group, placement)
      assert.deepStrictEqual(envelopes(yield* bus.records(requests)).map((e) => e.requestTime), [
        "1970-01-01T00:10:00.000Z",
        "1970-01-01T00:10:00.000Z"
      ])
      assert.deepStrictEqual(yield* bus.readBacks, [])
    }))

  it.effect("an uncertain send that did not land (the broker died before appending) is read back, not found, sent again with a fresh requestTime", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      const publisher = yield* publisherOn(bus)
      const group = spawnGroup(taskA)
      const placement = yield* publisher.place(group)
      // maybe sent by another process: read back first
      yield* TestClock.adjust("7 minutes")
      yield* publisher.publish(group, placement, { maybeSent: true })
      const records = yield* bus.records(requests)
      assert.strictEqual(records.length, 2)
      assert.deepStrictEqual(envelopes(records).map((e) => e.requestTime), ["1970-01-01T00:07:00.000Z", "1970-01-01T00:07:00.000Z"])
      assert.deepStrictEqual(yield* bus.readBacks, [{ topic: requests, partition: 0, from: "0" }])
      // while the broker is down the read-back fails: nothing is sent
      yield* bus.setDown(true)
      assert.strictEqual((yield* Effect.flip(publisher.publish(spawnGroup(taskB, "j2"), placement, { maybeSent: true }))).kind, "unavailable")
      yield* bus.setDown(false)
      assert.strictEqual((yield* bus.records(requests)).length, 2)
    }))

  it.effect("published: the groups already in the log, one read per partition whatever their number, from the lowest placement", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make({ partitions: (topic) => (topic === requests ? 3 : 1) })
      const publisher = yield* publisherOn(bus)
      const tasks = Array.from({ length: 12 }, (_, i) => `task-${i}`)
      const groups = tasks.map((task) => spawnGroup(task, `job-${task}`))
      const placed = yield* Effect.forEach(groups, (group) => Effect.map(publisher.place(group), (p) => [group, p] as const))
      for (const [group, placement] of placed.filter((_, i) => i % 2 === 0)) yield* publisher.publish(group, placement)
      const found = yield* publisher.published(placed)
      assert.deepStrictEqual([...found].sort(), groups.filter((_, i) => i % 2 === 0).map((g) => g.id).sort())
      const partitions = new Set(placed.map(([, p]) => p.partition))
      const reads = yield* bus.readBacks
      assert.strictEqual(reads.length, partitions.size)
      assert.deepStrictEqual(new Set(reads.map((r) => r.partition)), partitions)
    }))
})

describe("InMemoryBus.layerEventSource", () => {
  it.effect("hold keeps the group at the message with a note; recall reads it back for that message only; commit moves past it", () =>
    Effect.gen(function* () {
      const bus = yield* InMemoryBus.make()
      const events = Commands.topics("").event
      yield* bus.produce(events, taskA, "e0")
      yield* bus.produce(events, taskA, "e1")
      const source = yield* Effect.provide(TaskEventSource, InMemoryBus.layerEventSource(bus, { topicPrefix: "" }))
      const at0 = { topic: events, partition: 0, offset: "0" }
      const at1 = { topic: events, partition: 0, offset: "1" }
      assert.isTrue(Option.isNone(yield* source.recall(at0)))
      yield* source.hold(at0, "placed")
      assert.strictEqual(Option.getOrUndefined(yield* source.recall(at0)), "placed")
      assert.isTrue(Option.isNone(yield* source.recall(at1)))
      // a fresh consumer gets the held message again
      const [again] = Chunk.toReadonlyArray(yield* source.messages.pipe(Stream.take(1), Stream.runCollect))
      assert.strictEqual(again?.value, "e0")
      yield* source.commit(at0)
      assert.isTrue(Option.isNone(yield* source.recall(at0)))
      assert.isTrue(Option.isNone(yield* source.recall(at1)))
    }))

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
