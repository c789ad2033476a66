// Every zombie failure mode Kubernetes itself produces, on the real node: the real `run` service
// (started from the TypeScript sources with the node's admin kubeconfig and Kafka), one agent
// Config per mode (modes.ts; the agent image's behaviour comes from the Config's `env`), and the
// job controller, scheduler, kubelet and containerd writing every status. Nothing is patched.
//
// Each mode: the task event goes in on the event topic, the executor spawns the Job, Kubernetes
// makes the run go bad, and then exactly one verdict with the mode's reason and a detail naming
// what Kubernetes said; the Job is deleted and a `ZombieDetected` Event recorded on it; the request
// topic, read uncommitted like the real controller reads it, holds for the task exactly the spawn
// increment and notification and the failure update and increment, keyed by the task id. The
// successes (a Job removed by its TTL, a missing Secret created within the grace) publish nothing
// after the spawn.
//
// NODE_REPEATS=N runs every mode N times (for the latency table of docs/operations.md; with
// NODE_LATENCY_OUT=<file> the samples are appended there as JSON lines).
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import type { ExecutorProcess } from "../support/executorProcess.js"
import { expectFailurePair, expectZombieEvent, failureOf, hasFinalizer, newTaskId, spawnOf, type World } from "../support/harness.js"
import { detailOf, isFailure } from "../support/kafka.js"
import { uniqueSuffix } from "../support/kube.js"
import { type NodeClients, nodeClients } from "../support/nodeCluster.js"
import { requireNode } from "../support/nodeEnv.js"
import { createPodQuota, deletePodQuota } from "../support/nodeQuota.js"
import { conditionOf, metaOf, phaseOf, type Recorder, type Seen, startRecorder, waitingReasons } from "../support/nodeRecorder.js"
import { expectRunCommands, makeNodeWorld, removeNamespace } from "../support/nodeWorld.js"
import { eventually, sleep } from "../support/wait.js"
import { latencyTable, type Sample, saveSamples } from "./latency.js"
import { fastSpec, type Mode, type ModeContext, modes } from "./modes.js"

const node = requireNode("test/node/failure-modes.test.ts")
const repeats = Math.max(1, Number(process.env["NODE_REPEATS"] ?? "1") || 1)
const s = (seconds: number) => seconds * 1000
/** After a verdict, how long to keep watching for a duplicate: more than one sweeper interval. */
const settleMs = s(fastSpec.zombieSweeperIntervalSeconds + 3)
/** The Jobs' ttlSecondsAfterFinished: a finished Job that is no zombie goes this long after it finished. */
const jobTtlSeconds = 5

const assigneeOf = (mode: string) => `fm-${mode}`
/** The control: a Config (one per repeat) whose Secret is created while its pod waits with CreateContainerConfigError. */
const lateSecret = (repeat: number) => ({ mode: `late-secret-${repeat}`, secretName: `agent-secret-created-late-${repeat}`, graceSeconds: 60 })

/** A creationTimestamp (client-node gives a Date, the raw watch a string) as epoch ms. */
const millisOf = (at: Date | string | undefined) => (at instanceof Date ? at.getTime() : at === undefined ? Number.NaN : Date.parse(at))

/** How the run's pod ended, as the watch saw it last (for the variants of an exit-0 eviction). */
const finalPhase = (recorder: Recorder, jobName: string) => {
  const pod = recorder.steps(jobName).flatMap((step) => step.pods).at(-1)
  const status = (pod?.["status"] ?? {}) as { readonly phase?: string; readonly reason?: string }
  return `${status.phase ?? "?"}${status.reason === undefined ? "" : `/${status.reason}`}`
}

