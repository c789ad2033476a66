// Support for the exactly-once end-to-end tests: a stand-in kubelet that makes every run a zombie,
// and the count of what a reader that reads uncommitted (as the controller does) sees per task.
import { randomUUID } from "node:crypto"
import { expect } from "vitest"
import type { World } from "./harness.js"
import { type CommandRecord, commandLog, endOffset, isFailure, isIncrement, isSpawnNotification } from "./kafka.js"
import { podStatus } from "./kube.js"
import { eventually, sleep } from "./wait.js"

/** The consumer of `run` gives up a dead member's partitions faster than by default (broker floor 6 s). */
export const fastRejoin = { KAFKA_SESSION_TIMEOUT_MS: "8000", KAFKA_REBALANCE_TIMEOUT_MS: "8000" } as const

export const randomBetween = (min: number, max: number) => min + Math.floor(Math.random() * (max - min))

export const newTaskIds = (n: number) => Array.from({ length: n }, () => randomUUID())

/**
 * The job controller and kubelet for these tests: every labelled Job of the namespace gets its pod
 * at once, and the pod shows InvalidImageName (a verdict at once: no grace). Runs until `stop`.
 */
export const zombieKubelet = (world: World, image: string) => {
  const done = new Set<string>()
  let running = true
  const loop = (async () => {
    while (running) {
      try {
        for (const job of await world.kube.jobsOf(world.namespace)) {
          const name = job.metadata?.name ?? ""
          if (done.has(name) || job.metadata?.deletionTimestamp !== undefined) continue
          done.add(name)
          const pod = await world.kube.createPodFor(job)
          await world.kube.patchPodStatus(
            world.namespace,
            pod.metadata?.name ?? "",
            podStatus.waiting(image, "InvalidImageName", "invalid reference format")
          )
        }
      } catch {
        // the API server is busy or the Job went meanwhile: look again
      }
      await sleep(300)
    }
  })()
  return {
    /** Names of the Jobs it made a pod for. */
    jobs: () => [...done],
    stop: async () => {
      running = false
      await loop
    }
  }
}

const requestIdOf = (record: CommandRecord): string => {
  const envelope = JSON.parse(record.raw) as { readonly requestID?: unknown }
  return String(envelope.requestID)
}

export interface Seen {
  readonly tasks: number
  readonly records: number
  readonly spawnIncrements: number
  readonly spawnNotifications: number
  readonly failureUpdates: number
  readonly failureIncrements: number
}

/**
 * Waits until every task has its failure pair, then a little longer (a late duplicate would show),
 * then reads the whole request topic once more with a fresh reader that reads uncommitted and
 * checks, for every task: exactly one spawn increment directly followed by one spawn notification
 * in the same record batch, and exactly one failure update directly followed by one failure
 * increment in the same record batch, nothing else; and no request id twice in the topic.
 */
export const expectEachRunOnce = async (world: World, taskIds: ReadonlyArray<string>, label: string, timeoutMs = 240_000): Promise<Seen> => {
  await eventually(
    `${label}: the failure pair of every task`,
    timeoutMs,
    () => {
      const all = world.log.all()
      const missing = taskIds.filter((t) => !all.some((r) => r.taskId === t && isFailure(r)))
      return missing.length === 0 ? true : undefined
    },
    1_000
  )
  await sleep(13_000)
  const end = await endOffset(world.infra.kafkaBrokers, world.topics.request)
  const fresh = await commandLog(world.infra.kafkaBrokers, world.topics.request)
  try {
    const all = await fresh.waitFor(`${label}: the whole request topic`, 60_000, (records) => (records.length >= end ? records : undefined))
    const ids = all.map(requestIdOf)
    expect(new Set(ids).size, `${label}: a request id is in the topic twice`).toBe(ids.length)
    const seen = { tasks: taskIds.length, records: all.length, spawnIncrements: 0, spawnNotifications: 0, failureUpdates: 0, failureIncrements: 0 }
    for (const taskId of taskIds) {
      const mine = all.filter((r) => r.taskId === taskId)
      const shape = mine.map((r) => (isSpawnNotification(r) ? "notification" : isFailure(r) ? "failure" : isIncrement(r) ? "increment" : r.operation))
      expect({ taskId, shape }).toEqual({ taskId, shape: ["increment", "notification", "failure", "increment"] })
      const [increment, notification, failure, failureIncrement] = mine as [CommandRecord, CommandRecord, CommandRecord, CommandRecord]
      // adjacent on the partition, one batch each: appended together, both or neither
      expect(notification.offset).toBe(increment.offset + 1)
      expect(notification.batch.firstOffset).toBe(increment.batch.firstOffset)
      expect(failureIncrement.offset).toBe(failure.offset + 1)
      expect(failureIncrement.batch.firstOffset).toBe(failure.batch.firstOffset)
      expect(mine.every((r) => r.key === taskId && !r.batch.inTransaction)).toBe(true)
      seen.spawnIncrements++
      seen.spawnNotifications++
      seen.failureUpdates++
      seen.failureIncrements++
    }
    // nothing about any other task
    expect(all.filter((r) => !taskIds.includes(r.taskId))).toEqual([])
    return seen
  } finally {
    await fresh.stop()
  }
}
