/**
 * Crash consistency (decisions D4.2, D4.8, D6.1-D6.3): the executor process dies at one exact step
 * of the spawn or of the verdict sequence (a cluster write hook or a bus commit hook stops the whole
 * process right there), then a fresh executor starts over the same cluster and broker. Every task
 * is driven end to end: the controller model publishes its events, the executor consumes them, the
 * agent model reports the results of successful pods.
 *
 * Invariants checked in every test:
 * - never two active (not finished, not deleting) Jobs of one task, on every Job change;
 * - every committed executor command belongs to a committed transaction of one of two shapes:
 *   a spawn (increment trigger_count, then the spawn notification) or a zombie failure (the update
 *   with current_job "", then the increment), both keyed by the task id.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Option, Ref, type Scope, Stream, TestClock } from "effect"
import { Commands, Frontmatter, Kube } from "@executor/domain"
import {
  AgentModel,
  ControllerModel,
  InMemoryBus,
  type InMemoryCluster,
  PodBehaviour,
  type World
} from "@executor/testkit"
import { at, jobByName, makeWorld, names, podsOf, trackedRuns, verdicts } from "./fixtures.js"

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

type TransactionKind = "spawn" | "failure" | "other"

/** Where the executor process dies. */
type CrashPoint =
  /** The write is not applied. */
  | { readonly _tag: "BeforeWrite"; readonly operation: InMemoryCluster.WriteOperation }
  /** The write is applied, the process dies before it sees the response. */
  | { readonly _tag: "AfterWrite"; readonly operation: InMemoryCluster.WriteOperation }
  /** The transaction is open: it is aborted. */
  | { readonly _tag: "BeforeCommit"; readonly transaction: TransactionKind }
  /**
   * The transaction commits, the process dies at once (no clock tick, no further durable step).
   * Tracking is memory only, so this is the durable state of a crash between the commit and the track.
   */
  | { readonly _tag: "AfterCommit"; readonly transaction: TransactionKind }

interface Decoded {
  readonly key: string | null
  readonly operation: string
  readonly data: Readonly<Record<string, unknown>>
  readonly initiator: string
}

const decode = (key: string | null, value: string): Decoded => {
  const envelope = JSON.parse(value) as { operation: string; initiator: string; data: Record<string, unknown> }
  return { key, operation: envelope.operation, data: envelope.data, initiator: envelope.initiator }
}

const updatesOf = (command: Decoded): Readonly<Record<string, unknown>> =>
  command.operation === "update-frontmatter" && typeof command.data["updates"] === "object" && command.data["updates"] !== null
    ? (command.data["updates"] as Record<string, unknown>)
    : {}

const isSpawnNotification = (command: Decoded) => updatesOf(command)["spawn_notification"] === true
const isFailureUpdate = (command: Decoded) => updatesOf(command)["current_job"] === "" && !("assignee" in updatesOf(command))
const isTriggerIncrement = (command: Decoded) =>
  command.operation === "increment-frontmatter" && command.data["field"] === "trigger_count" && command.data["delta"] === 1

const kindOf = (transaction: InMemoryBus.Transaction): TransactionKind => {
  const commands = transaction.messages.map((m) => decode(m.key, m.value))
  if (commands.some(isSpawnNotification)) return "spawn"
  if (commands.some(isFailureUpdate)) return "failure"
  return "other"
}

const failureSectionLine = (command: Decoded, key: string): string => {
  const body = command.data["body"] as { readonly section?: string } | undefined
  return (body?.section ?? "").split("\n").find((l) => l.startsWith(`- **${key}:** `))?.slice(`- **${key}:** `.length) ?? ""
}

// ---------------------------------------------------------------------------------------------
// The harness: a world, the controller and agent models, a crash switch and the invariant probes
// ---------------------------------------------------------------------------------------------

interface Ledger {
  /** Job names of the committed spawn notifications, in commit order. */
  readonly spawns: ReadonlyArray<string>
  /** Whether each of those spawn transactions also committed a consumed offset (an event from the consumer). */
  readonly spawnsWithOffset: ReadonlyArray<boolean>
  /** [job, reason] of the committed zombie failures, in commit order. */
  readonly failures: ReadonlyArray<readonly [string, string]>
  readonly triggerIncrements: number
  /** Increments of spawns whose notification was never sent because their run was judged first. */
  readonly lateSpawnIncrements: number
  /** Committed executor commands that are not part of a well-formed spawn or failure transaction. */
  readonly problems: ReadonlyArray<string>
}