describe.skipIf(node === undefined).concurrent("zombie failure modes on a real node (Kubernetes writes every status; the real run service judges)", () => {
  let clients: NodeClients
  let world: World
  let executor: ExecutorProcess
  let recorder: Recorder
  let ctx: ModeContext
  const samples: Array<Sample> = []

  beforeAll(async () => {
    clients = nodeClients(node!)
    ctx = { node: node!, quotaPriorityClass: `fm-${uniqueSuffix()}-no-pods`, quotaName: "agent-quota" }
    const base = { image: node!.images.agent, ...fastSpec }
    world = await makeNodeWorld(node!, "fm", {
      ...Object.fromEntries(modes.map((mode) => [assigneeOf(mode.name), { assignee: assigneeOf(mode.name), ...base, ...mode.spec(ctx) }])),
      ...Object.fromEntries(Array.from({ length: repeats }, (_, i) => lateSecret(i + 1)).map((late) => [
        assigneeOf(late.mode),
        { assignee: assigneeOf(late.mode), ...base, secretName: late.secretName, imagePullGraceSeconds: late.graceSeconds }
      ]))
    })
    await createPodQuota(clients, world.namespace, ctx.quotaName, ctx.quotaPriorityClass)
    recorder = await startRecorder(world.kube.kc, world.namespace)
    executor = await world.start("run", { JOB_TTL_SECONDS_AFTER_FINISHED: String(jobTtlSeconds) })
    await executor.ready()
  }, 180_000)

  afterAll(async () => {
    if (samples.length > 0) {
      console.info(`detection latency on the real node (${repeats} run(s) of each mode):\n${latencyTable(samples)}`)
      saveSamples(samples)
    }
    await recorder?.stop()
    await world?.close()
    if (world !== undefined) await removeNamespace(world)
    if (ctx !== undefined) await deletePodQuota(clients, ctx.quotaPriorityClass)
  }, 150_000)

  afterEach(({ task }) => {
    if (task.result?.state === "fail" && executor !== undefined) {
      console.error(`--- ${executor.name} log (last lines) ---\n${executor.logTail(150)}`)
    }
  })

  /** Spawns a run of `assignee` for a fresh task: its Job (with our finalizer) and spawn pair. */
  const spawnRun = async (assignee: string) => {
    const taskId = newTaskId()
    await world.publishTasks([{ taskId, assignee }])
    const job = await world.kube.jobOf(world.namespace, taskId, 60_000)
    await spawnOf(world.log, taskId, 60_000)
    expect(hasFinalizer(job)).toBe(true)
    return { taskId, name: job.metadata?.name ?? "", createdAt: millisOf(job.metadata?.creationTimestamp) }
  }

  const seen = (what: string, jobName: string, accept: (seen: Seen) => boolean, timeoutMs: number) =>
    eventually(`${what} of ${jobName}`, timeoutMs, () => recorder.firstSeen(jobName, accept))

  /** No verdict: nothing after the spawn pair, no ZombieDetected Event, and the Job gone by its TTL. */
  const expectNoVerdict = async (run: { readonly taskId: string; readonly name: string }) => {
    const complete = await seen("Complete", run.name, (o) => o.kind === "Job" && conditionOf(o.job, "Complete") !== undefined, 90_000)
    // the executor releases its finalizer, the TTL controller removes the Job
    await world.kube.jobGone(world.namespace, run.name, s(jobTtlSeconds + 30))
    const removed = await seen("the deletion", run.name, (o) => o.kind === "Job" && o.job === null, 5_000)
    expect(removed.at - complete.at).toBeLessThan(s(jobTtlSeconds + 10))
    await sleep(settleMs)
    expect(world.log.forTask(run.taskId).filter(isFailure)).toEqual([])
    expectRunCommands(world.log.all(), run.taskId, false)
    expect((await world.kube.eventsFor(world.namespace, run.name)).filter((e) => e.reason === "ZombieDetected")).toEqual([])
  }

  const judged = async (mode: Mode & { readonly reason: NonNullable<Mode["reason"]> }) => {
    const run = await spawnRun(assigneeOf(mode.name))
    const graceMs = s(mode.grace(fastSpec))
    const failure = await failureOf(world.log, run.taskId, graceMs + s((mode.dueAfterJob ?? 0) + 90))
    const first = mode.firstBad === undefined ? undefined : recorder.firstSeen(run.name, mode.firstBad)
    expect(first, `the first bad status of ${run.name}`).toBeDefined()

    await world.kube.jobGone(world.namespace, run.name, 60_000)
    await expectZombieEvent(world.kube, world.namespace, run.name, mode.reason)
    const wait = failure.receivedAt + settleMs - Date.now()
    if (wait > 0) await sleep(wait)
    const { update } = expectFailurePair(world.log.all(), run.taskId, run.name, mode.reason)
    for (const pattern of mode.detail(ctx)) expect(detailOf(update), "the detail").toMatch(pattern)
    expectRunCommands(world.log.all(), run.taskId, true)
    expect(await world.kube.jobsOf(world.namespace, run.taskId)).toEqual([])

    // never before the grace, counted from where the executor counts it
    const pod = first?.pods[0]
    const graceFrom = mode.graceFrom === "job"
      ? run.createdAt
      : mode.graceFrom === "pod"
      ? millisOf(pod === undefined ? undefined : metaOf(pod).creationTimestamp)
      : (first?.at ?? 0)
    expect(failure.receivedAt - graceFrom, "from where the grace counts to the verdict").toBeGreaterThanOrEqual(graceMs - 1_500)
    if (mode.dueAfterJob !== undefined) {
      // at the deadline (FailureTarget), not when the Job finally fails (a termination grace later)
      const afterJob = failure.receivedAt - run.createdAt
      expect(afterJob, "from the Job's creation to the verdict").toBeGreaterThanOrEqual(s(mode.dueAfterJob) - 1_000)
      expect(afterJob, "from the Job's creation to the verdict").toBeLessThan(s(mode.dueAfterJob + 10))
    }
    samples.push({ mode: mode.name, ms: failure.receivedAt - (first?.at ?? failure.receivedAt), graceMs })
    return { run }
  }

  for (let repeat = 1; repeat <= repeats; repeat++) {
    const suffix = repeats > 1 ? ` (#${repeat})` : ""
    for (const mode of modes) {
      const reason = mode.reason
      it(`${mode.title}${suffix}`, async () => {
        if (reason === null) return expectNoVerdict(await spawnRun(assigneeOf(mode.name)))
        const { run } = await judged({ ...mode, reason })
        if (mode.name === "evicted-exit-0") console.info(`evicted-exit-0: the pod ended ${finalPhase(recorder, run.name)}`)
      }, 240_000)
    }

    const late = lateSecret(repeat)
    it(`control: a Secret created while the pod waits with CreateContainerConfigError, within the grace: no verdict${suffix}`, async () => {
      const run = await spawnRun(assigneeOf(late.mode))
      const waiting = await seen("CreateContainerConfigError", run.name, (o) =>
        o.kind === "Pod" && o.pods.some((p) => waitingReasons(p).includes("CreateContainerConfigError")), 60_000)
      await world.kube.core
        .createNamespacedSecret({
          namespace: world.namespace,
          body: { metadata: { name: late.secretName }, stringData: { AGENT_STDOUT: "configured at last" } }
        })
      const succeeded = await seen("the pod Succeeded", run.name, (o) =>
        o.kind === "Pod" && o.pods.some((p) => phaseOf(p) === "Succeeded"), 90_000)
      expect(succeeded.at - waiting.at, "the container ran within the grace").toBeLessThan(s(late.graceSeconds))
      await expectNoVerdict(run)
    }, 240_000)
  }
})
