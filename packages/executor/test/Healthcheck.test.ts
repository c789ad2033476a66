import { describe, expect, it } from "@effect/vitest"
import { Cron, Effect, Either, Fiber, Layer, Metric, Option, Ref, TestClock } from "effect"
import { Probe } from "@executor/domain"
import {
  AgentRegistry,
  defaultCronExpression,
  ExecutorSettings,
  Healthcheck,
  HealthcheckCronLive,
  Metrics,
  parseCron
} from "@executor/executor"
import { InMemoryBus, PodBehaviour, World } from "@executor/testkit"
import { agentSpec, dispatchTopics, settle, settleUntil, startExecutorIn, watchBatches } from "./fixtures.js"

// executor.md §5.9 and catalogue items 136-139; decisions D4.11 (the parts that are not HTTP) and
// §8.16 (a failing probe is never fatal).

/** UUIDv5 over "<assignee>-<branch>" in namespace 00000000-0000-0000-0000-000000000024 (Python's uuid.uuid5). */
const knownIds = {
  "agent-a-prod": "35907911-3d30-5a45-a0ef-88b0d8d20f30",
  "agent-b-prod": "10801d7a-fb05-556f-8fc6-54b2e474aeaa",
  "agent-a-dev": "51cf6b00-68f4-550c-9575-33e4e97dcc8d"
} as const

const MONDAY = Date.parse("2026-01-05T00:00:00Z")

/** A world with the Configs of agent-a and agent-b (none when `agents` is empty). */
const probeWorld = (options: { readonly branch?: string; readonly agents?: ReadonlyArray<string> } = {}) =>
  Effect.gen(function* () {
    const world = yield* World.make({
      podBehaviour: PodBehaviour.always(PodBehaviour.hang),
      settings: { branch: options.branch ?? "prod" }
    })
    for (const agent of options.agents ?? ["agent-a", "agent-b"]) {
      yield* world.cluster.applyConfig(`${agent}-config`, agentSpec({ assignee: agent }))
    }
    return world
  })

/** A healthcheck runner over the world's Configs and broker (a fresh instance per call). */
const runnerOf = (world: World.World) =>
  Effect.gen(function* () {
    const registry = yield* Layer.build(AgentRegistry.layer.pipe(Layer.provide(world.cluster.layer)))
    yield* Effect.flatMap(Effect.provide(AgentRegistry, registry), (r) => r.synced)
    return yield* Effect.provide(
      Healthcheck,
      Healthcheck.layer.pipe(
        Layer.provide(
          Layer.mergeAll(
            Layer.succeedContext(registry),
            InMemoryBus.layerPublisher(world.bus, { topicPrefix: world.settings.topicPrefix }),
            ExecutorSettings.layer(world.settings)
          )
        )
      )
    )
  })

interface Sent {
  readonly key: string | null
  readonly operation: string
  readonly data: Record<string, unknown>
  readonly appendedAt: number
}

const sent = (world: World.World) =>
  Effect.map(world.bus.records(dispatchTopics.request), (records) =>
    records.map((r): Sent => {
      const envelope = JSON.parse(r.value) as { readonly operation: string; readonly data: Record<string, unknown> }
      return { key: r.key, operation: envelope.operation, data: envelope.data, appendedAt: r.appendedAt }
    })
  )

const probeFailures = Effect.map(Metric.value(Metrics.probeFailures), (s) => s.count)

const expectedPair = (assignee: string, branch: string, id: string) => [
  {
    key: id,
    operation: "create-task",
    data: {
      taskIdentifier: id,
      title: `probe-${assignee}-${branch}`,
      frontmatter: { task_type: "healthcheck", status: "in_progress", phase: "in_progress", assignee, stage: branch },
      body: "reply 'ok'"
    }
  },
  {
    key: id,
    operation: "update-frontmatter",
    data: {
      taskIdentifier: id,
      updates: {
        status: "in_progress",
        phase: "in_progress",
        trigger_count: 0,
        retry_count: 0,
        current_job: "",
        job_started_at: "",
        spawn_notification: false
      }
    }
  }
]

const withoutTime = (list: ReadonlyArray<Sent>) => list.map(({ appendedAt: _, ...rest }) => rest)

