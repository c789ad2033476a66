/**
 * Crash consistency over a controller that reads uncommitted and never de-duplicates
 * (docs/contract.md#what-the-controller-does-with-them, docs/decisions.md#publish-once): the executor process dies at one exact step of a spawn, a verdict, a
 * type mismatch or a healthcheck probe (a cluster write hook or a bus append hook stops the whole
 * process right there), or a send's answer is lost (the batch is in the log, the executor is told
 * it failed), or the broker dies between the append and the answer. Then a fresh executor starts
 * over the same cluster and broker where the process died. Every task is driven end to end: the
 * controller model publishes its events and applies every command it sees, the executor consumes
 * them, the agent model reports the results of successful pods.
 *
 * Invariants checked in every test:
 * - every executor command is in the request topic exactly once (no request id twice), and the
 *   controller model applied none twice;
 * - the commands that belong together are adjacent on the task's partition: a spawn (increment,
 *   then notification), a zombie failure (update with current_job "", then increment);
 * - the task's `trigger_count` ends at spawns + verdicts exactly;
 * - never two active (not finished, not deleting) Jobs of one task, on every Job change;
 * - the consumer handled every task event (its committed position is the end of the topic).
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Cron, Effect, Either, Option, Ref, type Scope, Stream, TestClock } from "effect"
import { Commands, Frontmatter, Kube, Probe } from "@executor/domain"
import {
  AgentModel,
  ControllerModel,
  InMemoryBus,
  type InMemoryCluster,
  PodBehaviour,
  type World
} from "@executor/testkit"
import { agentSpec, at, jobByName, makeWorld, names, podsOf, trackedRuns, verdicts } from "./fixtures.js"

const taskId = "4aa57614-8835-4992-87e9-ca483ddbeae6"
const topics = Commands.topics("")

const frontmatter = {
  status: "in_progress",
  phase: "execution",
  assignee: "claude-agent",
  task_type: "llm",
  stage: "prod",
  max_triggers: 3
}

// ---------------------------------------------------------------------------------------------
// Crash points
// ---------------------------------------------------------------------------------------------

type Kind = "spawn" | "failure" | "type-mismatch" | "probe" | "other"

/** Where the executor process dies, or which answer gets lost. */
type CrashPoint =
  /** The write is not applied. */
  | { readonly _tag: "BeforeWrite"; readonly operation: InMemoryCluster.WriteOperation }
  /** The write is applied, the process dies before it sees the response. */
  | { readonly _tag: "AfterWrite"; readonly operation: InMemoryCluster.WriteOperation }
  /** The process dies before its batch reaches the log. */
  | { readonly _tag: "BeforeAppend"; readonly kind: Kind }
  /** The batch is in the log; the process dies at once, before it hears so. */
  | { readonly _tag: "AfterAppend"; readonly kind: Kind }
  /** The batch is in the log; its answer is lost (a connection cut mid-produce); the process lives. */
  | { readonly _tag: "AckLost"; readonly kind: Kind }
  /** The batch is in the log; the broker dies before answering and is back 30 s later. */
  | { readonly _tag: "BrokerCrash"; readonly kind: Kind }

const dies = (point: CrashPoint) => point._tag !== "AckLost" && point._tag !== "BrokerCrash"

interface Decoded {
  readonly key: string | null
  readonly requestId: string
  readonly operation: string
  readonly data: Readonly<Record<string, unknown>>
  readonly initiator: string
}

const decode = (key: string | null, value: string): Decoded => {
  const envelope = JSON.parse(value) as { requestID: string; operation: string; initiator: string; data: Record<string, unknown> }
  return { key, requestId: envelope.requestID, operation: envelope.operation, data: envelope.data, initiator: envelope.initiator }
}

const updatesOf = (command: Decoded): Readonly<Record<string, unknown>> =>
  command.operation === "update-frontmatter" && typeof command.data["updates"] === "object" && command.data["updates"] !== null
    ? (command.data["updates"] as Record<string, unknown>)
    : {}

const isSpawnNotification = (command: Decoded) => updatesOf(command)["spawn_notification"] === true
const isFailureUpdate = (command: Decoded) => updatesOf(command)["current_job"] === "" && !("assignee" in updatesOf(command))
const isMismatch = (command: Decoded) => updatesOf(command)["assignee"] === "" && command.operation === "update-frontmatter"
const isTriggerIncrement = (command: Decoded) =>
  command.operation === "increment-frontmatter" && command.data["field"] === "trigger_count" && command.data["delta"] === 1

const kindOf = (messages: ReadonlyArray<InMemoryBus.BusMessage>): Kind => {
  const commands = messages.map((m) => decode(m.key, m.value))
  if (commands.some((c) => c.operation === "create-task")) return "probe"
  if (commands.some(isSpawnNotification)) return "spawn"
  if (commands.some(isFailureUpdate)) return "failure"
  if (commands.some(isMismatch)) return "type-mismatch"
  return "other"
}

