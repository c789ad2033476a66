import { Clock, Effect, Layer, Metric, Option, Ref, TestClock } from "effect"
import type { TaskEvent } from "@executor/domain"
import {
  ClusterOps,
  ClusterWatch,
  type ClusterWatchShape,
  Dispatcher,
  Executor,
  ExecutorSettings,
  Journal,
  RunTracker
} from "@executor/executor"
import { InMemoryBus, type InMemoryCluster, type PodBehaviour, World } from "@executor/testkit"

export const assignee = "claude-agent"

export const agentSpec = (overrides: Record<string, unknown> = {}) => ({
  assignee,
  image: "registry.example/agent-claude:v1",
  heartbeat: "1h",
  taskTypes: ["llm"],
  ...overrides
})

export const taskEvent = (taskIdentifier: string, frontmatter: Record<string, unknown> = {}): TaskEvent.TaskEvent => ({
  identifier: `event-${taskIdentifier}-${JSON.stringify(frontmatter)}`,
  taskIdentifier,
  frontmatter: {
    status: "in_progress",
    phase: "execution",
    assignee,
    task_type: "llm",
    stage: "prod",
    max_triggers: 3,
    ...frontmatter
  },
  content: "# Fix the flaky test"
})

export interface PublishedCommand {
  readonly key: string | null
  readonly operation: string
  readonly data: { readonly taskIdentifier: string } & Record<string, unknown>
}

export const published = (world: World.World) =>
  Effect.map(world.bus.records("agent-task-v1-request"), (records) =>
    records.map((r): PublishedCommand => {
      const envelope = JSON.parse(r.value) as { operation: string; data: PublishedCommand["data"] }
      return { key: r.key, operation: envelope.operation, data: envelope.data }
    })
  )

export const failures = (world: World.World) =>
  Effect.map(published(world), (commands) =>
    commands.filter((c) => c.operation === "update-frontmatter" && c.data["updates"] !== undefined && (c.data["updates"] as Record<string, unknown>)["current_job"] === "")
  )

export const verdicts = (world: World.World) =>
  Effect.map(world.journal, (entries) => entries.filter((e) => e._tag === "Verdict"))

// ---------------------------------------------------------------------------------------------
// Helpers for the behaviour, race, restart, publisher, sweeper and bad-input suites
// ---------------------------------------------------------------------------------------------

/** The label, annotation and finalizer names of the default API group. */
export const names = ExecutorSettings.defaults.names

/** Moves the TestClock to `seconds` after the start of the test (running everything due until then). */
export const at = (seconds: number) => TestClock.setTime(seconds * 1000)
export const atMillis = (millis: number) => TestClock.setTime(millis)

/** Jobs whose name starts with `manual-` get a pod the test drives; every other Job behaves as `behaviour`. */
export const withManualJobs =
  (behaviour: PodBehaviour.PodBehaviour | PodBehaviour.Manual): PodBehaviour.Resolver => (job) =>
    job.jobName.startsWith("manual-") ? "manual" : behaviour

/** A world with the `claude` Config applied and no executor running yet. */
export const makeWorld = (podBehaviour: PodBehaviour.Resolver, spec: Record<string, unknown> = {}) =>
  Effect.gen(function* () {
    const world = yield* World.make({ podBehaviour })
    yield* world.cluster.applyConfig("claude", agentSpec(spec))
    return world
  })

/** Starts an executor (detection mode) over `world`, with a spawn helper that goes through the dispatcher. */
export const start = (world: World.World) =>
  Effect.gen(function* () {
    const executor = yield* world.startExecutor("detection")
    const spawn = (taskId: string, frontmatter: Record<string, unknown> = {}) => handleWith(executor)(taskEvent(taskId, frontmatter))
    return { executor, spawn }
  })

/** The name of the newest Job of a task (dies when there is none). */
export const jobOf = (world: World.World, taskId: string) =>
  Effect.flatMap(world.cluster.currentJobOfTask(taskId), (job) =>
    Option.isSome(job) ? Effect.succeed(job.value.metadata.name) : Effect.dieMessage(`no Job for task ${taskId}`)
  )

export const jobByName = (world: World.World, name: string) =>
  Effect.map(world.cluster.jobsSnapshot, (jobs) => jobs.find((j) => j.metadata.name === name))

export const podsOf = (world: World.World, jobName: string) =>
  Effect.map(world.cluster.podsSnapshot, (pods) =>
    pods.filter((pod) => pod.metadata.ownerReferences?.some((ref) => ref.kind === "Job" && ref.name === jobName) ?? false)
  )

