// Faults of the real servers under the real `run` service. The file starts a stack of its own
// (test/infra/up.sh on free ports, ~10-15 s) so that stopping and restarting its broker and API
// server disturbs no other suite.
//
//   broker:      stopped (SIGTERM) while a verdict is pending, restarted with the same command line
//                and data dir: the verdict is published once (nothing lost, no duplicate increment),
//                and consuming resumes.
//   API server:  the executor is cut off, kube-apiserver is restarted, pod and Job transitions are
//                made while the executor cannot see them; once it reconnects its watches resume and
//                the transitions are classified, once each.
import { join } from "node:path"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import type { ExecutorProcess } from "../support/executorProcess.js"
import {
  agentSpec,
  commandCounts,
  expectFailurePair,
  expectZombieEvent,
  failureOf,
  makeWorld,
  newTaskId,
  spawnOf,
  type World
} from "../support/harness.js"
import { readState, requireInfra } from "../support/infraEnv.js"
import { commandLog, failuresOf } from "../support/kafka.js"
import { jobStatus, names, podStatus } from "../support/kube.js"
import { redirectKubeconfig, type TcpProxy, tcpProxy } from "../support/proxy.js"
import { restartApiServer, stopKafka } from "../support/servers.js"
import { type RunningStack, upStack } from "../support/stack.js"
import { eventually, sleep } from "../support/wait.js"

const infra = requireInfra("test/e2e/faults.test.ts")
const agent = "ft-agent"
const image = `registry.invalid/agents/${agent}:dev`
/** After a verdict, how long to keep watching for a duplicate: more than one sweeper interval. */
const settleMs = 13_000

