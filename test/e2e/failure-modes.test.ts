// Every zombie failure mode against the real `run` service, a real kube-apiserver and a real Kafka
// broker, side by side in one namespace. The test plays the job controller (it creates the pod of
// each Job) and the kubelet (it patches pod and Job statuses through /status).
//
// Each mode: the task event goes in on the event topic, the executor spawns the Job, the pod turns
// bad, and then exactly one failure pair (D5) is read (uncommitted) from the request topic, keyed by
// the task id; the Job is deleted and a `ZombieDetected` Event is recorded on it (D4.3).
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
import { jobStatus, podStatus, statusOf } from "../support/kube.js"
import { eventually, sleep } from "../support/wait.js"

const infra = requireInfra("test/e2e/failure-modes.test.ts")
const agent = "fm-agent"
const image = `registry.invalid/agents/${agent}:dev`
const s = (seconds: number) => seconds * 1000
/** After a verdict, how long to keep watching for a duplicate: more than one sweeper interval. */
const settleMs = s(fastGraces.zombieSweeperIntervalSeconds + 3)

describe.skipIf(infra === undefined).concurrent("zombie failure modes, end to end (real run, apiserver, broker)", () => {
  let world: World
  let executor: ExecutorProcess

  beforeAll(async () => {
    world = await makeWorld(infra!, "fm", { [agent]: agentSpec(agent) })
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

  /** Spawns a run for a fresh task and returns its Job (with the finalizer of D6.3). */
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

  /** The Job may already be gone (the executor judged it from the pod first): that is fine. */
  const patchJobTolerant = async (name: string, status: k8s.V1JobStatus) => {
    try {
      await world.kube.patchJobStatus(world.namespace, name, status)
    } catch (error) {
      if (statusOf(error) !== 404) throw error
    }
  }

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
      increments: 2, // the spawn's and the failure's (D5: a zombie attempt costs two)
      total: 4,
      keyedByTask: true
    })
    expect(await world.kube.jobsOf(world.namespace, run.taskId)).toEqual([])
    return failure.receivedAt
  }

  it("ErrImagePull, then ImagePullBackOff past the grace: image_pull_backoff (not before the grace)", async () => {
    const run = await spawnRun()
    const pod = await createPod(run.job)
    const firstSignal = Date.now()
    await patchPod(pod.name, podStatus.waiting(image, "ErrImagePull", `rpc error: failed to pull and unpack image "${image}": not found`))
    await sleep(2_000)
    await patchPod(pod.name, podStatus.waiting(image, "ImagePullBackOff", `Back-off pulling image "${image}"`))
    const at = await expectVerdict(run, "image_pull_backoff", { detail: /ImagePullBackOff|ErrImagePull/, within: s(30) })
    expect(at - firstSignal).toBeGreaterThanOrEqual(s(fastGraces.imagePullGraceSeconds) - 500)
  }, 120_000)

  it("InvalidImageName: pod_config_error at once (it cannot clear, no grace)", async () => {
    const run = await spawnRun()
    const pod = await createPod(run.job)
    const signal = Date.now()
    await patchPod(pod.name, podStatus.waiting(image, "InvalidImageName", `Failed to apply default image tag "${image}": invalid reference format`))
    const at = await expectVerdict(run, "pod_config_error", { detail: /InvalidImageName/, within: s(20) })
    expect(at - signal).toBeLessThan(s(fastGraces.imagePullGraceSeconds))
  }, 120_000)

  it("CreateContainerConfigError past the grace: pod_config_error", async () => {
    const run = await spawnRun()
    const pod = await createPod(run.job)
    const signal = Date.now()
    await patchPod(pod.name, podStatus.waiting(image, "CreateContainerConfigError", 'secret "agent-secrets" not found'))
    const at = await expectVerdict(run, "pod_config_error", { detail: /CreateContainerConfigError.*secret "agent-secrets" not found/, within: s(30) })
    expect(at - signal).toBeGreaterThanOrEqual(s(fastGraces.imagePullGraceSeconds) - 500)
  }, 120_000)

  it("Evicted: pod_evicted", async () => {
    const run = await spawnRun()
    const pod = await createPod(run.job)
    await patchPod(pod.name, podStatus.running(image))
    await sleep(1_000)
    await patchPod(pod.name, podStatus.evicted())
    await expectVerdict(run, "pod_evicted", { detail: /evicted.*low on resource: memory/, within: s(20) })
  }, 120_000)

  it("Failed with exit 137 OOMKilled (then the Job BackoffLimitExceeded): pod_crash_no_stdout \"OOMKilled, exit 137\"", async () => {
    const run = await spawnRun()
    const pod = await createPod(run.job)
    await patchPod(pod.name, podStatus.running(image))
    await sleep(1_000)
    await patchPod(pod.name, podStatus.terminated(image, 137, "OOMKilled"))
    // with backoffLimit 0 the job controller fails the Job right after (D4.5: the reason comes from the pod)
    await patchJobTolerant(run.name, jobStatus.backoffLimitExceeded(run.job.metadata?.creationTimestamp))
    await expectVerdict(run, "pod_crash_no_stdout", { detail: /OOMKilled, exit 137/, within: s(20) })
  }, 120_000)

  it("PodScheduled=False Unschedulable past the 30 s grace: pod_not_scheduled (not before)", async () => {
    const run = await spawnRun()
    const pod = await createPod(run.job)
    const message = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available"
    await patchPod(pod.name, podStatus.unschedulable(message))
    const at = await expectVerdict(run, "pod_not_scheduled", { detail: /Insufficient cpu/, within: s(60) })
    // judged on its own grace from the pod's creation (second precision), not at the Job deadline
    expect(at - pod.createdAt).toBeGreaterThanOrEqual(s(fastGraces.unschedulableGraceSeconds) - 1_000)
  }, 150_000)

  it("Job Failed with DeadlineExceeded: deadline_exceeded", async () => {
    const run = await spawnRun()
    const pod = await createPod(run.job)
    await patchPod(pod.name, podStatus.running(image))
    await sleep(1_000)
    await world.kube.patchJobStatus(world.namespace, run.name, jobStatus.deadlineExceeded(run.job.metadata?.creationTimestamp))
    await expectVerdict(run, "deadline_exceeded", { detail: /activeDeadlineSeconds=30/, within: s(20) })
  }, 120_000)

  it("a Job that creates no pod past the 30 s grace: job_pod_create_failed (not before)", async () => {
    const run = await spawnRun()
    const createdAt = Date.parse(String(run.job.metadata?.creationTimestamp))
    const at = await expectVerdict(run, "job_pod_create_failed", { detail: /created no pod within 30s/, within: s(60) })
    expect(at - createdAt).toBeGreaterThanOrEqual(s(fastGraces.podCreateGraceSeconds) - 1_000)
  }, 150_000)

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
    // settled: the executor lets go of the Job (D6.3) and never publishes for it
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