const sectionLine = (command: Decoded, key: string): string => {
  const body = command.data["body"] as { readonly section?: string } | undefined
  return (body?.section ?? "").split("\n").find((l) => l.startsWith(`- **${key}:** `))?.slice(`- **${key}:** `.length) ?? ""
}

// ---------------------------------------------------------------------------------------------
// The harness: a world, the controller and agent models, a crash switch and the invariant probes
// ---------------------------------------------------------------------------------------------

interface Ledger {
  /** Job names of the spawn notifications of the task, in log order. */
  readonly spawns: ReadonlyArray<string>
  /** [job, reason] of the zombie failures of the task, in log order. */
  readonly failures: ReadonlyArray<readonly [string, string]>
  /** Type mismatch (and spawn rejection) updates of the task. */
  readonly mismatches: number
  /** Probe groups (create-task and its update) per probe task id. */
  readonly probes: ReadonlyMap<string, number>
  readonly triggerIncrements: number
  /** Increments of spawns whose notification was never sent because their run had ended first. */
  readonly lateSpawnIncrements: number
  /** Executor commands that are not where they belong, or are there twice. */
  readonly problems: ReadonlyArray<string>
}

interface HarnessOptions {
  readonly spec?: Record<string, unknown>
  readonly cron?: Cron.Cron
  readonly extraAgents?: ReadonlyArray<readonly [string, Record<string, unknown>]>
}

