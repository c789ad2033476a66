// `kill -9` of the real `run` process in the middle of its work on the real node, and a fresh one
// started in its place (same consumer group): runs are recovered from the labelled Jobs
// (docs/decisions.md#recovery), no Job and no spawn is duplicated (docs/decisions.md#job-name), what
// happened while no executor ran is judged once: a pod that crashed (Kubernetes wrote it) and a Job
// an operator deleted, which recovery judges `executor_watch_lost` (docs/decisions.md#finalizer)
// within 60 s. The request topic is read uncommitted, as the real
// controller reads it.
//
// NODE_REPEATS=N runs it N times, one after another (for the latency table of docs/operations.md;
// with NODE_LATENCY_OUT=<file> the samples are appended there as JSON lines).
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest"
import type { ExecutorProcess } from "../support/executorProcess.js"
import { expectFailurePair, expectZombieEvent, failureOf, hasFinalizer, newTaskId, spawnOf, type World } from "../support/harness.js"
import { detailOf } from "../support/kafka.js"
import { requireNode } from "../support/nodeEnv.js"
import { conditionOf, phaseOf, type Recorder, startRecorder, terminatedOf } from "../support/nodeRecorder.js"
import { expectRunCommands, makeNodeWorld, removeNamespace } from "../support/nodeWorld.js"
import { eventually, sleep } from "../support/wait.js"
import { latencyTable, type Sample, saveSamples } from "./latency.js"
import { fastSpec } from "./modes.js"

const node = requireNode("test/node/restart.test.ts")
const repeats = Math.max(1, Number(process.env["NODE_REPEATS"] ?? "1") || 1)
/** Runs that do their work: the pod sleeps a minute, then exits 0. */
const agent = "rs-agent"
/** Runs that crash while no executor runs: the pod sleeps 30 s, then exits 1. */
const crasher = "rs-crash"

