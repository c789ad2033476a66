// The statuses one real node cannot produce, written by hand against the real `run` service, a real
// kube-apiserver and a real Kafka broker (no controller manager, no kubelet: the test creates the
// pod of each Job and patches pod and Job statuses through /status). Every failure mode Kubernetes
// itself produces is proven on the real node instead (test/node/failure-modes.test.ts); these are
// the two it cannot (test/README.md says why):
//
// - a pod still Running past its Job's deadline: the job controller always enforces
//   activeDeadlineSeconds, so only a cluster whose job controller is down or far behind shows it;
// - an image pull that fails and then succeeds within the grace: the node's registry serves every
//   image at once, 127.0.0.1:5999 never does, and node-down.sh fails on a pull from anywhere else.
import type * as k8s from "@kubernetes/client-node"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import type { ExecutorProcess } from "../support/executorProcess.js"
import {
  agentSpec,
  commandCounts,
  expectFailurePair,
  expectZombieEvent,
  failureOf,
  fastGraces,
  hasFinalizer,
  makeWorld,
  newTaskId,
  spawnOf,
  type World
} from "../support/harness.js"
import { requireInfra } from "../support/infraEnv.js"
import { isFailure } from "../support/kafka.js"
import { jobStatus, podStatus } from "../support/kube.js"
import { eventually, sleep } from "../support/wait.js"

const infra = requireInfra("test/e2e/patched-statuses.test.ts")
const agent = "ps-agent"
const image = `registry.invalid/agents/${agent}:dev`
const s = (seconds: number) => seconds * 1000
/** After a verdict, how long to keep watching for a duplicate: more than one sweeper interval. */
const settleMs = s(fastGraces.zombieSweeperIntervalSeconds + 3)

describe.skipIf(infra === undefined).concurrent("statuses one node cannot produce, patched (real run, apiserver, broker)", () => {
  let world: World
  let executor: ExecutorProcess

  beforeAll(async () => {
    world = await makeWorld(infra!, "ps", { [agent]: agentSpec(agent) })
    executor = await world.start("run")
    await executor.ready()
  }, 180_000)

  afterAll(async () => {
    await world?.close()
  }, 30_000)

  afterEach(({ task }) => {
    if (task.result?.state === "fail" && executor !== undefined) {
      console.error(`--- ${executor.name} log (last lines) ---\n${executor.logTail(120)}`)
    }
  })

  /** Spawns a run for a fresh task and returns its Job (with our finalizer, docs/decisions.md#finalizer). */
  const spawnRun = async () => {
    const taskId = newTaskId()
    await world.publishTasks([{ taskId, assignee: agent }])
    const job = await world.kube.jobOf(world.namespace, taskId, 30_000)
    await spawnOf(world.log, taskId)
    expect(hasFinalizer(job)).toBe(true)
    return { taskId, job, name: job.metadata?.name ?? "" }
  }

  const createPod = async (job: k8s.V1Job) => {
    const pod = await world.kube.createPodFor(job)
    return { name: pod.metadata?.name ?? "", createdAt: Date.parse(String(pod.metadata?.creationTimestamp)) }
  }

  const patchPod = (pod: string, status: k8s.V1PodStatus) => world.kube.patchPodStatus(world.namespace, pod, status)

  /**
   * The verdict of a run: exactly one failure pair with `reason`, the Job deleted, the Event
   * recorded; and still exactly one after a sweeper interval more. Returns when it arrived.
   */
  const expectVerdict = async (
    run: { readonly taskId: string; readonly name: string },
    reason: string,
    options: { readonly detail?: string | RegExp; readonly within: number }
  ) => {
    const failure = await failureOf(world.log, run.taskId, options.within)
    await world.kube.jobGone(world.namespace, run.name, 30_000)
    await expectZombieEvent(world.kube, world.namespace, run.name, reason)
    const wait = failure.receivedAt + settleMs - Date.now()
    if (wait > 0) await sleep(wait)
    expectFailurePair(world.log.all(), run.taskId, run.name, reason, options.detail)
    expect(commandCounts(world.log.all(), run.taskId)).toEqual({
      spawnNotifications: 1,
      failures: 1,
      increments: 2, // the spawn's and the failure's (docs/decisions.md#doctrine: a zombie attempt costs two)
      total: 4,
      keyedByTask: true
    })
    expect(await world.kube.jobsOf(world.namespace, run.taskId)).toEqual([])
    return failure.receivedAt
  }

  it("a pod still Running past the Job deadline plus one sweep (deadline not enforced): deadline_exceeded", async () => {
    const run = await spawnRun()
    const spawnedAt = Date.now()
    const pod = await createPod(run.job)
    await patchPod(pod.name, podStatus.running(image))
    const at = await expectVerdict(run, "deadline_exceeded", { detail: /still running/, within: s(75) })
    expect(at - spawnedAt).toBeGreaterThanOrEqual(s(fastGraces.zombieJobTimeoutSeconds))
  }, 150_000)

  it("control: an image pull failure that clears within the grace, then success: no verdict, the finalizer is released", async () => {
    const run = await spawnRun()
    const pod = await createPod(run.job)
    await patchPod(pod.name, podStatus.waiting(image, "ErrImagePull", "transient registry error"))
    await sleep(2_000)
    await patchPod(pod.name, podStatus.running(image))
    await sleep(2_000)
    await patchPod(pod.name, podStatus.succeeded(image))
    await world.kube.patchJobStatus(world.namespace, run.name, jobStatus.complete(run.job.metadata?.creationTimestamp))
    // settled: the executor lets go of the Job (docs/decisions.md#finalizer) and never publishes for it
    const released = await eventually(`finalizer of ${run.name} released`, 20_000, async () => {
      const job = await world.kube.getJob(world.namespace, run.name)
      return job !== undefined && !hasFinalizer(job) ? job : undefined
    })
    expect(released.status?.succeeded).toBe(1)
    await sleep(s(fastGraces.imagePullGraceSeconds) + settleMs)
    expect(world.log.forTask(run.taskId).filter(isFailure)).toEqual([])
    expect(commandCounts(world.log.all(), run.taskId)).toMatchObject({ spawnNotifications: 1, failures: 0, increments: 1 })
    expect((await world.kube.eventsFor(world.namespace, run.name)).filter((e) => e.reason === "ZombieDetected")).toEqual([])
  }, 120_000)
})