describe.skipIf(infra === undefined)("broker and API server faults under the run service", () => {
  let stack: RunningStack
  let world: World
  let executor: ExecutorProcess
  let proxy: TcpProxy

  beforeAll(async () => {
    stack = await upStack("agent-executor-faults-", { KAFKA_LIBS: infra!.kafkaLibs, JAVA_BIN: infra!.javaBin })
    const own = stack.info
    const state = readState(own.runDir)
    proxy = await tcpProxy(state.ports.kubeApiserver)
    const kubeconfig = redirectKubeconfig(state.kubeconfig, proxy.port, join(own.runDir, `ft-kubeconfig-${proxy.port}`))
    world = await makeWorld(
      own,
      "ft",
      { [agent]: agentSpec(agent, { podCreateGraceSeconds: 600, zombieJobTimeoutSeconds: 900 }) },
      { kubeconfig }
    )
    executor = await world.start("run")
    await executor.ready()
  }, 180_000)

  afterAll(async () => {
    await world?.close()
    await proxy?.close()
    await stack?.stop({ keep: process.env["KEEP_INFRA"] === "1" })
  }, 120_000)

  afterEach(({ task }) => {
    if (task.result?.state === "fail" && executor !== undefined) {
      console.error(`--- ${executor.name} log (last lines) ---\n${executor.logTail(150)}`)
    }
  })

  const runningPod = async (taskId: string) => {
    const job = await world.kube.jobOf(world.namespace, taskId)
    await spawnOf(world.log, taskId)
    const pod = await world.kube.createPodFor(job)
    await world.kube.patchPodStatus(world.namespace, pod.metadata?.name ?? "", podStatus.running(image))
    return { job, jobName: job.metadata?.name ?? "", podName: pod.metadata?.name ?? "" }
  }

  it("the broker stopped while a verdict is pending and restarted: the verdict is published once, nothing is lost", async () => {
    const taskId = newTaskId()
    await world.publishTasks([{ taskId, assignee: agent }])
    const run = await runningPod(taskId)

    const broker = await stopKafka(world.infra.runDir, readState(world.infra.runDir).ports.kafka)
    const stoppedAt = Date.now()
    // InvalidImageName is a verdict at once (no grace): it is due while no broker answers
    await world.kube.patchPodStatus(world.namespace, run.podName, podStatus.waiting(image, "InvalidImageName", "invalid reference format"))
    // D6.2: the mark is written first, and the Job stays until the failure is published
    const marked = await eventually("the verdict mark on the Job", 20_000, async () => {
      const job = await world.kube.getJob(world.namespace, run.jobName)
      return job?.metadata?.annotations?.[names.verdictAnnotation]
    })
    expect(JSON.parse(marked)).toMatchObject({ reason: "pod_config_error" })
    await sleep(5_000)
    expect(await world.kube.getJob(world.namespace, run.jobName), "the Job is kept while the verdict is unpublished").toBeDefined()
    expect(executor.isRunning()).toBe(true)

    await broker.start()
    const downMs = Date.now() - stoppedAt
    const failure = await failureOf(world.log, taskId, 120_000)
    await world.kube.jobGone(world.namespace, run.jobName)
    await expectZombieEvent(world.kube, world.namespace, run.jobName, "pod_config_error")
    console.info(
      `broker fault: stopped in ${broker.stopped.stoppedInMs} ms, down ${downMs} ms; ` +
        `verdict published ${failure.receivedAt - stoppedAt - downMs} ms after the restart`
    )

    // consuming resumes: a new task event spawns
    const later = newTaskId()
    await world.publishTasks([{ taskId: later, assignee: agent }])
    await world.kube.jobOf(world.namespace, later, 90_000)
    const resumed = await spawnOf(world.log, later, 90_000)
    console.info(`broker fault: a new task event spawned ${resumed.notification.receivedAt - failure.receivedAt} ms after the verdict`)

    // a fresh reader of the whole topic (uncommitted): exactly one failure pair, one increment for it
    // (a sweeper interval after the verdict: a late duplicate would show)
    await sleep(Math.max(0, failure.receivedAt + settleMs - Date.now()))
    const fresh = await commandLog(world.infra.kafkaBrokers, world.topics.request)
    try {
      const all = await fresh.waitFor("the whole request topic", 30_000, (records) =>
        records.some((r) => r.taskId === later) && failuresOf(records, taskId).length > 0 ? records : undefined
      )
      expectFailurePair(all, taskId, run.jobName, "pod_config_error", /InvalidImageName/)
      expect(commandCounts(all, taskId)).toEqual({ spawnNotifications: 1, failures: 1, increments: 2, total: 4, keyedByTask: true })
      expect(commandCounts(all, later)).toEqual({ spawnNotifications: 1, failures: 0, increments: 1, total: 2, keyedByTask: true })
    } finally {
      await fresh.stop()
    }
  }, 300_000)

  it("kube-apiserver restarted while the executor is cut off: its watches resume and transitions made in the gap are classified once", async () => {
    const [evicted, deadline] = [newTaskId(), newTaskId()]
    await world.publishTasks([evicted, deadline].map((taskId) => ({ taskId, assignee: agent })))
    const runs = { evicted: await runningPod(evicted), deadline: await runningPod(deadline) }

    await proxy.cut()
    const restarted = await restartApiServer(world.infra.runDir, async () => {
      const ns = await world.kube.core.readNamespace({ name: world.namespace })
      return ns.metadata?.name === world.namespace
    })
    // the transitions, while the executor still cannot reach the API server
    await world.kube.patchPodStatus(world.namespace, runs.evicted.podName, podStatus.evicted())
    await world.kube.patchJobStatus(world.namespace, runs.deadline.jobName, jobStatus.deadlineExceeded(runs.deadline.job.metadata?.creationTimestamp))
    await sleep(2_000)
    expect(failuresOf(world.log.all(), evicted)).toEqual([])
    expect(executor.isRunning()).toBe(true)
    const resumedAt = Date.now()
    await proxy.resume()

    const first = await failureOf(world.log, evicted, 90_000)
    const second = await failureOf(world.log, deadline, 90_000)
    await world.kube.jobGone(world.namespace, runs.evicted.jobName)
    await world.kube.jobGone(world.namespace, runs.deadline.jobName)
    await expectZombieEvent(world.kube, world.namespace, runs.evicted.jobName, "pod_evicted")
    await expectZombieEvent(world.kube, world.namespace, runs.deadline.jobName, "deadline_exceeded")
    console.info(
      `apiserver fault: down ${restarted.downMs} ms (stopped in ${restarted.stopped.stoppedInMs} ms, killed: ${restarted.stopped.killed}); ` +
        `classified ${first.receivedAt - resumedAt} / ${second.receivedAt - resumedAt} ms after the executor reconnected`
    )
    expect((await executor.http("/readiness")).status).toBe(200)

    await sleep(Math.max(0, Math.max(first.receivedAt, second.receivedAt) + settleMs - Date.now()))
    const all = world.log.all()
    expectFailurePair(all, evicted, runs.evicted.jobName, "pod_evicted")
    expectFailurePair(all, deadline, runs.deadline.jobName, "deadline_exceeded")
    for (const taskId of [evicted, deadline]) {
      expect(commandCounts(all, taskId), taskId).toEqual({ spawnNotifications: 1, failures: 1, increments: 2, total: 4, keyedByTask: true })
    }
  }, 300_000)
})
