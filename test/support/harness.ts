// One end-to-end test file's world on the shared stack: its own namespace, topic prefix and consumer
// group, a log of the request topic read uncommitted (as the controller reads it), and `run` processes.
import { randomUUID } from "node:crypto"
import { join } from "node:path"
import type * as k8s from "@kubernetes/client-node"
import { expect } from "vitest"
import { Commands } from "@executor/domain"
import { type ExecutorEnv, type ExecutorProcess, killAllStarted, startExecutor } from "./executorProcess.js"
import type { InfraInfo } from "./infraEnv.js"
import {
  type CommandLog,
  type CommandRecord,
  commandLog,
  createTopics,
  detailOf,
  failuresOf,
  isFailure,
  isIncrement,
  isSpawnNotification,
  produce,
  reasonOf,
  taskEvent,
  type TaskEventInput
} from "./kafka.js"
import { type Kube, kubeClient, names, prepareNamespace, uniqueSuffix } from "./kube.js"
import { eventually } from "./wait.js"

/** The smallest graces the floors allow (decisions D4.6), for real-time tests. */
export const fastGraces = {
  zombieSweeperIntervalSeconds: 10,
  zombieJobTimeoutSeconds: 30,
  imagePullGraceSeconds: 5,
  unschedulableGraceSeconds: 30,
  podCreateGraceSeconds: 30
} as const

export const agentSpec = (assignee: string, extra: object = {}) => ({
  assignee,
  image: `registry.invalid/agents/${assignee}`,
  heartbeat: "5m",
  taskTypes: ["llm"],
  ...fastGraces,
  ...extra
})

export interface World {
  readonly infra: InfraInfo
  readonly label: string
  readonly namespace: string
  readonly topicPrefix: string
  readonly topics: ReturnType<typeof Commands.topics>
  readonly groupId: string
  readonly kube: Kube
  readonly log: CommandLog
  readonly logDir: string
  /** The env of `run` for this world, with overrides. */
  readonly env: (overrides?: Partial<ExecutorEnv>) => ExecutorEnv
  readonly start: (name: string, overrides?: Partial<ExecutorEnv>, options?: { readonly waitListening?: boolean }) => Promise<ExecutorProcess>
  /** Produces task events (keyed by task id) on the event topic; returns them. */
  readonly publishTasks: (tasks: ReadonlyArray<TaskEventInput>) => Promise<ReadonlyArray<ReturnType<typeof taskEvent>>>
  readonly produceRaw: (messages: ReadonlyArray<{ readonly key?: string; readonly value: string | Buffer | null }>) => Promise<void>
  readonly close: () => Promise<void>
}

export interface WorldOptions {
  readonly kubeconfig?: string
  /** Waits until the new namespace can take pods (on a real node: its default ServiceAccount). */
  readonly namespaceReady?: (kube: Kube, namespace: string) => Promise<void>
}

export const makeWorld = async (
  infra: InfraInfo,
  label: string,
  agents: Readonly<Record<string, object>>,
  options: WorldOptions = {}
): Promise<World> => {
  const id = uniqueSuffix()
  const namespace = `e2e-${label}-${id}`
  const topicPrefix = `e2e-${label}-${id}`
  const topics = Commands.topics(topicPrefix)
  const kube = kubeClient(infra.kubeconfig)
  await prepareNamespace(kube, namespace)
  await options.namespaceReady?.(kube, namespace)
  await createTopics(infra.kafkaBrokers, [topics.event, topics.request])
  for (const [name, spec] of Object.entries(agents)) await kube.applyConfig(namespace, name, spec)
  const log = await commandLog(infra.kafkaBrokers, topics.request)
  const logDir = join(infra.runDir, "e2e")
  const groupId = `e2e-${label}-${id}`
  const env = (overrides: Partial<ExecutorEnv> = {}): ExecutorEnv => ({
    KAFKA_BROKERS: infra.kafkaBrokers,
    KUBECONFIG: options.kubeconfig ?? infra.kubeconfig,
    NAMESPACE: namespace,
    TOPIC_PREFIX: topicPrefix,
    KAFKA_GROUP_ID: groupId,
    ...overrides
  })
  const produceRaw: World["produceRaw"] = (messages) => produce(infra.kafkaBrokers, topics.event, messages)
  return {
    infra,
    label,
    namespace,
    topicPrefix,
    topics,
    groupId,
    kube,
    log,
    logDir,
    env,
    start: (name, overrides, startOptions) =>
      startExecutor(`${label}-${id}-${name}`, env(overrides), { logDir, ...startOptions }),
    publishTasks: async (tasks) => {
      const events = tasks.map(taskEvent)
      await produceRaw(events.map((e) => ({ key: e.taskIdentifier, value: JSON.stringify(e) })))
      return events
    },
    produceRaw,
    close: async () => {
      await killAllStarted()
      await log.stop()
    }
  }
}