const harness = (podBehaviour: PodBehaviour.Resolver, options: HarnessOptions = {}) =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    const world = yield* makeWorld(podBehaviour, options.spec ?? {})
    for (const [name, spec] of options.extraAgents ?? []) yield* world.cluster.applyConfig(name, spec)
    const controller = yield* ControllerModel.make(world.bus, { topicPrefix: world.settings.topicPrefix })
    yield* AgentModel.make(world.bus, world.cluster, controller, {
      topicPrefix: world.settings.topicPrefix,
      taskIdLabel: names.taskIdLabel
    })

    const current = yield* Ref.make(Option.none<World.ExecutorProcess>())
    const armed = yield* Ref.make(Option.none<CrashPoint>())
    const crashedAt = yield* Ref.make(Option.none<number>())
    const fired = yield* Ref.make(false)
    const processes = yield* Ref.make<ReadonlyArray<{ readonly process: World.ExecutorProcess; readonly stopped: Ref.Ref<boolean> }>>([])
    const notices: Array<InMemoryCluster.ClusterNotice> = []
    const violations: Array<string> = []

    /**
     * Kills a process from outside its own fibers (a daemon: it never waits on the test, nor the
     * test on it). `stop` is meant to return at once; `stopped` tells whether it did.
     */
    const kill = (process: World.ExecutorProcess) =>
      Effect.gen(function* () {
        const entry = (yield* Ref.get(processes)).find((p) => p.process === process)
        yield* Effect.forkDaemon(
          Effect.zipRight(process.stop, entry === undefined ? Effect.void : Ref.set(entry.stopped, true))
        )
      })

    /** The crash: the current process dies right here; the calling step never completes. */
    const crashNow = Effect.gen(function* () {
      yield* Ref.set(crashedAt, Option.some(yield* Clock.currentTimeMillis))
      const process = yield* Ref.get(current)
      if (Option.isSome(process)) yield* kill(process.value)
    })

    /** Takes the armed crash point when it matches: it fires once. */
    const take = (matches: (point: CrashPoint) => boolean) =>
      Effect.tap(
        Ref.modify(armed, (point): readonly [boolean, Option.Option<CrashPoint>] =>
          Option.isSome(point) && matches(point.value) ? [true, Option.none()] : [false, point]
        ),
        (hit) => (hit ? Ref.set(fired, true) : Effect.void)
      )

    const writeHook =
      (tag: "BeforeWrite" | "AfterWrite"): InMemoryCluster.WriteHook =>
      (write) =>
        Effect.flatMap(
          take((p) => p._tag === tag && p.operation === write.operation),
          (hit) => (hit ? Effect.zipRight(crashNow, Effect.never) : Effect.void)
        )
    yield* world.cluster.setBeforeWrite(writeHook("BeforeWrite"))
    yield* world.cluster.setAfterWrite(writeHook("AfterWrite"))
    yield* world.bus.setBeforeAppend((batch) =>
      Effect.flatMap(
        take((p) => p._tag === "BeforeAppend" && p.kind === kindOf(batch.messages)),
        (hit) => (hit ? Effect.zipRight(crashNow, Effect.never) : Effect.void)
      )
    )
    yield* world.bus.setAfterAppend((records) =>
      Effect.gen(function* () {
        const kind = kindOf(records)
        if (yield* take((p) => p._tag === "AfterAppend" && p.kind === kind)) {
          yield* crashNow
          return yield* Effect.never
        }
        if (yield* take((p) => p._tag === "AckLost" && p.kind === kind)) {
          return yield* Effect.fail("connection lost before the answer")
        }
        if (yield* take((p) => p._tag === "BrokerCrash" && p.kind === kind)) {
          yield* world.bus.setDown(true)
          yield* Effect.forkIn(Effect.zipRight(Effect.sleep("30 seconds"), world.bus.setDown(false)), scope)
          return yield* Effect.fail("broker died before answering")
        }
      })
    )

    // Invariant probe: at no moment two active Jobs of one task (every Job change, in order).
    const live = new Map<string, Kube.Job>()
    yield* world.cluster.watch.jobEvents.pipe(
      Stream.runForEach((event) =>
        Effect.flatMap(Clock.currentTimeMillis, (t) =>
          Effect.sync(() => {
            if (event._tag === "Synced") return
            const job = event.object
            if (event._tag === "Delete") live.delete(job.metadata.name)
            else live.set(job.metadata.name, job)
            const byTask = new Map<string, Array<string>>()
            for (const j of live.values()) {
              const task = Kube.label(j.metadata, names.taskIdLabel)
              if (task === "" || !Kube.jobActive(j) || Kube.isDeleting(j.metadata)) continue
              byTask.set(task, [...(byTask.get(task) ?? []), j.metadata.name])
            }
            for (const [task, active] of byTask) {
              if (active.length > 1) violations.push(`t=${t} task ${task}: active Jobs ${active.join(", ")}`)
            }
          })
        )
      ),
      Effect.forkIn(scope)
    )
    yield* world.cluster.notices.pipe(
      Stream.runForEach((notice) => Effect.sync(() => void notices.push(notice))),
      Effect.forkIn(scope)
    )

    const start: Effect.Effect<World.ExecutorProcess, never, Scope.Scope> = Effect.gen(function* () {
      const process = yield* world.startExecutor("full", options.cron === undefined ? {} : { healthcheckCron: options.cron })
      const stopped = yield* Ref.make(false)
      yield* Ref.update(processes, (all) => [...all, { process, stopped }])
      yield* Ref.set(current, Option.some(process))
      // Runs before the world's own `stop` of this process: a process still alive at the end is
      // stopped by a daemon, so a `stop` that does not return cannot hang the test's scope.
      yield* Effect.addFinalizer(() =>
        Effect.flatMap(Ref.get(stopped), (done) =>
          done ? Effect.void : Effect.zipRight(kill(process), TestClock.adjust("11 seconds"))
        )
      )
      return process
    })

    /** True once every process started so far has stopped (a fresh one must not overlap a dying one). */
    const allStopped = Effect.gen(function* () {
      const all = yield* Ref.get(processes)
      const states = yield* Effect.forEach(all, (p) => Ref.get(p.stopped))
      return states.every((stopped) => stopped)
    })

    /** The executor's commands in the log, classified, with what is out of place. */
    const ledger = Effect.gen(function* () {
      const commands = (yield* world.bus.records(topics.request)).map((r) => ({ offset: r.offset, ...decode(r.key, r.value) }))
      const mine = commands.filter((c) => c.initiator === "executor")
      const spawns: Array<string> = []
      const failures: Array<readonly [string, string]> = []
      const probes = new Map<string, number>()
      const problems: Array<string> = []
      let triggerIncrements = 0
      let lateSpawnIncrements = 0
      let mismatches = 0
      const seen = new Set<string>()
      for (const command of mine) {
        if (seen.has(command.requestId)) problems.push(`offset ${command.offset}: ${command.operation} ${command.requestId} twice`)
        seen.add(command.requestId)
      }
      // pairs are adjacent on the partition (one partition here): the record before or after
      const at = (i: number) => commands[i]
      commands.forEach((command, i) => {
        if (command.initiator !== "executor") return
        const keyed = command.key === command.data["taskIdentifier"]
        if (!keyed) problems.push(`offset ${command.offset}: key ${command.key} is not the task`)
        const before = at(i - 1)
        const after = at(i + 1)
        const sameTask = (other: Decoded | undefined) => other !== undefined && other.key === command.key && other.initiator === "executor"
        if (command.operation === "create-task") {
          const taskOf = String(command.data["taskIdentifier"])
          if (!(sameTask(after) && after?.operation === "update-frontmatter")) problems.push(`offset ${command.offset}: probe without its update`)
          probes.set(taskOf, (probes.get(taskOf) ?? 0) + 1)
          return
        }
        if (command.data["taskIdentifier"] !== taskId) return
        if (isTriggerIncrement(command)) {
          triggerIncrements++
          if (sameTask(before) && before !== undefined && isFailureUpdate(before)) return
          if (sameTask(after) && after !== undefined && isSpawnNotification(after)) return
          lateSpawnIncrements++
        } else if (isSpawnNotification(command)) {
          if (!(sameTask(before) && before !== undefined && isTriggerIncrement(before))) {
            problems.push(`offset ${command.offset}: spawn notification without its increment`)
          }
          spawns.push(String(updatesOf(command)["current_job"]))
        } else if (isFailureUpdate(command)) {
          if (!(sameTask(after) && after !== undefined && isTriggerIncrement(after))) {
            problems.push(`offset ${command.offset}: failure update without its increment`)
          }
          failures.push([sectionLine(command, "Job"), sectionLine(command, "Reason")])
        } else if (isMismatch(command)) {
          mismatches++
        }
      })
      return { spawns, failures, mismatches, probes, triggerIncrements, lateSpawnIncrements, problems } satisfies Ledger
    })

    /** Names of the Jobs created for the task, in creation order (one entry per Job object). */
    const created = Effect.sync(() =>
      notices.filter((n) => n._tag === "JobCreated" && n.taskId === taskId).map((n) => n.jobName)
    )
    const deleted = Effect.sync(() =>
      notices.filter((n) => n._tag === "JobDeleted" && n.taskId === taskId).map((n) => n.jobName)
    )

    /** How the task ended: completed, in the operator inbox, or with a Job that really runs. */
    const outcome = Effect.gen(function* () {
      const task = (yield* controller.tasks).get(taskId)
      if (task === undefined) return "missing"
      const fm = task.frontmatter
      if (Frontmatter.status(fm) === "completed") return "completed"
      const jobs = (yield* world.cluster.jobsSnapshot).filter((j) => Kube.label(j.metadata, names.taskIdLabel) === taskId)
      const active = jobs.filter((j) => Kube.jobActive(j) && !Kube.isDeleting(j.metadata))
      const currentJob = active.find((j) => j.metadata.name === Frontmatter.currentJob(fm))
      if (currentJob !== undefined) {
        const pods = yield* podsOf(world, currentJob.metadata.name)
        if (pods.some((p) => p.status?.phase === "Running")) return "running"
      }
      if (Frontmatter.assignee(fm) === "" && active.length === 0) return "inbox"
      return `stuck: ${JSON.stringify({ fm, active: active.map((j) => j.metadata.name) })}`
    })

    /** The consumer handled every task event: its committed position is the end of the topic. */
    const consumerCaughtUp = Effect.gen(function* () {
      const events = yield* world.bus.records(topics.event)
      const position = yield* world.bus.committedOffset(InMemoryBus.executorGroup, topics.event)
      return Option.getOrElse(position, () => "none") === String(events.length)
    })

    const verdictsByJob = Effect.map(verdicts(world), (list) =>
      list.filter((v) => v.taskId === taskId).map((v) => [v.jobName ?? "", v.reason] as const)
    )

    const triggerCount = Effect.map(controller.task(taskId), (task) =>
      Option.match(task, { onNone: () => 0, onSome: (t) => Frontmatter.triggerCount(t.frontmatter) })
    )

    return {
      world,
      controller,
      start,
      kill,
      allStopped,
      arm: (point: CrashPoint) => Ref.set(armed, Option.some(point)),
      fired: Ref.get(fired),
      crashedAt: Effect.map(Ref.get(crashedAt), Option.getOrUndefined),
      ledger,
      created,
      deleted,
      outcome,
      consumerCaughtUp,
      verdictsByJob,
      triggerCount,
      violations: Effect.sync(() => [...violations]),
      edit: (fm: Record<string, unknown> = frontmatter) => controller.edit(taskId, fm, "# Fix the flaky test")
    }
  })