describe.skipIf(node === undefined)("kill -9 and restart of the run service on a real node", () => {
  let world: World | undefined
  let recorder: Recorder | undefined
  let processes: Array<ExecutorProcess> = []
  const samples: Array<Sample> = []

  /** A world of its own for each repeat: namespace, topics, consumer group, Configs. */
  beforeEach(async () => {
    processes = []
    // no pod-less or deadline verdicts while the test runs: only the ones it provokes
    const base = { image: node!.images.agent, ...fastSpec, podCreateGraceSeconds: 600, zombieJobTimeoutSeconds: 900 }
    world = await makeNodeWorld(node!, "rs", {
      [agent]: { assignee: agent, ...base, env: { AGENT_SLEEP: "60" } },
      [crasher]: { assignee: crasher, ...base, env: { AGENT_SLEEP: "30", AGENT_EXIT: "1" } }
    })
    recorder = await startRecorder(world.kube.kc, world.namespace)
  }, 120_000)

  afterEach(async ({ task }) => {
    if (task.result?.state === "fail") {
      for (const p of processes) console.error(`--- ${p.name} log (last lines) ---\n${p.logTail(100)}`)
    }
    await recorder?.stop()
    await world?.close()
    if (world !== undefined) await removeNamespace(world)
  }, 150_000)

  afterAll(() => {
    if (samples.length === 0) return
    console.info(`recovery latency on the real node (${repeats} run(s)), from the start of the second executor:\n${latencyTable(samples)}`)
    saveSamples(samples)
  })

  const running = (jobName: string) =>
    eventually(`the pod of ${jobName} running`, 60_000, () =>
      theRecorder().firstSeen(jobName, (o) => o.kind === "Pod" && o.pods.some((p) => phaseOf(p) === "Running")))

  for (let repeat = 1; repeat <= repeats; repeat++) {
    it(`runs are recovered, nothing is spawned or judged twice, a crash while down is judged once, a Job deleted while down gets executor_watch_lost${repeats > 1 ? ` (#${repeat})` : ""}`, async () => {
      const world = theWorld()
      const recorder = theRecorder()
      const first = await world.start("first")
      processes.push(first)
      await first.ready()

      // three runs in flight, their pods running
      const [healthy, crashedWhileDown, deletedWhileDown] = [newTaskId(), newTaskId(), newTaskId()]
      await world.publishTasks([
        { taskId: healthy, assignee: agent },
        { taskId: crashedWhileDown, assignee: crasher },
        { taskId: deletedWhileDown, assignee: agent }
      ])
      const jobs = new Map<string, string>()
      for (const taskId of [healthy, crashedWhileDown, deletedWhileDown]) {
        const job = await world.kube.jobOf(world.namespace, taskId, 60_000)
        await spawnOf(world.log, taskId, 60_000)
        jobs.set(taskId, job.metadata?.name ?? "")
      }
      for (const name of jobs.values()) await running(name)

      // a burst of new task events, and kill -9 as soon as the first of them has its Job
      const burst = Array.from({ length: 5 }, () => newTaskId())
      await world.publishTasks(burst.map((taskId) => ({ taskId, assignee: agent })))
      await eventually("the first Job of the burst", 30_000, async () => {
        for (const taskId of burst) if ((await world.kube.jobsOf(world.namespace, taskId)).length > 0) return true
        return undefined
      }, 100)
      const killed = await first.kill9()
      const killedAt = Date.now()
      expect(killed.signal).toBe("SIGKILL")
      const spawnedBeforeKill = burst.filter((taskId) => world.log.forTask(taskId).length > 0).length
      const jobsBeforeKill = (await world.kube.jobsOf(world.namespace)).length

      // while no executor runs: an operator deletes a Job, and Kubernetes fails a crashed pod
      await world.kube.deleteJob(world.namespace, jobs.get(deletedWhileDown)!)
      const terminating = await world.kube.getJob(world.namespace, jobs.get(deletedWhileDown)!)
      expect(terminating?.metadata?.deletionTimestamp, "the finalizer keeps the deleted Job visible").toBeDefined()
      expect(hasFinalizer(terminating!)).toBe(true)
      const crashJob = jobs.get(crashedWhileDown)!
      const crash = await eventually(`the pod of ${crashJob} failed`, 90_000, () =>
        recorder.firstSeen(crashJob, (o) => o.kind === "Job" && conditionOf(o.job, "Failed") !== undefined))
      const crashed = recorder.firstSeen(crashJob, (o) => o.kind === "Pod" && o.pods.some((p) => terminatedOf(p).some((t) => t.exitCode === 1)))
      expect(crashed?.at, "the container crashed after kill -9").toBeGreaterThan(killedAt)

      // recovery judges before the new executor is ready (it says ready once its consumer runs):
      // its times count from the start of the process
      const startedAt = Date.now()
      const second = await world.start("second")
      processes.push(second)
      await second.ready()
      const readyAt = Date.now()

      // the Job deleted while down: executor_watch_lost from recovery, within 60 s of the start
      const lost = await failureOf(world.log, deletedWhileDown, 60_000)
      expect(lost.receivedAt - startedAt).toBeLessThan(60_000)
      await world.kube.jobGone(world.namespace, jobs.get(deletedWhileDown)!)
      await expectZombieEvent(world.kube, world.namespace, jobs.get(deletedWhileDown)!, "executor_watch_lost")
      expect(
        await second.metric("agent_executor_zombie_verdicts_total", { reason: "executor_watch_lost", source: "recovery" })
      ).toBe(1)

      // the pod that crashed while down: judged once, from what the kubelet wrote
      const crashVerdict = await failureOf(world.log, crashedWhileDown, 30_000)
      await world.kube.jobGone(world.namespace, crashJob)
      await expectZombieEvent(world.kube, world.namespace, crashJob, "pod_crash_no_stdout")

      // the burst: every task has exactly one Job, spawned once (a kill between the create and the
      // commit redelivers the event: the redo finds the Job and publishes what was lost, docs/decisions.md#spawn-order)
      for (const taskId of burst) {
        await world.kube.jobOf(world.namespace, taskId, 90_000)
        await spawnOf(world.log, taskId, 90_000)
      }

      // the healthy run was recovered: its pod exits 0, the Job completes, the new executor lets go
      const healthyJob = jobs.get(healthy)!
      await eventually(`${healthyJob} Complete and its finalizer released`, 120_000, async () => {
        const job = await world.kube.getJob(world.namespace, healthyJob)
        const complete = job?.status?.conditions?.some((c) => c.type === "Complete" && c.status === "True") ?? false
        return job !== undefined && complete && !hasFinalizer(job) ? true : undefined
      }, 500)

      // a sweeper interval after the verdicts: still nothing twice
      await sleep(Math.max(0, Math.max(lost.receivedAt, crashVerdict.receivedAt) + 13_000 - Date.now()))
      const all = world.log.all()
      expectFailurePair(all, deletedWhileDown, jobs.get(deletedWhileDown)!, "executor_watch_lost")
      const { update } = expectFailurePair(all, crashedWhileDown, crashJob, "pod_crash_no_stdout")
      expect(detailOf(update)).toBe("Error, exit 1")
      for (const taskId of [deletedWhileDown, crashedWhileDown]) expectRunCommands(all, taskId, true)
      for (const taskId of [healthy, ...burst]) {
        expectRunCommands(all, taskId, false)
        expect(await world.kube.jobsOf(world.namespace, taskId), taskId).toHaveLength(1)
      }
      console.info(
        `restart: ${spawnedBeforeKill}/5 of the burst published and ${jobsBeforeKill - 3}/5 Jobs created before kill -9; ` +
          `the crash judged ${crashVerdict.receivedAt - startedAt} ms and executor_watch_lost ${lost.receivedAt - startedAt} ms after the second executor was started ` +
          `(ready after ${readyAt - startedAt} ms; the crash was ${((startedAt - crash.at) / 1000).toFixed(1)} s old then)`
      )
      samples.push({ mode: "executor_watch_lost (recovery)", ms: lost.receivedAt - startedAt, graceMs: 0 })
      samples.push({ mode: "pod_crash_no_stdout while down (recovery)", ms: crashVerdict.receivedAt - startedAt, graceMs: 0 })
    }, 360_000)
  }

  const theWorld = () => {
    if (world === undefined) throw new Error("no world")
    return world
  }
  const theRecorder = () => {
    if (recorder === undefined) throw new Error("no recorder")
    return recorder
  }
})