/** The one pod of a Job (dies unless there is exactly one). */
export const podOf = (world: World.World, jobName: string) =>
  Effect.flatMap(podsOf(world, jobName), (pods) => {
    const [pod, ...rest] = pods
    return pod !== undefined && rest.length === 0
      ? Effect.succeed(pod)
      : Effect.dieMessage(`expected one pod of ${jobName}, found ${pods.length}`)
  })

export const runningStatus = (at = "2026-01-05T00:00:05Z"): InMemoryCluster.PodStatus => ({
  phase: "Running",
  conditions: [{ type: "PodScheduled", status: "True" }, { type: "Ready", status: "True" }],
  containerStatuses: [{ name: "agent", state: { running: { startedAt: at } } }]
})

export const crashedStatus = (exitCode = 1, reason = "Error"): InMemoryCluster.PodStatus => ({
  phase: "Failed",
  containerStatuses: [{ name: "agent", state: { terminated: { exitCode, reason } } }]
})

export const unschedulableStatus: InMemoryCluster.PodStatus = {
  phase: "Pending",
  conditions: [{ type: "PodScheduled", status: "False", reason: "Unschedulable", message: "0/3 nodes are available" }]
}

/**
 * `kubectl create` of a Job as another executor (or an operator) would have made it: the task-id
 * and assignee labels, optionally the executor's finalizer and a deadline. Name it `manual-...` so
 * that `withManualJobs` gives it a pod the test drives.
 */
export const createManualJob = (
  world: World.World,
  options: {
    readonly name: string
    readonly taskId: string
    readonly activeDeadlineSeconds?: number
    readonly finalizer?: boolean
    readonly labels?: Record<string, string>
  }
) => {
  const labels = options.labels ?? { [names.taskIdLabel]: options.taskId, [names.assigneeLabel]: assignee }
  const metadata = {
    name: options.name,
    labels,
    ...(options.finalizer === false ? {} : { finalizers: [names.finalizer] })
  }
  const manifest: InMemoryCluster.AnyManifest = {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata,
    spec: {
      backoffLimit: 0,
      ttlSecondsAfterFinished: 1800,
      ...(options.activeDeadlineSeconds === undefined ? {} : { activeDeadlineSeconds: options.activeDeadlineSeconds }),
      template: {
        metadata: { labels },
        spec: { restartPolicy: "Never", containers: [{ name: "agent", image: "registry.example/agent-claude:v1" }] }
      }
    }
  }
  return world.cluster.createJob(manifest)
}

export interface FailurePair {
  readonly taskId: string
  readonly job: string
  readonly reason: string
  readonly detail: string
}

const sectionLine = (section: string, key: string): string =>
  section.split("\n").find((line) => line.startsWith(`- **${key}:** `))?.slice(`- **${key}:** `.length) ?? ""

/**
 * The zombie failure pairs on the request topic, in commit order. Dies if a failure update is not
 * immediately followed by its `trigger_count` increment for the same task (a half-sent pair).
 */
export const failurePairs = (world: World.World) =>
  Effect.flatMap(published(world), (commands) => {
    const pairs: Array<FailurePair> = []
    for (let i = 0; i < commands.length; i++) {
      const command = commands[i]
      if (command === undefined || command.operation !== "update-frontmatter") continue
      const updates = command.data["updates"] as Record<string, unknown> | undefined
      const body = command.data["body"] as { readonly section?: string } | undefined
      if (updates?.["current_job"] !== "" || "assignee" in updates) continue
      const next = commands[i + 1]
      if (
        next === undefined ||
        next.operation !== "increment-frontmatter" ||
        next.key !== command.key ||
        next.data["field"] !== "trigger_count" ||
        next.data["delta"] !== 1
      ) {
        return Effect.dieMessage(`half-sent failure pair at record ${i}: ${JSON.stringify(commands.slice(i, i + 2))}`)
      }
      const section = body?.section ?? ""
      pairs.push({
        taskId: command.data.taskIdentifier,
        job: sectionLine(section, "Job"),
        reason: sectionLine(section, "Reason"),
        detail: sectionLine(section, "Detail")
      })
    }
    return Effect.succeed(pairs)
  })

/** Verdict lines as plain values: [reason, source, t in ms, job]. */
export const verdictRows = (world: World.World) =>
  Effect.map(verdicts(world), (list) => list.map((v) => [v.reason, v.source, v.at, v.jobName] as const))

export const counterValue = (counter: Metric.Metric.Counter<number>) => Effect.map(Metric.value(counter), (s) => s.count)

export const trackedRuns = (executor: World.ExecutorProcess) => executor.use(Effect.flatMap(RunTracker, (t) => t.all))