type Harness = Effect.Effect.Success<ReturnType<typeof harness>>

/** The killed process is gone before a fresh one starts: `stop` returns at once (World, `restartExecutor`). */
const expectDead = (h: Harness) =>
  Effect.map(h.allStopped, (stopped) =>
    expect(stopped, "a killed executor process did not stop: ExecutorProcess.stop must return at once").toBe(true)
  )

/** The invariants every test ends with. */
const expectInvariants = (h: Harness) =>
  Effect.gen(function* () {
    const ledger = yield* h.ledger
    expect(yield* h.violations).toEqual([])
    expect(ledger.problems).toEqual([])
    // the controller applied no command twice (it would: it never de-duplicates)
    const applied = (yield* h.controller.applied).map((c) => c.requestId)
    expect(applied.length).toBe(new Set(applied).size)
    expect(yield* h.controller.expired).toEqual([])
    // one increment per spawn and one per verdict, nothing else, and the task counted exactly that
    expect(ledger.triggerIncrements).toBe(ledger.spawns.length + ledger.lateSpawnIncrements + ledger.failures.length)
    expect(yield* h.triggerCount).toBe((yield* h.created).length + (yield* h.verdictsByJob).filter(([job]) => job !== "").length)
    expect(yield* h.consumerCaughtUp).toBe(true)
    return ledger
  })

const zombieThenSuccess = PodBehaviour.plan({
  default: [PodBehaviour.invalidImage, PodBehaviour.succeed("1 minute")]
})

