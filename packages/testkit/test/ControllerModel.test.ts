import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, TestClock } from "effect"
import { Commands, Time } from "@executor/domain"
import * as ControllerModel from "../src/ControllerModel.js"
import * as InMemoryBus from "../src/InMemoryBus.js"

// The controller model consumes like the real controller (docs/contract.md#what-the-controller-does-with-them): read uncommitted, no
// de-duplication, a 5-minute expiry on requestTime, undecodable commands skipped silently.

const taskId = "4aa57614-8835-4992-87e9-ca483ddbeae6"
const requests = Commands.topics("").request

const envelope = (overrides: Record<string, unknown>) =>
  JSON.stringify({
    requestID: "11111111-1111-4111-8111-111111111111",
    requestTime: "1970-01-01T00:00:00.000Z",
    initiator: "executor",
    operation: "increment-frontmatter",
    id: "",
    data: { taskIdentifier: taskId, field: "trigger_count", delta: 1 },
    header: {},
    ...overrides
  })

const setup = Effect.gen(function* () {
  const bus = yield* InMemoryBus.make()
  const controller = yield* ControllerModel.make(bus, { topicPrefix: "" })
  yield* controller.edit(taskId, { status: "in_progress", assignee: "claude-agent", max_triggers: 5 }, "# Task")
  const count = Effect.map(controller.task(taskId), (t) => Option.getOrUndefined(t)?.frontmatter["trigger_count"])
  const send = (value: string) =>
    Effect.gen(function* () {
      yield* bus.append(requests, 0, [{ key: taskId, value }])
      yield* TestClock.adjust("1 second")
    })
  return { bus, controller, count, send }
})

describe("ControllerModel consumes like the real controller", () => {
  it.scoped("the same command twice is applied twice (no de-duplication by request id)", () =>
    Effect.gen(function* () {
      const { controller, count, send } = yield* setup
      yield* send(envelope({}))
      yield* send(envelope({}))
      assert.strictEqual(yield* count, 2)
      assert.deepStrictEqual((yield* controller.applied).map((c) => c.requestId), [
        "11111111-1111-4111-8111-111111111111",
        "11111111-1111-4111-8111-111111111111"
      ])
    }))

  it.scoped("a command whose requestTime is more than 5 minutes old when it gets to it is dropped and recorded; one from the future is applied", () =>
    Effect.gen(function* () {
      const { controller, count, send } = yield* setup
      yield* TestClock.adjust("10 minutes")
      // each is handled a second after it is appended: the first at 10:01 (sent 05:00: 5:01 old), the second at 10:02 (sent 05:03: 4:59 old)
      yield* send(envelope({ requestID: "old", requestTime: Time.formatIso(300_000) }))
      yield* send(envelope({ requestID: "fresh", requestTime: Time.formatIso(303_000) }))
      yield* send(envelope({ requestID: "future", requestTime: Time.formatIso(4_000_000) }))
      yield* send(envelope({ requestID: "no-time", requestTime: null }))
      assert.strictEqual(yield* count, 2)
      assert.deepStrictEqual((yield* controller.expired).map((c) => c.requestId), ["old", "no-time"])
      assert.deepStrictEqual((yield* controller.applied).map((c) => c.requestId), ["fresh", "future"])
    }))

  it.scoped("undecodable commands are skipped silently: bad JSON, empty requestID, bad operation, a non-string header, a fractional delta", () =>
    Effect.gen(function* () {
      const { controller, count, send } = yield* setup
      for (const value of [
        "{not json",
        envelope({ requestID: "" }),
        envelope({ initiator: "" }),
        envelope({ operation: "Increment" }),
        envelope({ header: { n: 1 } }),
        envelope({ data: { taskIdentifier: taskId, field: "trigger_count", delta: 1.5 } }),
        envelope({ data: { taskIdentifier: taskId, field: "trigger_count", delta: "1" } })
      ]) {
        yield* send(value)
      }
      assert.strictEqual(yield* count, undefined)
      assert.deepStrictEqual(yield* controller.applied, [])
      assert.deepStrictEqual(yield* controller.expired, [])
    }))

  it.scoped("the trigger cap: an increment that reaches max_triggers clears the assignee", () =>
    Effect.gen(function* () {
      const { controller, send } = yield* setup
      for (let i = 0; i < 5; i++) yield* send(envelope({ requestID: `i-${i}` }))
      const task = Option.getOrUndefined(yield* controller.task(taskId))
      assert.strictEqual(task?.frontmatter["trigger_count"], 5)
      assert.strictEqual(task?.frontmatter["assignee"], "")
    }))
})