describe("healthcheck probe (items 136-139, §5.9)", () => {
  it.scoped("137-138: per Config, create-task then update-frontmatter in one batch, keyed and identified by a UUIDv5", () =>
    Effect.gen(function* () {
      const world = yield* probeWorld()
      const runner = yield* runnerOf(world)
      const batches = yield* watchBatches(world)
      expect(yield* runner.trigger).toBe("ran")
      expect(withoutTime(yield* sent(world))).toEqual([
        ...expectedPair("agent-a", "prod", knownIds["agent-a-prod"]),
        ...expectedPair("agent-b", "prod", knownIds["agent-b-prod"])
      ])
      expect(yield* batches).toEqual([
        {
          operations: ["create-task", "update-frontmatter"],
          keys: [knownIds["agent-a-prod"], knownIds["agent-a-prod"]],
          tasks: [knownIds["agent-a-prod"], knownIds["agent-a-prod"]],
          partition: 0
        },
        {
          operations: ["create-task", "update-frontmatter"],
          keys: [knownIds["agent-b-prod"], knownIds["agent-b-prod"]],
          tasks: [knownIds["agent-b-prod"], knownIds["agent-b-prod"]],
          partition: 0
        }
      ])
      expect(Probe.probeTaskId("agent-a", "prod")).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    }))

  it.scoped("138: the ids are the same on every run and in every runner instance; another stage gets other ids", () =>
    Effect.gen(function* () {
      const world = yield* probeWorld({ agents: ["agent-a"] })
      const first = yield* runnerOf(world)
      const second = yield* runnerOf(world)
      yield* first.trigger
      yield* first.trigger
      yield* second.trigger
      const ids = (yield* sent(world)).map((s) => s.data["taskIdentifier"])
      expect(ids).toEqual(Array.from({ length: 6 }, () => knownIds["agent-a-prod"]))

      const dev = yield* probeWorld({ branch: "dev", agents: ["agent-a"] })
      yield* (yield* runnerOf(dev)).trigger
      expect(withoutTime(yield* sent(dev))).toEqual(expectedPair("agent-a", "dev", knownIds["agent-a-dev"]))
      expect(knownIds["agent-a-dev"]).not.toBe(knownIds["agent-a-prod"])
    }))

  it.scoped("137: no Configs ⇒ the run publishes nothing", () =>
    Effect.gen(function* () {
      const world = yield* probeWorld({ agents: [] })
      expect(yield* (yield* runnerOf(world)).trigger).toBe("ran")
      expect(yield* sent(world)).toEqual([])
    }))

  it.scoped("136: a trigger while a run is in flight is answered already-running and publishes nothing more", () =>
    Effect.gen(function* () {
      const world = yield* probeWorld()
      const runner = yield* runnerOf(world)
      // every transaction takes 10 s to commit
      yield* world.bus.setBeforeAppend(() => Effect.sleep("10 seconds"))
      const running = yield* Effect.fork(runner.trigger)
      yield* settle
      // answered at once, while the first run still waits on its first commit
      expect(yield* runner.trigger).toBe("already-running")
      expect(yield* runner.trigger).toBe("already-running")
      expect(yield* sent(world)).toEqual([])
      yield* TestClock.adjust("10 seconds")
      yield* settle
      expect(yield* runner.trigger).toBe("already-running")
      yield* TestClock.adjust("10 seconds")
      expect(yield* Fiber.join(running)).toBe("ran")
      expect(yield* sent(world)).toHaveLength(4)
      // once it is done, the next trigger runs again
      yield* world.bus.setBeforeAppend(undefined)
      expect(yield* runner.trigger).toBe("ran")
      expect(yield* sent(world)).toHaveLength(8)
    }))

  it.scoped("§8.16: a failing send is logged and counted, never fatal, and retried until each agent's pair is out exactly once", () =>
    Effect.gen(function* () {
      const world = yield* probeWorld()
      const runner = yield* runnerOf(world)
      const before = yield* probeFailures

      // the first agent's send is refused: counted, retried after a back-off, out once
      yield* world.bus.failNextAppends(1)
      const refused = yield* Effect.fork(runner.trigger)
      yield* settle
      expect((yield* probeFailures) - before).toBe(1)
      yield* TestClock.adjust("2 seconds")
      expect(yield* Fiber.join(refused)).toBe("ran")
      expect(withoutTime(yield* sent(world))).toEqual([
        ...expectedPair("agent-a", "prod", knownIds["agent-a-prod"]),
        ...expectedPair("agent-b", "prod", knownIds["agent-b-prod"])
      ])

      // the second agent's pair reaches the log but its answer is lost: read back, found, not sent twice
      const calls = yield* Ref.make(0)
      yield* world.bus.setAfterAppend(() =>
        Effect.flatMap(Ref.updateAndGet(calls, (n) => n + 1), (n) => (n === 2 ? Effect.fail("connection lost") : Effect.void))
      )
      const lost = yield* Effect.fork(runner.trigger)
      yield* settle
      yield* TestClock.adjust("2 seconds")
      expect(yield* Fiber.join(lost)).toBe("ran")
      expect((yield* probeFailures) - before).toBe(2)
      expect(yield* sent(world)).toHaveLength(4 + 4)
      yield* world.bus.setAfterAppend(undefined)

      // the broker is down for a minute: waited out, then out once
      yield* world.bus.setDown(true)
      const down = yield* Effect.fork(runner.trigger)
      yield* settle
      yield* TestClock.adjust("1 minute")
      yield* world.bus.setDown(false)
      // the back-off is capped at 30 s, jittered: a retry comes within 36 s
      for (let i = 0; i < 8 && Option.isNone(yield* Fiber.poll(down)); i++) {
        yield* TestClock.adjust("5 seconds")
        yield* settle
      }
      expect(yield* Fiber.join(down)).toBe("ran")
      expect(yield* sent(world)).toHaveLength(8 + 4)
      expect((yield* probeFailures) - before).toBeGreaterThan(2)
    }))

  it.scoped("a half-done probe of a tick (the executor died between two agents) is completed by the next executor, nothing twice", () =>
    Effect.gen(function* () {
      const tick = Date.parse("2026-01-05T08:00:00Z")
      yield* TestClock.setTime(tick)
      const world = yield* probeWorld({ agents: ["agent-a", "agent-b", "agent-c"] })
      const cron = parseCron(defaultCronExpression)
      if (Either.isLeft(cron)) return yield* Effect.die(cron.left)
      // the first executor's probe: agent-a out, agent-b's batch appended but the process died
      // waiting for the answer, agent-c never sent
      const first = yield* runnerOf(world)
      yield* world.bus.setAfterAppend((records) =>
        records.some((r) => r.key === Probe.probeTaskId("agent-b", "prod")) ? Effect.interrupt : Effect.void
      )
      yield* Effect.exit(first.tick(tick))
      yield* world.bus.setAfterAppend(undefined)
      expect((yield* sent(world)).map((s) => s.key)).toEqual([
        knownIds["agent-a-prod"],
        knownIds["agent-a-prod"],
        knownIds["agent-b-prod"],
        knownIds["agent-b-prod"]
      ])

      // a fresh executor 10 minutes later completes that tick: agent-c only
      yield* TestClock.setTime(tick + 600_000)
      const second = yield* runnerOf(world)
      yield* Layer.build(HealthcheckCronLive(cron.right).pipe(Layer.provide(Layer.succeed(Healthcheck, second))))
      const all = yield* settleUntil(sent(world), (s) => s.length === 6)
      expect(all.map((s) => [s.key, s.appendedAt])).toEqual([
        [knownIds["agent-a-prod"], tick],
        [knownIds["agent-a-prod"], tick],
        [knownIds["agent-b-prod"], tick],
        [knownIds["agent-b-prod"], tick],
        [Probe.probeTaskId("agent-c", "prod"), tick + 600_000],
        [Probe.probeTaskId("agent-c", "prod"), tick + 600_000]
      ])
      // one more fresh executor: nothing is missing, nothing is sent
      const third = yield* runnerOf(world)
      yield* Layer.build(HealthcheckCronLive(cron.right).pipe(Layer.provide(Layer.succeed(Healthcheck, third))))
      yield* settle
      expect(yield* sent(world)).toHaveLength(6)
    }))

  it.scoped("a tick no executor probed (down at 08:00) is probed by one that starts within the hour, not by one that starts later", () =>
    Effect.gen(function* () {
      const tick = Date.parse("2026-01-05T08:00:00Z")
      const cron = parseCron(defaultCronExpression)
      if (Either.isLeft(cron)) return yield* Effect.die(cron.left)
      yield* TestClock.setTime(tick + 3_600_001)
      const late = yield* probeWorld()
      yield* Layer.build(HealthcheckCronLive(cron.right).pipe(Layer.provide(Layer.succeed(Healthcheck, yield* runnerOf(late)))))
      yield* settle
      expect(yield* sent(late)).toEqual([])

      yield* TestClock.setTime(tick + 60_000)
      const world = yield* probeWorld()
      yield* Layer.build(HealthcheckCronLive(cron.right).pipe(Layer.provide(Layer.succeed(Healthcheck, yield* runnerOf(world)))))
      const caughtUp = yield* settleUntil(sent(world), (all) => all.length === 4)
      expect(withoutTime(caughtUp)).toEqual([
        ...expectedPair("agent-a", "prod", knownIds["agent-a-prod"]),
        ...expectedPair("agent-b", "prod", knownIds["agent-b-prod"])
      ])
    }))
})