/** Starts, arms, edits the task and runs to `crashBy` s; a fresh executor at `restartAt` s when the point kills. */
const runWith = (h: Harness, point: CrashPoint, crashBy: number, restartAt: number) =>
  Effect.gen(function* () {
    yield* h.arm(point)
    yield* h.start
    yield* h.edit()
    yield* at(crashBy)
    expect(yield* h.fired, "the crash point was reached").toBe(true)
    if (dies(point)) {
      yield* at(restartAt)
      yield* expectDead(h)
      yield* h.start
    }
  })

// ---------------------------------------------------------------------------------------------
// The premise: a stopped process is dead at once (World.ExecutorProcess.stop, `restartExecutor`)
// ---------------------------------------------------------------------------------------------

describe("killing an executor process", () => {
  it.scoped("stop returns at once, without the clock moving, also while a verdict waits for its send", () =>
    Effect.gen(function* () {
      const h = yield* harness(zombieThenSuccess)
      const idle = yield* h.start
      yield* at(1)
      yield* h.kill(idle)
      yield* TestClock.adjust(0)
      const idleStopped = yield* h.allStopped

      // a verdict pipeline blocked in its send: it must be cut off, not waited for
      yield* h.world.bus.setBeforeAppend((batch) => (kindOf(batch.messages) === "failure" ? Effect.never : Effect.void))
      const busy = yield* h.start
      yield* h.edit()
      yield* at(10)
      expect((yield* h.verdictsByJob).map(([, reason]) => reason)).toEqual(["pod_config_error"])
      yield* h.kill(busy)
      yield* TestClock.adjust(0)
      const busyStopped = yield* h.allStopped
      expect([idleStopped, busyStopped]).toEqual([true, true])
    }))
})

// ---------------------------------------------------------------------------------------------
// Spawn (D6.1)
// ---------------------------------------------------------------------------------------------

describe("a crash or a lost answer inside the spawn sequence (D6.1)", () => {
  /** [label, point, spawn records in the log right after it] */
  const points: ReadonlyArray<readonly [string, CrashPoint, number]> = [
    ["dies after the Job create (afterWrite createJob)", { _tag: "AfterWrite", operation: "createJob" }, 0],
    ["dies before the spawn batch reaches the log", { _tag: "BeforeAppend", kind: "spawn" }, 0],
    ["dies after the spawn batch is in the log, before it hears so", { _tag: "AfterAppend", kind: "spawn" }, 2],
    ["the spawn batch is in the log, its answer lost", { _tag: "AckLost", kind: "spawn" }, 2],
    ["the spawn batch is in the log, the broker dies before answering (back after 30 s)", { _tag: "BrokerCrash", kind: "spawn" }, 2]
  ]

  for (const [label, point, inLog] of points) {
    const restarts = dies(point) ? [3, 30] : [0]
    for (const restartAt of restarts) {
      const when = restartAt === 0 ? "" : restartAt < 6 ? "; fresh executor before the zombie shows" : "; fresh executor after the zombie shows"
      it.scoped(`${label}${when}: one Job for the attempt, its spawn once, judged once, the retry completes`, () =>
        Effect.gen(function* () {
          const h = yield* harness(zombieThenSuccess)
          yield* h.arm(point)
          yield* h.start
          yield* h.edit()
          yield* at(restartAt === 0 ? 0 : 2)
          expect(yield* h.fired).toBe(true)
          const [job] = yield* h.created
          const spawnRecords = (yield* h.world.bus.records(topics.request)).filter((r) => r.key === taskId)
          expect(spawnRecords).toHaveLength(inLog)
          if (dies(point)) {
            expect(yield* h.crashedAt).toBe(0)
            expect((yield* h.world.cluster.writes).map((w) => w.operation)).toEqual(["createJob"])
            yield* at(restartAt)
            yield* expectDead(h)
            const second = yield* h.start
            yield* at(restartAt + 1)
            // before the zombie shows, the fresh executor tracks the run (after, it has judged it already)
            if (restartAt < 6) expect((yield* trackedRuns(second)).map((r) => r.jobName)).toEqual([job])
          }
          yield* at(200)

          const ledger = yield* expectInvariants(h)
          const [first, retry, ...others] = yield* h.created
          expect(first).toBe(job)
          expect(others).toEqual([])
          expect(retry).toBeDefined()
          expect(ledger.spawns).toEqual([job, retry])
          expect(ledger.lateSpawnIncrements).toBe(0)
          expect(ledger.failures).toEqual([[job, "pod_config_error"]])
          expect(yield* h.verdictsByJob).toEqual([[job, "pod_config_error"]])
          expect(yield* h.triggerCount).toBe(3)
          expect(yield* jobByName(h.world, job ?? "")).toBeUndefined()
          expect(yield* h.outcome).toBe("completed")
          // an uncertain answer is resolved by reading the partition back, not by sending again
          if (!dies(point)) expect((yield* h.world.bus.readBacks).length).toBeGreaterThanOrEqual(1)
        }))
    }
  }

  it.scoped("dies after the create; the run ends (the pod succeeds and reports) while no executor runs: the lost spawn is charged, not made current", () =>
    Effect.gen(function* () {
      const h = yield* harness(PodBehaviour.always(PodBehaviour.succeed("1 minute")))
      yield* runWith(h, { _tag: "AfterWrite", operation: "createJob" }, 2, 120)
      yield* at(300)
      const ledger = yield* expectInvariants(h)
      const [job, ...others] = yield* h.created
      expect(others).toEqual([])
      expect(ledger.spawns).toEqual([])
      expect(ledger.lateSpawnIncrements).toBe(1)
      expect(yield* h.triggerCount).toBe(1)
      expect(yield* h.outcome).toBe("completed")
      expect((yield* jobByName(h.world, job ?? ""))?.metadata.finalizers ?? []).toEqual([])
    }))
})

