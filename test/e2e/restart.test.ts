// `kill -9` of the real `run` process in the middle of its work, and a fresh one started in its
// place (same consumer group): runs are recovered from the labelled Jobs
// (D4.8), no Job and no spawn is duplicated (D6.1), a verdict is published once, and a Job deleted
// while no executor ran is judged `executor_watch_lost` by recovery (D6.3) within 60 s.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import type { ExecutorProcess } from "../support/executorProcess.js"
import {
  agentSpec,
  commandCounts,
  expectFailurePair,
  expectZombieEvent,
  failureOf,
  hasFinalizer,
  makeWorld,
  newTaskId,
  spawnOf,
  type World
} from "../support/harness.js"
import { requireInfra } from "../support/infraEnv.js"
import { jobStatus, podStatus } from "../support/kube.js"
import { eventually, sleep } from "../support/wait.js"

const infra = requireInfra("test/e2e/restart.test.ts")
const agent = "rs-agent"
const image = `registry.invalid/agents/${agent}:dev`

describe.skipIf(infra === undefined)("kill -9 and restart of the run service (real apiserver and broker)", () => {
  let world: World
  const processes: Array<ExecutorProcess> = []

  beforeAll(async () => {
    world = await makeWorld(infra!, "rs", {
      // no pod-less or deadline verdicts while the file runs: only the ones the test provokes
      [agent]: agentSpec(agent, { podCreateGraceSeconds: 600, zombieJobTimeoutSeconds: 900 })
    })
  }, 120_000)

  afterAll(async () => {
    await world?.close()
  }, 30_000)

  afterEach(({ task }) => {
    if (task.result?.state === "fail") {
      for (const p of processes) console.error(`--- ${p.name} log (last lines) ---\n${p.logTail(100)}`)
    }
  })

  it("runs are recovered, nothing is spawned or judged twice, and a Job deleted while down gets executor_watch_lost", async () => {
    const first = await world.start("first")
    processes.push(first)
    await first.ready()

    // three runs in flight, their pods running
    const [healthy, evictedWhileDown, deletedWhileDown] = [newTaskId(), newTaskId(), newTaskId()]
    await world.publishTasks([healthy, evictedWhileDown, deletedWhileDown].map((taskId) => ({ taskId, assignee: agent })))
    const jobs = new Map<string, string>()
    const pods = new Map<string, string>()
    for (const taskId of [healthy, evictedWhileDown, deletedWhileDown]) {
      const job = await world.kube.jobOf(world.namespace, taskId)
      await spawnOf(world.log, taskId)
      const pod = await world.kube.createPodFor(job)
      await world.kube.patchPodStatus(world.namespace, pod.metadata?.name ?? "", podStatus.running(image))
      jobs.set(taskId, job.metadata?.name ?? "")
      pods.set(taskId, pod.metadata?.name ?? "")
    }

    // a burst of new task events, and kill -9 as soon as the first of them has its Job
    const burst = Array.from({ length: 5 }, () => newTaskId())
    await world.publishTasks(burst.map((taskId) => ({ taskId, assignee: agent })))
    await eventually("the first Job of the burst", 30_000, async () => {
      for (const taskId of burst) if ((await world.kube.jobsOf(world.namespace, taskId)).length > 0) return true
      return undefined
    })
    const killed = await first.kill9()
    expect(killed.signal).toBe("SIGKILL")
    const spawnedBeforeKill = burst.filter((taskId) => world.log.forTask(taskId).length > 0).length
    const jobsBeforeKill = (await world.kube.jobsOf(world.namespace)).length

    // while no executor runs: one pod is evicted, one Job is deleted by an operator
    await world.kube.patchPodStatus(world.namespace, pods.get(evictedWhileDown)!, podStatus.evicted())
    await world.kube.deleteJob(world.namespace, jobs.get(deletedWhileDown)!)
    const terminating = await world.kube.getJob(world.namespace, jobs.get(deletedWhileDown)!)
    expect(terminating?.metadata?.deletionTimestamp, "the finalizer keeps the deleted Job visible").toBeDefined()
    expect(hasFinalizer(terminating!)).toBe(true)
    await sleep(2_000)

    const second = await world.start("second")
    processes.push(second)
    await second.ready()
    const upAt = Date.now()

    // the Job deleted while down: executor_watch_lost from recovery, within 60 s of being up
    const lost = await failureOf(world.log, deletedWhileDown, 60_000)
    expect(lost.receivedAt - upAt).toBeLessThan(60_000)
    await world.kube.jobGone(world.namespace, jobs.get(deletedWhileDown)!)
    await expectZombieEvent(world.kube, world.namespace, jobs.get(deletedWhileDown)!, "executor_watch_lost")
    expect(
      await second.metric("agent_executor_zombie_verdicts_total", { reason: "executor_watch_lost", source: "recovery" })
    ).toBe(1)

    // the pod evicted while down: judged once
    const evicted = await failureOf(world.log, evictedWhileDown, 30_000)
    await world.kube.jobGone(world.namespace, jobs.get(evictedWhileDown)!)
    await expectZombieEvent(world.kube, world.namespace, jobs.get(evictedWhileDown)!, "pod_evicted")

    // the burst: every task has exactly one Job, spawned once (a kill between the create and the
    // commit redelivers the event: the redo finds the Job and publishes what was lost, D6.1)
    for (const taskId of burst) {
      await world.kube.jobOf(world.namespace, taskId, 90_000)
      await spawnOf(world.log, taskId, 90_000)
    }

    // the healthy run was recovered: it completes, and the new executor releases its finalizer
    const healthyJob = jobs.get(healthy)!
    await world.kube.patchPodStatus(world.namespace, pods.get(healthy)!, podStatus.succeeded(image))
    const created = (await world.kube.getJob(world.namespace, healthyJob))?.metadata?.creationTimestamp
    await world.kube.patchJobStatus(world.namespace, healthyJob, jobStatus.complete(created))
    await eventually(`finalizer of ${healthyJob} released`, 20_000, async () => {
      const job = await world.kube.getJob(world.namespace, healthyJob)
      return job !== undefined && !hasFinalizer(job) ? true : undefined
    })

    // a sweeper interval after the verdicts: still nothing twice
    await sleep(Math.max(0, Math.max(lost.receivedAt, evicted.receivedAt) + 13_000 - Date.now()))
    const all = world.log.all()
    expectFailurePair(all, deletedWhileDown, jobs.get(deletedWhileDown)!, "executor_watch_lost")
    expectFailurePair(all, evictedWhileDown, jobs.get(evictedWhileDown)!, "pod_evicted")
    for (const taskId of [deletedWhileDown, evictedWhileDown]) {
      expect(commandCounts(all, taskId), taskId).toEqual({ spawnNotifications: 1, failures: 1, increments: 2, total: 4, keyedByTask: true })
    }
    for (const taskId of [healthy, ...burst]) {
      expect(commandCounts(all, taskId), taskId).toEqual({ spawnNotifications: 1, failures: 0, increments: 1, total: 2, keyedByTask: true })
      expect(await world.kube.jobsOf(world.namespace, taskId), taskId).toHaveLength(1)
    }
    console.info(
      `restart: ${spawnedBeforeKill}/5 of the burst published and ${jobsBeforeKill - 3}/5 Jobs created before kill -9; ` +
        `executor_watch_lost ${lost.receivedAt - upAt} ms after the second executor was ready`
    )
  }, 300_000)
})