describe("healthcheck cron (§5.9, HEALTHCHECK_CRON_EXPRESSION)", () => {
  it("parseCron: the default is Mondays 08:00:00 UTC, six fields with seconds first; an invalid expression is a clear InvalidCron", () => {
    expect(defaultCronExpression).toBe("0 0 8 * * 1")
    const parsed = parseCron(defaultCronExpression)
    expect(Either.isRight(parsed)).toBe(true)
    if (Either.isRight(parsed)) {
      expect(Cron.next(parsed.right, new Date(MONDAY)).toISOString()).toBe("2026-01-05T08:00:00.000Z")
      expect(Cron.next(parsed.right, new Date(Date.parse("2026-01-05T08:00:00Z"))).toISOString()).toBe("2026-01-12T08:00:00.000Z")
    }
    for (const expression of ["not a cron", "0 0 25 * * 1", "61 0 8 * * 1", "0 0 8 * * 9", ""]) {
      const result = parseCron(expression)
      expect([expression, Either.isLeft(result)]).toEqual([expression, true])
      if (Either.isLeft(result)) {
        expect(result.left._tag).toBe("InvalidCron")
        expect(result.left.expression).toBe(expression)
        expect(result.left.message).toContain(`invalid cron expression "${expression}"`)
      }
    }
  })

  it.scoped("0 0 8 * * 1 fires on Monday 08:00:00 UTC, not a millisecond before, not on Tuesday, again the next Monday", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(MONDAY)
      const world = yield* probeWorld()
      const cron = parseCron(defaultCronExpression)
      if (Either.isLeft(cron)) return yield* Effect.die(cron.left)
      // the cron runner alone (no sweeper ticking every minute of the week)
      const runner = yield* runnerOf(world)
      yield* Layer.build(HealthcheckCronLive(cron.right).pipe(Layer.provide(Layer.succeed(Healthcheck, runner))))
      yield* settle
      yield* TestClock.setTime(Date.parse("2026-01-05T07:59:59.999Z"))
      yield* settle
      expect(yield* sent(world)).toEqual([])
      yield* TestClock.setTime(Date.parse("2026-01-05T08:00:00Z"))
      const first = yield* settleUntil(sent(world), (s) => s.length === 4)
      expect(first.map((s) => [s.operation, s.data["taskIdentifier"], s.appendedAt])).toEqual([
        ["create-task", knownIds["agent-a-prod"], Date.parse("2026-01-05T08:00:00Z")],
        ["update-frontmatter", knownIds["agent-a-prod"], Date.parse("2026-01-05T08:00:00Z")],
        ["create-task", knownIds["agent-b-prod"], Date.parse("2026-01-05T08:00:00Z")],
        ["update-frontmatter", knownIds["agent-b-prod"], Date.parse("2026-01-05T08:00:00Z")]
      ])
      // Tuesday 08:00 is no Monday
      yield* TestClock.setTime(Date.parse("2026-01-06T08:00:01Z"))
      yield* settle
      expect(yield* sent(world)).toHaveLength(4)
      yield* TestClock.setTime(Date.parse("2026-01-12T07:59:59.999Z"))
      yield* settle
      expect(yield* sent(world)).toHaveLength(4)
      yield* TestClock.setTime(Date.parse("2026-01-12T08:00:00Z"))
      const second = yield* settleUntil(sent(world), (s) => s.length === 8)
      expect(second.slice(4).map((s) => s.appendedAt)).toEqual(Array.from({ length: 4 }, () => Date.parse("2026-01-12T08:00:00Z")))
    }))

  it.scoped("through the executor: a send that fails at a cron tick is counted and retried within the tick; the cron keeps running", () =>
    Effect.gen(function* () {
      yield* TestClock.setTime(MONDAY)
      const world = yield* probeWorld({ agents: ["agent-a"] })
      const cron = parseCron("0 * * * * *")
      if (Either.isLeft(cron)) return yield* Effect.die(cron.left)
      yield* startExecutorIn(world, "full", { healthcheckCron: cron.right })
      // the executor starts right at a tick that nobody probed: it does so at once
      const caughtUp = yield* settleUntil(sent(world), (s) => s.length === 2)
      expect(caughtUp.map((s) => [s.operation, s.appendedAt])).toEqual([
        ["create-task", MONDAY],
        ["update-frontmatter", MONDAY]
      ])
      const before = yield* probeFailures
      yield* world.bus.failNextAppends(1)
      yield* TestClock.adjust("1 minute")
      yield* settleUntil(probeFailures, (n) => n - before === 1)
      expect((yield* probeFailures) - before).toBe(1)
      expect(yield* sent(world)).toHaveLength(2)
      yield* TestClock.adjust("2 seconds")
      const retried = (yield* settleUntil(sent(world), (s) => s.length === 4)).slice(2)
      expect(retried.map((s) => s.operation)).toEqual(["create-task", "update-frontmatter"])
      expect(retried[0]?.appendedAt).toBeGreaterThan(MONDAY + 60_000)
      expect(retried[0]?.appendedAt).toBeLessThan(MONDAY + 62_000)
      yield* TestClock.adjust("1 minute")
      const after = yield* settleUntil(sent(world), (s) => s.length === 6)
      expect(after.slice(4).map((s) => [s.operation, s.appendedAt])).toEqual([
        ["create-task", MONDAY + 120_000],
        ["update-frontmatter", MONDAY + 120_000]
      ])
    }))
})