// ---------------------------------------------------------------------------------------------
// Verdict (D6.2, D6.3)
// ---------------------------------------------------------------------------------------------

describe("a crash or a lost answer inside the verdict sequence (D6.2, D6.3)", () => {
  /** [label, point, failure pairs in the log right after it, Job deleting by then] */
  const points: ReadonlyArray<readonly [string, CrashPoint, number, boolean]> = [
    ["dies after the mark and its placement (afterWrite annotateJob)", { _tag: "AfterWrite", operation: "annotateJob" }, 0, false],
    ["dies before the failure batch reaches the log", { _tag: "BeforeAppend", kind: "failure" }, 0, false],
    ["dies after the failure batch is in the log, before it hears so", { _tag: "AfterAppend", kind: "failure" }, 1, false],
    ["the failure batch is in the log, its answer lost", { _tag: "AckLost", kind: "failure" }, 1, false],
    ["the failure batch is in the log, the broker dies before answering", { _tag: "BrokerCrash", kind: "failure" }, 1, false],
    ["dies at the Event (beforeWrite recordJobEvent)", { _tag: "BeforeWrite", operation: "recordJobEvent" }, 1, false],
    ["dies before the delete (beforeWrite deleteJob)", { _tag: "BeforeWrite", operation: "deleteJob" }, 1, false],
    ["dies after the delete, before the finalizer is released", { _tag: "BeforeWrite", operation: "removeJobFinalizer" }, 1, true]
  ]

  for (const [label, point, atCrash, deleting] of points) {
    it.scoped(`${label}: the failure pair once, the zombie Job ends deleted and released, the retry runs`, () =>
      Effect.gen(function* () {
        const h = yield* harness(zombieThenSuccess)
        yield* h.arm(point)
        yield* h.start
        yield* h.edit()
        yield* at(10)
        expect(yield* h.fired).toBe(true)
        const [job, ...more] = yield* h.created
        expect((yield* h.ledger).failures).toHaveLength(atCrash)
        if (dies(point)) {
          expect(more).toEqual([])
          expect(yield* h.crashedAt).toBe(6000)
          const marked = yield* jobByName(h.world, job ?? "")
          const mark = JSON.parse(marked?.metadata.annotations?.[names.verdictAnnotation] ?? "{}") as Record<string, unknown>
          expect(mark).toMatchObject({ reason: "pod_config_error", publish: { group: expect.stringContaining(`verdict/${job}/`), partition: 0 } })
          expect(marked?.metadata.finalizers).toEqual([names.finalizer])
          expect(marked?.metadata.deletionTimestamp !== undefined).toBe(deleting)
          yield* at(30)
          yield* expectDead(h)
          yield* h.start
        }
        yield* at(200)

        const ledger = yield* expectInvariants(h)
        expect(ledger.failures).toEqual([[job, "pod_config_error"]])
        expect(yield* h.verdictsByJob).toEqual([[job, "pod_config_error"]])
        expect(yield* jobByName(h.world, job ?? "")).toBeUndefined()
        expect(yield* h.deleted).toContain(job)
        const [, retry, ...others] = yield* h.created
        expect(others).toEqual([])
        expect(retry).toBeDefined()
        expect(ledger.spawns).toEqual([job, retry])
        expect(yield* h.triggerCount).toBe(3)
        expect(yield* h.outcome).toBe("completed")
      }))
  }

  it.scoped("a verdict delayed 10 minutes by a broker outage is applied when the broker returns: its requestTime is the real send", () =>
    Effect.gen(function* () {
      const h = yield* harness(zombieThenSuccess)
      yield* h.start
      yield* h.edit()
      yield* at(3)
      yield* h.world.bus.setDown(true)
      yield* at(6)
      expect((yield* h.verdictsByJob).map(([, reason]) => reason)).toEqual(["pod_config_error"])
      yield* at(606)
      yield* h.world.bus.setDown(false)
      yield* at(900)
      const ledger = yield* expectInvariants(h)
      const [job] = yield* h.created
      expect(ledger.failures).toEqual([[job, "pod_config_error"]])
      const failure = (yield* h.controller.applied).find((c) => c.operation === "update-frontmatter" && c.at > 600_000)
      expect(failure).toBeDefined()
      expect(Date.parse(failure?.requestTime ?? "")).toBeGreaterThanOrEqual(606_000)
      expect(yield* h.triggerCount).toBe(3)
      expect(yield* h.outcome).toBe("completed")
    }))
})