/**
 * Like `world.startExecutor("detection")`, but over a `ClusterWatch` the test shapes (a cache that
 * syncs late, a stream of objects the in-memory API server could not even store, ...). Verdict
 * lines go to the returned journal, not the world's.
 */
export const startWithWatch = (world: World.World, watch: ClusterWatchShape) =>
  Effect.gen(function* () {
    const journal = yield* Ref.make<ReadonlyArray<readonly [string, string, number, string]>>([])
    const infra = Layer.mergeAll(
      Layer.succeed(ClusterWatch, watch),
      Layer.succeed(ClusterOps, world.cluster.ops),
      InMemoryBus.layerPublisher(world.bus, { topicPrefix: world.settings.topicPrefix }),
      InMemoryBus.layerEventSource(world.bus, { topicPrefix: world.settings.topicPrefix }),
      ExecutorSettings.layer(world.settings),
      Layer.succeed(Journal, {
        record: (entry) =>
          entry._tag === "Verdict"
            ? Effect.flatMap(Clock.currentTimeMillis, (t) =>
                Ref.update(journal, (all) => [...all, [entry.reason, entry.source, t, entry.jobName ?? ""] as const])
              )
            : Effect.void
      })
    )
    const scope = yield* Effect.scope
    const context = yield* Layer.buildWithScope(
      Dispatcher.layer.pipe(Layer.provideMerge(Executor.layerZombieDetection), Layer.provide(infra)),
      scope
    )
    const use = <A, E>(effect: Effect.Effect<A, E, World.ExecutorServices>) => Effect.provide(effect, context)
    const spawn = (taskId: string, frontmatter: Record<string, unknown> = {}) =>
      use(Effect.flatMap(Dispatcher, (d) => d.handle(taskEvent(taskId, frontmatter), Option.none())))
    return { use, spawn, verdictRows: Ref.get(journal) }
  })

// ---------------------------------------------------------------------------------------------
// Helpers for the dispatch and healthcheck suites
// ---------------------------------------------------------------------------------------------

import { Exit, Fiber, Scope } from "effect"
import { Gates } from "@executor/domain"
import { type ConsumedOffset, Metrics } from "@executor/executor"

/** The unprefixed topics of the default settings. */
export const dispatchTopics = { event: "agent-task-v1-event", request: "agent-task-v1-request" } as const

/**
 * Lets the fibers run without moving the TestClock. The TestClock does not see the fibers the
 * executor's layers fork (its `adjust` only waits a few timer turns for them), so yield to the
 * scheduler many times first.
 */
export const settle = Effect.zipRight(Effect.repeatN(Effect.yieldNow(), 200), TestClock.adjust(0))

/** Settles until `check` holds (at most `rounds` times), then returns its last value. */
export const settleUntil = <A>(check: Effect.Effect<A>, holds: (a: A) => boolean, rounds = 50) =>
  Effect.gen(function* () {
    let value = yield* check
    for (let i = 0; i < rounds && !holds(value); i++) {
      yield* settle
      value = yield* check
    }
    return value
  })

/** Puts a message on the event topic as the controller would (keyed by task id); a string goes out verbatim. */
export const produceEvent = (world: World.World, event: TaskEvent.TaskEvent | string, key: string | null = null) =>
  typeof event === "string"
    ? world.bus.produce(dispatchTopics.event, key, event)
    : world.bus.produce(dispatchTopics.event, event.taskIdentifier, JSON.stringify(event))

/** The executor group's next position on the event topic, as a plain value (`undefined` before any commit). */
export const committedEventOffset = (world: World.World) =>
  Effect.map(
    world.bus.committedOffset(InMemoryBus.executorGroup, dispatchTopics.event),
    Option.getOrUndefined
  )

/**
 * A baseline of `agent_executor_task_events_total` by `result`; `moved` gives the results that
 * changed since, as a plain record (`{}` when none did).
 */
export const taskEventCounters = Effect.gen(function* () {
  const read = Effect.map(
    Effect.forEach(Gates.eventResults, (result) =>
      Effect.map(counterValue(Metric.tagged(Metrics.taskEvents, "result", result)), (n) => [result, n] as const)
    ),
    (entries) => new Map<string, number>(entries)
  )
  const baseline = yield* read
  const moved = Effect.map(read, (now) => {
    const out: Record<string, number> = {}
    for (const [result, n] of now) {
      const delta = n - (baseline.get(result) ?? 0)
      if (delta !== 0) out[result] = delta
    }
    return out
  })
  return { moved }
})

/** The labelled Jobs of one task, in creation order. */
export const jobsOfTask = (world: World.World, taskId: string) =>
  Effect.map(world.cluster.jobsSnapshot, (jobs) => jobs.filter((job) => job.metadata.labels?.[names.taskIdLabel] === taskId))