export const newTaskId = () => randomUUID()

// ---------------------------------------------------------------------------------------------
// expectations on the request topic
// ---------------------------------------------------------------------------------------------

/** Waits for the spawn pair of a task (increment, then notification, one batch). */
export const spawnOf = (log: CommandLog, taskId: string, timeoutMs = 30_000) =>
  log.waitFor(`the spawn commands of ${taskId}`, timeoutMs, (all) => {
    const mine = all.filter((r) => r.taskId === taskId)
    const notification = mine.find(isSpawnNotification)
    if (notification === undefined) return undefined
    const increment = mine.filter((r) => r.offset < notification.offset && isIncrement(r)).at(-1)
    return increment === undefined ? undefined : { increment, notification }
  })

/** Waits for the first `## Failure` update of a task. */
export const failureOf = (log: CommandLog, taskId: string, timeoutMs: number) =>
  log.waitFor(`a ## Failure update for ${taskId}`, timeoutMs, (all) => all.find((r) => r.taskId === taskId && isFailure(r)))

/**
 * Doctrine D5 on the wire: the update `{current_job: ""}` with a `## Failure` section naming the job
 * and the reason token, directly followed by the `trigger_count` increment in the same record batch
 * (no transaction: visible to every reader at once), both keyed by the task id. Returns the two.
 */
export const expectFailurePair = (
  records: ReadonlyArray<CommandRecord>,
  taskId: string,
  jobName: string,
  reason: string,
  detail?: string | RegExp
) => {
  const pairs = failuresOf(records, taskId)
  expect(pairs, `failure updates of ${taskId}`).toHaveLength(1)
  const { next, update } = pairs[0]!
  expect(update.key).toBe(taskId)
  expect(update.updates).toEqual({ current_job: "" })
  expect(update.body?.heading).toBe("## Failure")
  expect(update.body?.section).toMatch(/^## Failure\n\n- \*\*Timestamp:\*\* \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n- \*\*Job:\*\* /)
  expect(update.body?.section).toContain(`- **Job:** ${jobName}\n`)
  expect(reasonOf(update)).toBe(reason)
  if (detail !== undefined) expect(detailOf(update)).toMatch(detail)
  expect(next, "the record after the failure update").toBeDefined()
  expect(next?.operation).toBe("increment-frontmatter")
  expect(next?.taskId).toBe(taskId)
  expect(next?.key).toBe(taskId)
  expect(next?.data).toEqual({ taskIdentifier: taskId, field: "trigger_count", delta: 1 })
  // one record batch, appended at once: both or neither visible
  expect(update.batch.inTransaction).toBe(false)
  expect(next?.batch.firstOffset).toBe(update.batch.firstOffset)
  return { update, next }
}

/** Over the whole life of a task: how many spawns, failures and increments went out. */
export const commandCounts = (records: ReadonlyArray<CommandRecord>, taskId: string) => {
  const mine = records.filter((r) => r.taskId === taskId)
  return {
    spawnNotifications: mine.filter(isSpawnNotification).length,
    failures: mine.filter(isFailure).length,
    increments: mine.filter(isIncrement).length,
    total: mine.length,
    keyedByTask: mine.every((r) => r.key === taskId)
  }
}

/** The Event the verdict records on the Job (D4.3). */
export const expectZombieEvent = async (kube: Kube, namespace: string, jobName: string, reason: string) => {
  const events = await eventually(`a ZombieDetected Event on ${jobName}`, 20_000, async () => {
    const found = (await kube.eventsFor(namespace, jobName)).filter((e) => e.reason === "ZombieDetected")
    return found.length > 0 ? found : undefined
  })
  expect(events).toHaveLength(1)
  expect(events[0]?.type).toBe("Warning")
  expect(events[0]?.involvedObject.kind).toBe("Job")
  expect(events[0]?.message).toContain(reason)
}

/** The finalizer of D6.3 is on a Job the executor created. */
export const hasFinalizer = (job: k8s.V1Job) => (job.metadata?.finalizers ?? []).includes(names.finalizer)