// ---------------------------------------------------------------------------------------------
// Type mismatch (docs/decisions.md#doctrine): a command caused by an event, without a Job
// ---------------------------------------------------------------------------------------------

describe("a crash or a lost answer while a type mismatch is published", () => {
  const points: ReadonlyArray<readonly [string, CrashPoint, number]> = [
    ["dies before the mismatch reaches the log", { _tag: "BeforeAppend", kind: "type-mismatch" }, 0],
    ["dies after the mismatch is in the log, before it hears so", { _tag: "AfterAppend", kind: "type-mismatch" }, 1],
    ["the mismatch is in the log, its answer lost", { _tag: "AckLost", kind: "type-mismatch" }, 1],
    ["the mismatch is in the log, the broker dies before answering", { _tag: "BrokerCrash", kind: "type-mismatch" }, 1]
  ]
  for (const [label, point, inLog] of points) {
    it.scoped(`${label}: the mismatch once, the task in the operator inbox, the event committed`, () =>
      Effect.gen(function* () {
        const h = yield* harness(PodBehaviour.always(PodBehaviour.hang))
        yield* h.arm(point)
        yield* h.start
        yield* h.edit({ ...frontmatter, task_type: "code-review" })
        yield* at(1)
        expect(yield* h.fired).toBe(true)
        expect((yield* h.ledger).mismatches).toBe(inLog)
        if (dies(point)) {
          // the event stays unconsumed, its placement held in the group's offset metadata
          const held = yield* h.world.bus.committedMetadata(InMemoryBus.executorGroup, topics.event, 0)
          expect(Option.map(held, (p) => [p.offset, JSON.parse(p.metadata).group])).toEqual(
            Option.some(["0", `event/${topics.event}/0/0/type-mismatch`])
          )
          yield* at(20)
          yield* expectDead(h)
          yield* h.start
        }
        yield* at(120)
        const ledger = yield* expectInvariants(h)
        expect(ledger.mismatches).toBe(1)
        expect(yield* h.created).toEqual([])
        const task = Option.getOrUndefined(yield* h.controller.task(taskId))
        expect([task?.frontmatter["assignee"], task?.frontmatter["previous_assignee"]]).toEqual(["", "claude-agent"])
        expect(yield* h.outcome).toBe("inbox")
      }))
  }
})

// ---------------------------------------------------------------------------------------------
// Healthcheck probe
// ---------------------------------------------------------------------------------------------

describe("a crash or a lost answer during a healthcheck probe", () => {
  // daily at 00:05: the world starts at midnight, so the only tick is at 300 s
  const cron = Either.getOrThrow(Cron.parse("0 5 0 * * *", "UTC"))
  const agents = ["claude-agent", "other-agent"]
  const points: ReadonlyArray<readonly [string, CrashPoint]> = [
    ["dies before the first agent's probe reaches the log", { _tag: "BeforeAppend", kind: "probe" }],
    ["dies after the first agent's probe is in the log, before it hears so", { _tag: "AfterAppend", kind: "probe" }],
    ["the first agent's probe is in the log, its answer lost", { _tag: "AckLost", kind: "probe" }],
    ["the first agent's probe is in the log, the broker dies before answering", { _tag: "BrokerCrash", kind: "probe" }]
  ]
  for (const [label, point] of points) {
    it.scoped(`${label}: every agent's probe once (a fresh executor completes the tick)`, () =>
      Effect.gen(function* () {
        const h = yield* harness(PodBehaviour.always(PodBehaviour.hang), {
          cron,
          extraAgents: [["other", agentSpec({ assignee: "other-agent" })]]
        })
        yield* h.arm(point)
        yield* h.start
        yield* at(301)
        expect(yield* h.fired).toBe(true)
        if (dies(point)) {
          yield* at(320)
          yield* expectDead(h)
          yield* h.start
        }
        yield* at(500)
        const ledger = yield* expectInvariants(h)
        expect(Object.fromEntries(ledger.probes)).toEqual(
          Object.fromEntries(agents.map((agent) => [Probe.probeTaskId(agent, "prod"), 1]))
        )
      }))
  }
})

// ---------------------------------------------------------------------------------------------
// Scenario restarts (simulation.md `restartExecutor`, `deleteJob`)
// ---------------------------------------------------------------------------------------------

/** `restartExecutor`: the executor process dies at `from` seconds, a fresh one starts at `to`. */
const restart = (h: Harness, process: World.ExecutorProcess, from: number, to: number) =>
  Effect.gen(function* () {
    yield* at(from)
    yield* h.kill(process)
    yield* at(to)
    yield* expectDead(h)
    return yield* h.start
  })