/** The commands published about one task: `[operation, data]` in commit order. */
export const commandsOf = (world: World.World, taskId: string) =>
  Effect.map(published(world), (commands) =>
    commands.filter((c) => c.data.taskIdentifier === taskId).map((c) => [c.operation, c.data] as const)
  )

export interface SeenBatch {
  readonly operations: ReadonlyArray<string>
  readonly keys: ReadonlyArray<string | null>
  readonly tasks: ReadonlyArray<string>
  readonly partition: number
}

/** Records every batch the executor sends, before it is appended (installs the bus's `beforeAppend` hook). */
export const watchBatches = (world: World.World) =>
  Effect.gen(function* () {
    const seen = yield* Ref.make<ReadonlyArray<SeenBatch>>([])
    yield* world.bus.setBeforeAppend((batch) =>
      Ref.update(seen, (all) => [
        ...all,
        {
          operations: batch.messages.map((m) => (JSON.parse(m.value) as { readonly operation: string }).operation),
          keys: batch.messages.map((m) => m.key),
          tasks: batch.messages.map(
            (m) => (JSON.parse(m.value) as { readonly data: { readonly taskIdentifier: string } }).data.taskIdentifier
          ),
          partition: batch.partition
        }
      ])
    )
    return Ref.get(seen)
  })

/** `Dispatcher.handle` of an executor process, as a plain function. */
export const handleWith =
  (executor: World.ExecutorProcess) => (event: TaskEvent.TaskEvent, consumed: Option.Option<ConsumedOffset> = Option.none()) =>
    executor.use(Effect.flatMap(Dispatcher, (d) => d.handle(event, consumed)))

/** The deferred respawns of an executor process: `[task id, due millis]`, sorted. */
export const deferredOf = (executor: World.ExecutorProcess) =>
  executor.use(
    Effect.flatMap(Dispatcher, (d) =>
      Effect.map(d.deferred, (m) => [...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
    )
  )

/**
 * Stops an executor process like `stop`, but waits for the shutdown a few scheduler turns at most:
 * a shutdown that does not end (a finalizer waiting on the TestClock, say) must not hang the test.
 * The process's scope is closed at the first step of `stop`, so its consumer and timers are
 * interrupted either way. Usable in a finalizer (the wait is made interruptible).
 */
export const stopExecutor = (executor: World.ExecutorProcess) =>
  Effect.gen(function* () {
    const stopping = yield* Effect.forkDaemon(executor.stop)
    yield* Effect.interruptible(Effect.race(Fiber.await(stopping), Effect.repeatN(settle, 19)))
  })

/** `world.startExecutor`, stopped with `stopExecutor` when the test's scope closes. */
export const startExecutorIn = (
  world: World.World,
  mode: "full" | "detection" = "full",
  options: Parameters<World.World["startExecutor"]>[1] = {}
) =>
  Effect.tap(world.startExecutor(mode, options), (executor) => Effect.addFinalizer(() => stopExecutor(executor)))

/** `startWithWatch` in a scope of its own, closed like `stopExecutor` when the test's scope closes. */
export const startWithWatchIn = (world: World.World, watch: ClusterWatchShape) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Effect.zipRight(Effect.forkDaemon(Scope.close(scope, Exit.void)), settle))
    return yield* Effect.provideService(startWithWatch(world, watch), Scope.Scope, scope)
  })

/** Produces one message on the event topic and settles until the consumer committed its offset (then a bit more). */
export const consumeEvent = (world: World.World, event: TaskEvent.TaskEvent | string) =>
  Effect.gen(function* () {
    const record = yield* produceEvent(world, event)
    const next = String(Number(record.offset) + 1)
    const committed = yield* settleUntil(committedEventOffset(world), (o) => o === next)
    // metrics and run tracking follow the commit
    yield* settle
    return { offset: record.offset, committed, next }
  })

/** A world whose clock starts at `startMillis`, with the `claude` Config and any more Configs. */
export const makeWorldAt = (
  startMillis: number,
  resolver: PodBehaviour.Resolver,
  spec: Record<string, unknown> = {},
  configs: ReadonlyArray<readonly [string, Record<string, unknown>]> = []
) =>
  Effect.gen(function* () {
    yield* TestClock.setTime(startMillis)
    const world = yield* makeWorld(resolver, spec)
    for (const [name, config] of configs) yield* world.cluster.applyConfig(name, config)
    return world
  })

/** The creation time of each labelled Job of a task, as RFC3339 strings. */
export const jobCreationTimes = (world: World.World, taskId: string) =>
  Effect.map(jobsOfTask(world, taskId), (jobs) => jobs.map((j) => j.metadata.creationTimestamp))
