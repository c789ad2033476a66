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

/** A world with one agent, an executor in detection mode, and a helper that spawns a run. */
export const setup = (podBehaviour: PodBehaviour.Resolver, spec: Record<string, unknown> = {}) =>
  Effect.gen(function* () {
    const world = yield* World.make({ podBehaviour })
    yield* world.cluster.applyConfig("claude", agentSpec(spec))
    const executor = yield* world.startExecutor("detection")
    const spawn = (taskId: string, frontmatter: Record<string, unknown> = {}) =>
      executor.use(Effect.flatMap(Dispatcher, (d) => d.handle(taskEvent(taskId, frontmatter), Option.none())))
    return { world, executor, spawn }
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

export { InMemoryBus }

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
    const spawn = (taskId: string, frontmatter: Record<string, unknown> = {}) =>
      executor.use(Effect.flatMap(Dispatcher, (d) => d.handle(taskEvent(taskId, frontmatter), Option.none())))
    return { executor, spawn }
  })

/** The name of the newest Job of a task (dies when there is none). */
export const jobOf = (world: World.World, taskId: string) =>
  Effect.flatMap(world.cluster.currentJobOfTask(taskId), (job) =>
    Option.isSome(job) ? Effect.succeed(job.value.metadata.name) : Effect.dieMessage(`no Job for task ${taskId}`)
  )

export const jobByName = (world: World.World, name: string) =>
  Effect.map(world.cluster.jobsSnapshot, (jobs) => Option.getOrUndefined(Option.fromNullable(jobs.find((j) => j.metadata.name === name))))

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