describe("executor restarts while tasks run end to end", () => {
  it.scoped("restarted while the pod pulls a broken image: image_pull_backoff once, the retry completes the task", () =>
    Effect.gen(function* () {
      const h = yield* harness(PodBehaviour.plan({ default: [PodBehaviour.imagePullFails, PodBehaviour.succeed("2 minutes")] }))
      const first = yield* h.start
      yield* h.edit()
      yield* restart(h, first, 20, 50)
      yield* at(300)
      const ledger = yield* expectInvariants(h)
      const [job, retry, ...others] = yield* h.created
      expect(others).toEqual([])
      expect(ledger.failures).toEqual([[job, "image_pull_backoff"]])
      expect(yield* h.verdictsByJob).toEqual([[job, "image_pull_backoff"]])
      expect(ledger.spawns).toEqual([job, retry])
      expect(yield* h.outcome).toBe("completed")
    }))

  it.scoped("restarted while a run hangs, twice: deadline_exceeded once per Job, then the task is in the operator inbox", () =>
    Effect.gen(function* () {
      const h = yield* harness(PodBehaviour.always(PodBehaviour.hang), { spec: { zombieJobTimeoutSeconds: 600 } })
      const first = yield* h.start
      yield* h.edit()
      const second = yield* restart(h, first, 100, 160)
      yield* restart(h, second, 700, 760)
      yield* at(1260)
      const ledger = yield* expectInvariants(h)
      const [job, retry, ...others] = yield* h.created
      expect(others).toEqual([])
      expect(ledger.failures).toEqual([
        [job, "deadline_exceeded"],
        [retry, "deadline_exceeded"]
      ])
      expect(yield* h.verdictsByJob).toEqual([
        [job, "deadline_exceeded"],
        [retry, "deadline_exceeded"]
      ])
      expect(ledger.spawns).toEqual([job, retry])
      expect(yield* h.outcome).toBe("inbox")
    }))

  it.scoped("restarted while a run succeeds: no verdict, the task completes", () =>
    Effect.gen(function* () {
      const h = yield* harness(PodBehaviour.always(PodBehaviour.succeed("5 minutes")))
      const first = yield* h.start
      yield* h.edit()
      yield* restart(h, first, 60, 120)
      yield* at(400)
      const ledger = yield* expectInvariants(h)
      const [job, ...others] = yield* h.created
      expect(others).toEqual([])
      expect(ledger.failures).toEqual([])
      expect(yield* h.verdictsByJob).toEqual([])
      expect(ledger.spawns).toEqual([job])
      expect(yield* h.outcome).toBe("completed")
      expect((yield* jobByName(h.world, job ?? ""))?.metadata.finalizers ?? []).toEqual([])
    }))

  it.scoped("down while the run succeeds and reports: no verdict, the finalizer released, the task completes", () =>
    Effect.gen(function* () {
      const h = yield* harness(PodBehaviour.always(PodBehaviour.succeed("5 minutes")))
      const first = yield* h.start
      yield* h.edit()
      const second = yield* restart(h, first, 100, 400)
      yield* at(420)
      const ledger = yield* expectInvariants(h)
      const [job, ...others] = yield* h.created
      expect(others).toEqual([])
      expect(ledger.failures).toEqual([])
      expect(yield* h.verdictsByJob).toEqual([])
      expect(yield* h.outcome).toBe("completed")
      expect((yield* jobByName(h.world, job ?? ""))?.metadata.finalizers ?? []).toEqual([])
      expect(yield* trackedRuns(second)).toEqual([])
    }))

  it.scoped("its Job deleted by an operator while the executor is down: executor_watch_lost once, the retry completes", () =>
    Effect.gen(function* () {
      const h = yield* harness(PodBehaviour.plan({ default: [PodBehaviour.hang, PodBehaviour.succeed("1 minute")] }))
      const first = yield* h.start
      yield* h.edit()
      yield* at(50)
      yield* h.kill(first)
      const [job] = yield* h.created
      yield* at(60)
      yield* h.world.cluster.deleteJob(job ?? "")
      yield* at(120)
      yield* expectDead(h)
      yield* h.start
      yield* at(180)
      expect(yield* h.verdictsByJob).toEqual([[job, "executor_watch_lost"]])
      yield* at(300)
      const ledger = yield* expectInvariants(h)
      const [, retry, ...others] = yield* h.created
      expect(others).toEqual([])
      expect(ledger.failures).toEqual([[job, "executor_watch_lost"]])
      expect(yield* h.verdictsByJob).toEqual([[job, "executor_watch_lost"]])
      expect(ledger.spawns).toEqual([job, retry])
      expect(yield* jobByName(h.world, job ?? "")).toBeUndefined()
      expect(yield* h.outcome).toBe("completed")
    }))
})