const harness = (podBehaviour: PodBehaviour.Resolver, spec: Record<string, unknown> = {}) =>
  Effect.gen(function* () {
    const scope = yield* Effect.scope
    const world = yield* makeWorld(podBehaviour, spec)
    const controller = yield* ControllerModel.make(world.bus, { topicPrefix: world.settings.topicPrefix })
    yield* AgentModel.make(world.bus, world.cluster, controller, {
      topicPrefix: world.settings.topicPrefix,
      taskIdLabel: names.taskIdLabel
    })

    const current = yield* Ref.make(Option.none<World.ExecutorProcess>())
    const armed = yield* Ref.make(Option.none<CrashPoint>())
    const crashedAt = yield* Ref.make(Option.none<number>())
    const transactions = yield* Ref.make<ReadonlyArray<InMemoryBus.Transaction>>([])
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
      Ref.modify(armed, (point): readonly [boolean, Option.Option<CrashPoint>] =>
        Option.isSome(point) && matches(point.value) ? [true, Option.none()] : [false, point]
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
    yield* world.bus.setBeforeCommit((transaction) =>
      Effect.gen(function* () {
        yield* Ref.update(transactions, (all) => [...all, transaction])
        const kind = kindOf(transaction)
        if (yield* take((p) => p._tag === "BeforeCommit" && p.transaction === kind)) {
          yield* crashNow
          return yield* Effect.never
        }
        if (yield* take((p) => p._tag === "AfterCommit" && p.transaction === kind)) {
          const last = transaction.messages.at(-1)?.value
          yield* world.bus.committed.pipe(
            Stream.filter((record) => record.value === last),
            Stream.take(1),
            Stream.runDrain,
            Effect.zipRight(crashNow),
            Effect.forkIn(scope)
          )
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
      const process = yield* world.startExecutor("full")
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
      const live = yield* Effect.forEach(all, (p) => Ref.get(p.stopped))
      return live.every((stopped) => stopped)
    })

    /** The executor's committed commands, checked against the transactions they were sent in. */
    const ledger = Effect.gen(function* () {
      const records = yield* world.bus.records(topics.request)
      const sent = yield* Ref.get(transactions)
      const offsetOf = new Map(records.map((r) => [r.value, Number(r.offset)] as const))
      const txOf = new Map<string, InMemoryBus.Transaction>()
      for (const tx of sent) for (const m of tx.messages) txOf.set(m.value, tx)
      const spawns: Array<string> = []
      const spawnsWithOffset: Array<boolean> = []
      const failures: Array<readonly [string, string]> = []
      const problems: Array<string> = []
      let triggerIncrements = 0
      let lateSpawnIncrements = 0
      for (const record of records) {
        const command = decode(record.key, record.value)
        if (command.initiator !== "executor") continue
        if (isTriggerIncrement(command)) triggerIncrements++
        const tx = txOf.get(record.value)
        if (tx === undefined) {
          problems.push(`offset ${record.offset}: ${command.operation} outside any transaction`)
          continue
        }
        const inTx = tx.messages.map((m) => decode(m.key, m.value))
        const offsets = tx.messages.map((m) => offsetOf.get(m.value) ?? -1)
        const contiguous = offsets.every((o, i) => o >= 0 && o === (offsets[0] ?? -1) + i)
        const keyed = inTx.every((c) => c.key === taskId && c.data["taskIdentifier"] === taskId)
        const [first, second] = inTx
        const spawnShape =
          inTx.length === 2 && first !== undefined && second !== undefined && isTriggerIncrement(first) && isSpawnNotification(second)
        const failureShape =
          inTx.length === 2 && first !== undefined && second !== undefined && isFailureUpdate(first) && isTriggerIncrement(second)
        // A redelivered event whose Job was judged and deleted meanwhile: only the lost spawn increment.
        const lateIncrementShape =
          inTx.length === 1 && first !== undefined && isTriggerIncrement(first) && tx.offsets?.topic === topics.event
        if (!contiguous || !keyed || !(spawnShape || failureShape || lateIncrementShape)) {
          problems.push(`offset ${record.offset}: transaction ${JSON.stringify(inTx.map((c) => c.operation))} contiguous=${contiguous} keyed=${keyed}`)
          continue
        }
        if (isSpawnNotification(command)) {
          spawns.push(String(updatesOf(command)["current_job"]))
          spawnsWithOffset.push(tx.offsets?.topic === topics.event)
        }
        if (isFailureUpdate(command)) failures.push([failureSectionLine(command, "Job"), failureSectionLine(command, "Reason")])
        if (lateIncrementShape) lateSpawnIncrements++
      }
      return { spawns, spawnsWithOffset, failures, triggerIncrements, lateSpawnIncrements, problems } satisfies Ledger
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

    return {
      world,
      controller,
      start,
      kill,
      allStopped,
      arm: (point: CrashPoint) => Ref.set(armed, Option.some(point)),
      crashedAt: Effect.map(Ref.get(crashedAt), Option.getOrUndefined),
      ledger,
      created,
      deleted,
      outcome,
      consumerCaughtUp,
      verdictsByJob,
      violations: Effect.sync(() => [...violations]),
      edit: controller.edit(taskId, frontmatter, "# Fix the flaky test")
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
    // one increment per spawn and one per failure, nothing else
    expect(ledger.triggerIncrements).toBe(ledger.spawns.length + ledger.lateSpawnIncrements + ledger.failures.length)
    expect(yield* h.consumerCaughtUp).toBe(true)
    return ledger
  })

const zombieThenSuccess = PodBehaviour.plan({
  default: [PodBehaviour.invalidImage, PodBehaviour.succeed("1 minute")]
})

// ---------------------------------------------------------------------------------------------
// The premise: a stopped process is dead at once (World.ExecutorProcess.stop, `restartExecutor`)
// ---------------------------------------------------------------------------------------------

describe("killing an executor process", () => {
  it.scoped("stop returns at once, without the clock moving, also while a verdict waits in an open transaction", () =>
    Effect.gen(function* () {
      const h = yield* harness(zombieThenSuccess)
      const idle = yield* h.start
      yield* at(1)
      yield* h.kill(idle)
      yield* TestClock.adjust(0)
      const idleStopped = yield* h.allStopped

      // a verdict pipeline blocked in its publish: the transaction must be aborted, not waited for
      yield* h.world.bus.setBeforeCommit((tx) => (kindOf(tx) === "failure" ? Effect.never : Effect.void))
      const busy = yield* h.start
      yield* h.edit
      yield* at(10)
      expect((yield* h.verdictsByJob).map(([, reason]) => reason)).toEqual(["pod_config_error"])
      yield* h.kill(busy)
      yield* TestClock.adjust(0)
      const busyStopped = yield* h.allStopped
      expect([idleStopped, busyStopped]).toEqual([true, true])
    }))
})

// ---------------------------------------------------------------------------------------------
// Spawn crashes (D6.1)
// ---------------------------------------------------------------------------------------------

describe("a crash inside the spawn sequence (D6.1)", () => {
  const points: ReadonlyArray<readonly [string, CrashPoint, boolean]> = [
    ["after the Job create (afterWrite createJob)", { _tag: "AfterWrite", operation: "createJob" }, false],
    ["before the spawn transaction commits (beforeCommit)", { _tag: "BeforeCommit", transaction: "spawn" }, false],
    ["after the spawn commit, before the run is tracked", { _tag: "AfterCommit", transaction: "spawn" }, true]
  ]

  for (const [label, point, committed] of points) {
    it.scoped(`${label}, fresh executor before the zombie shows: one Job, one increment, one notification, judged once`, () =>
      Effect.gen(function* () {
        const h = yield* harness(zombieThenSuccess)
        yield* h.arm(point)
        yield* h.start
        yield* h.edit
        yield* at(3)
        expect(yield* h.crashedAt).toBe(0)
        yield* expectDead(h)
        const [job, ...more] = yield* h.created
        expect(more).toEqual([])
        expect((yield* h.ledger).spawns).toEqual(committed ? [job] : [])
        // nothing durable happened after the crash point (an after-hook crash loses the response only)
        const writes = (yield* h.world.cluster.writes).map((w) => w.operation)
        expect(writes).toEqual(["createJob"])

        const second = yield* h.start
        yield* at(4)
        expect((yield* trackedRuns(second)).map((r) => r.jobName)).toEqual([job])
        yield* at(150)

        const ledger = yield* expectInvariants(h)
        const [, retry, ...others] = yield* h.created
        expect(others).toEqual([])
        expect(retry).toBeDefined()
        expect(retry).not.toBe(job)
        expect(ledger.spawns).toEqual([job, retry])
        // the spawn of the crashed attempt went out with the consumed offset of its event
        expect(ledger.spawnsWithOffset[0]).toBe(true)
        expect(ledger.failures).toEqual([[job, "pod_config_error"]])
        expect(yield* h.verdictsByJob).toEqual([[job, "pod_config_error"]])
        expect(yield* jobByName(h.world, job ?? "")).toBeUndefined()
        expect(yield* h.outcome).toBe("completed")
      }))

    it.scoped(`${label}, fresh executor after the zombie shows: still one Job for the attempt, judged once${committed ? "" : "; the redelivered event publishes only the increment the crash lost"}`, () =>
      Effect.gen(function* () {
        const h = yield* harness(zombieThenSuccess)
        yield* h.arm(point)
        yield* h.start
        yield* h.edit
        // the pod shows InvalidImageName at 6 s while no executor runs
        yield* at(30)
        expect(yield* h.crashedAt).toBe(0)
        yield* expectDead(h)
        const [job] = yield* h.created
        yield* h.start
        yield* at(150)

        const ledger = yield* expectInvariants(h)
        const createdJobs = yield* h.created
        expect(createdJobs.filter((name) => name === job), "the Job of the crashed attempt was created again").toEqual([job])
        expect(createdJobs).toHaveLength(2)
        // an uncommitted spawn whose run was judged first never becomes current: its increment alone
        expect(ledger.spawns.filter((name) => name === job)).toEqual(committed ? [job] : [])
        expect(ledger.spawns).toHaveLength(committed ? 2 : 1)
        expect(ledger.lateSpawnIncrements).toBe(committed ? 0 : 1)
        expect(ledger.failures).toEqual([[job, "pod_config_error"]])
        expect(yield* h.verdictsByJob).toEqual([[job, "pod_config_error"]])
        expect(yield* h.outcome).toBe("completed")
      }))
  }
})

// ---------------------------------------------------------------------------------------------
// Verdict crashes (D6.2, D6.3)
// ---------------------------------------------------------------------------------------------

describe("a crash inside the verdict sequence (D6.2, D6.3)", () => {
  /** [label, crash point, pairs committed when it died, pairs in the end, Job deleting when it died] */
  const points: ReadonlyArray<readonly [string, CrashPoint, number, number, boolean]> = [
    ["after the mark (afterWrite annotateJob): published once", { _tag: "AfterWrite", operation: "annotateJob" }, 0, 1, false],
    [
      "before the failure pair commits (beforeCommit): published once",
      { _tag: "BeforeCommit", transaction: "failure" },
      0,
      1,
      false
    ],
    [
      "after the publish, at the Event (beforeWrite recordJobEvent): the D6.2 at-least-once window, published twice",
      { _tag: "BeforeWrite", operation: "recordJobEvent" },
      1,
      2,
      false
    ],
    [
      "before the delete (beforeWrite deleteJob): the D6.2 at-least-once window, published twice",
      { _tag: "BeforeWrite", operation: "deleteJob" },
      1,
      2,
      false
    ],
    [
      "after the delete, before the finalizer is released (beforeWrite removeJobFinalizer): published once",
      { _tag: "BeforeWrite", operation: "removeJobFinalizer" },
      1,
      1,
      true
    ]
  ]

  for (const [label, point, atCrash, publishes, deleting] of points) {
    it.scoped(`${label}; the zombie Job ends deleted and released, the retry runs`, () =>
      Effect.gen(function* () {
        const h = yield* harness(zombieThenSuccess)
        yield* h.arm(point)
        yield* h.start
        yield* h.edit
        yield* at(10)
        expect(yield* h.crashedAt).toBe(6000)
        const [job, ...more] = yield* h.created
        expect(more).toEqual([])
        const marked = yield* jobByName(h.world, job ?? "")
        expect(marked?.metadata.annotations?.[names.verdictAnnotation]).toContain("pod_config_error")
        expect(marked?.metadata.finalizers).toEqual([names.finalizer])
        expect(marked?.metadata.deletionTimestamp !== undefined).toBe(deleting)
        expect((yield* h.ledger).failures).toHaveLength(atCrash)

        yield* at(30)
        yield* expectDead(h)
        yield* h.start
        yield* at(150)

        const ledger = yield* expectInvariants(h)
        expect(ledger.failures).toEqual(Array.from({ length: publishes }, () => [job, "pod_config_error"]))
        expect(yield* h.verdictsByJob).toEqual([[job, "pod_config_error"]])
        // deleted and its finalizer released: the object is gone
        expect(yield* jobByName(h.world, job ?? "")).toBeUndefined()
        expect(yield* h.deleted).toContain(job)
        const [, retry, ...others] = yield* h.created
        expect(others).toEqual([])
        expect(retry).toBeDefined()
        expect(ledger.spawns).toEqual([job, retry])
        expect(yield* h.outcome).toBe("completed")
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
      yield* h.edit
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
      const h = yield* harness(PodBehaviour.always(PodBehaviour.hang), { zombieJobTimeoutSeconds: 600 })
      const first = yield* h.start
      yield* h.edit
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
      yield* h.edit
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
      yield* h.edit
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
      yield* h.edit
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
