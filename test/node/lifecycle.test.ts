// The installed executor's life in the cluster, measured: `kubectl delete pod` (SIGTERM, the
// verdicts in flight drained within the grace period), a SIGKILLed container (the kubelet's
// replacement recovers every run), a rollout of a new image version (nothing lost). In each: the time
// to Ready, the runs the new process recovered, and no duplicate on the request topic (read
// uncommitted, as the controller reads it).
import * as k8s from "@kubernetes/client-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { auditEntries, forbidden } from "../support/audit.js"
import { agentConfig, type ExecutorImage, type Install, install, killContainer, type PodView, readyImage } from "../support/executorInstall.js"
import { newTaskId } from "../support/harness.js"
import { failuresOf, isFailure, isSpawnNotification, reasonOf } from "../support/kafka.js"
import { names } from "../support/kube.js"
import { type NodeClients, nodeClients } from "../support/nodeCluster.js"
import { requireNode } from "../support/nodeEnv.js"
import { eventually, sleep } from "../support/wait.js"

const node = requireNode("test/node/lifecycle.test.ts")

const agent = (assignee: string, env: Record<string, string>) => agentConfig(node, assignee, { env })

const agents = {
  // succeeds after 20 s
  slow: agent("slow", { AGENT_SLEEP: "20" }),
  // runs 6 s, then exits 1: a verdict
  late: agent("late", { AGENT_SLEEP: "6", AGENT_EXIT: "1" }),
  // runs 30 s, then exits 1: a verdict after a restart
  later: agent("later", { AGENT_SLEEP: "30", AGENT_EXIT: "1" })
}

interface Termination {
  readonly ms: number
  readonly exitCode: number | undefined
  readonly reason: string | undefined
}

/** Polls the pod until it is gone; how long it took and the last terminated state the kubelet wrote. */
const watchTermination = (clients: NodeClients, namespace: string, name: string, from: number): Promise<Termination> =>
  (async () => {
    let last: k8s.V1ContainerStateTerminated | undefined
    for (;;) {
      try {
        const pod = await clients.core.readNamespacedPod({ name, namespace })
        last = pod.status?.containerStatuses?.find((c) => c.name === "service")?.state?.terminated ?? last
      } catch (error) {
        if ((error as { code?: number }).code === 404) return { ms: Date.now() - from, exitCode: last?.exitCode, reason: last?.reason }
      }
      await sleep(50)
    }
  })()

/**
 * The service as its clients see it, polled on its port every 100 ms from `from`: when /readiness
 * stopped answering 200 and when it answered 200 again (the executor's own readiness, apart from
 * the kubelet's probe period).
 */
const serviceGap = (executor: Install, from: number) =>
  (async () => {
    let downAt: number | undefined
    for (;;) {
      const ok = (await executor.http("/readiness")).status === 200
      if (!ok && downAt === undefined) downAt = Date.now()
      if (ok && downAt !== undefined) return { downMs: downAt - from, upMs: Date.now() - from }
      if (Date.now() - from > 240_000) throw new Error("the service did not come back within 240 s")
      await sleep(100)
    }
  })()

const recoveredLine = (logs: string) => /recovered (\d+) runs from (\d+) labelled Jobs/.exec(logs)

describe.skipIf(node === undefined)("the installed executor's lifecycle", { timeout: 360_000 }, () => {
  let clients: NodeClients
  let image: ExecutorImage
  let next: ExecutorImage
  let executor: Install
  const figures: Array<string> = []

  const jobsOf = async (taskId: string) =>
    (await clients.batch.listNamespacedJob({ namespace: executor.namespace, labelSelector: `${names.taskIdLabel}=${taskId}` })).items
  /**
   * Until `count` more agent pods have been seen started (Running or ended; a late one runs only 6 s
   * and its Job, with the pod, is deleted once judged).
   */
  const seenStarted = new Set<string>()
  const startedPods = async (count: number) => {
    const target = seenStarted.size + count
    await eventually(`${count} agent pods started`, 180_000, async () => {
      const pods = await clients.core.listNamespacedPod({ namespace: executor.namespace, labelSelector: names.taskIdLabel })
      for (const p of pods.items) if (p.status?.phase !== undefined && p.status.phase !== "Pending") seenStarted.add(p.metadata?.uid ?? "")
      return seenStarted.size >= target ? true : undefined
    }, 250)
  }

  /** Tasks in flight: `slow` ones that succeed, `late` ones that fail. */
  const inFlight = async (
    slow: number,
    late: number,
    lateAgent: "late" | "later" = "late"
  ): Promise<{ readonly slow: ReadonlyArray<string>; readonly late: ReadonlyArray<string> }> => {
    const tasks = [
      ...Array.from({ length: slow }, () => ({ taskId: newTaskId(), assignee: "slow", stage: "prod" })),
      ...Array.from({ length: late }, () => ({ taskId: newTaskId(), assignee: lateAgent, stage: "prod" }))
    ]
    await executor.publishTasks(tasks)
    return { slow: tasks.filter((t) => t.assignee === "slow").map((t) => t.taskId), late: tasks.filter((t) => t.assignee !== "slow").map((t) => t.taskId) }
  }

  /**
   * Every spawn published: the disruption comes with runs in flight, not with an event in the middle
   * of its dispatch (stopping between a Job's create and its spawn commands is the consumer's case).
   */
  const allSpawned = (runs: { readonly slow: ReadonlyArray<string>; readonly late: ReadonlyArray<string> }) =>
    executor.log.waitFor("every spawn notification", 120_000, (all) =>
      [...runs.slow, ...runs.late].every((t) => all.some((r) => r.taskId === t && isSpawnNotification(r))) ? true : undefined)

  /** Every run settled once: each slow Job Complete and released, each late task one failure pair, one Job and one spawn per task. */
  const everyRunSettled = async (runs: { readonly slow: ReadonlyArray<string>; readonly late: ReadonlyArray<string> }) => {
    for (const taskId of runs.slow) {
      await eventually(`the Job of ${taskId} Complete and released`, 120_000, async () => {
        const [job, ...more] = await jobsOf(taskId)
        if (more.length > 0) throw new Error(`${taskId} has ${more.length + 1} Jobs`)
        const complete = job?.status?.conditions?.some((c) => c.type === "Complete" && c.status === "True") ?? false
        return complete && !(job?.metadata?.finalizers ?? []).includes(names.finalizer) ? true : undefined
      }, 500)
    }
    for (const taskId of runs.late) {
      await executor.log.waitFor(`the failure of ${taskId}`, 120_000, (all) => all.find((r) => r.taskId === taskId && isFailure(r)))
      await eventually(`the Job of ${taskId} deleted`, 60_000, async () => ((await jobsOf(taskId)).length === 0 ? true : undefined), 500)
    }
    await sleep(3_000)
    const records = executor.log.all()
    const duplicates: Array<string> = []
    for (const taskId of [...runs.slow, ...runs.late]) {
      const spawns = records.filter((r) => r.taskId === taskId && isSpawnNotification(r)).length
      const failures = failuresOf(records, taskId)
      if (spawns !== 1) {
        const commands = records.filter((r) => r.taskId === taskId).map((r) => (isSpawnNotification(r) ? "spawn" : isFailure(r) ? "failure" : r.operation))
        duplicates.push(`${taskId}: ${spawns} spawns (${commands.join(", ")})`)
      }
      const expected = runs.late.includes(taskId) ? 1 : 0
      if (failures.length !== expected) duplicates.push(`${taskId}: ${failures.length} failures`)
      for (const { next, update } of failures) {
        expect(reasonOf(update)).toBe("pod_crash_no_stdout")
        expect(next?.operation).toBe("increment-frontmatter")
      }
    }
    return duplicates
  }

  const recoveredBy = async (pod: PodView, previous = false) =>
    eventually(`the recovery line of ${pod.name}`, 30_000, async () => {
      const match = recoveredLine(await executor.logs(pod.name, { previous }))
      return match === null ? undefined : { runs: Number(match[1]), jobs: Number(match[2]) }
    }, 500)

  beforeAll(async () => {
    clients = nodeClients(node!)
    image = await readyImage(node!)
    next = await readyImage(node!, { version: `${image.version}-next` })
    executor = await install(node!, clients, { label: "lifecycle", image, agents })
    figures.push(`installed (${image.version}): Ready ${executor.readyAfterMs} ms after kubectl apply -k`)
  }, 300_000)

  afterAll(async () => {
    console.log(`[lifecycle]\n  ${figures.join("\n  ")}`)
    if (executor !== undefined) await executor.uninstall()
  }, 120_000)

  it("kubectl delete pod: the verdicts in flight are drained within the grace period, the replacement recovers the rest, no duplicate", async () => {
    const runs = await inFlight(4, 16)
    await startedPods(20)
    await allSpawned(runs)
    // the first verdicts are out: delete the pod while the others are being judged and published
    await executor.log.waitFor("the first failure", 120_000, (all) => all.find((r) => runs.late.includes(r.taskId) && isFailure(r)))
    const old = await executor.waitReady()
    const deletedAt = Date.now()
    const terminated = watchTermination(clients, executor.namespace, old.name, deletedAt)
    const gap = serviceGap(executor, deletedAt)
    await executor.kubectl(["delete", "pod", old.name, "--wait=false"])
    const termination = await terminated
    const replacement = await executor.waitReady(120_000, (p) => p.name !== old.name)
    const readyMs = Date.now() - deletedAt
    const service = await gap
    const duplicates = await everyRunSettled(runs)
    const before = executor.log.all().filter((r) => runs.late.includes(r.taskId) && isFailure(r))
    const drained = before.filter((r) => r.receivedAt >= deletedAt && r.receivedAt <= deletedAt + termination.ms).length
    const publishedBefore = before.filter((r) => r.receivedAt < deletedAt).length
    const recovered = await recoveredBy(replacement)
    const waitedForPort = (await clients.core.listNamespacedEvent({ namespace: executor.namespace, fieldSelector: `involvedObject.name=${replacement.name},reason=FailedScheduling` }))
      .items.map((e) => e.message ?? "")[0]
    figures.push(
      `kubectl delete pod: the old pod exited ${termination.exitCode} (${termination.reason}) ${termination.ms} ms after the delete (grace 30 s); ` +
        `failures of the 16 late runs: ${publishedBefore} before the delete, ${drained} while it terminated, ${16 - publishedBefore - drained} by the replacement; ` +
        `the service's /readiness: not 200 from ${service.downMs} ms, 200 again at ${service.upMs} ms; replacement pod Ready ${readyMs} ms after the delete, ` +
        `recovered ${recovered.runs} runs from ${recovered.jobs} labelled Jobs; duplicates: ${duplicates.length}` +
        (waitedForPort === undefined ? "" : `; the replacement waited for the node's port: "${waitedForPort}"`)
    )
    expect(termination.exitCode).toBe(0)
    expect(termination.ms).toBeLessThan(30_000)
    expect(duplicates).toEqual([])
  })

  it("a SIGKILLed container: the kubelet's replacement recovers every run, no duplicate", async () => {
    // mid-run, with no verdict being published at the kill: the failing runs end after the restart
    // (a SIGKILL inside a publish is the publisher's case)
    const runs = await inFlight(6, 6, "later")
    await startedPods(12)
    await allSpawned(runs)
    const before = await executor.waitReady()
    const killedAt = Date.now()
    const gap = serviceGap(executor, killedAt)
    await killContainer(node!, before.containerId!)
    const after = await executor.waitReady(120_000, (p) => p.restarts === before.restarts + 1)
    const readyMs = Date.now() - killedAt
    const service = await gap
    const recovered = await recoveredBy(after)
    const duplicates = await everyRunSettled(runs)
    figures.push(
      `SIGKILL of the container: the service's /readiness 200 again ${service.upMs} ms after the kill, the pod Ready again after ${readyMs} ms (same pod, restart ${after.restarts}), ` +
        `recovered ${recovered.runs} runs from ${recovered.jobs} labelled Jobs (12 in flight); duplicates: ${duplicates.length}`
    )
    expect(after.name).toBe(before.name)
    expect(recovered.runs).toBeGreaterThanOrEqual(12)
    expect(duplicates).toEqual([])
  })

  it("a rollout of a new image version (kubectl set image): the new version runs every run to its end, no duplicate", async () => {
    const runs = await inFlight(6, 6)
    await startedPods(12)
    await allSpawned(runs)
    const old = await executor.waitReady()
    const setAt = Date.now()
    const terminated = watchTermination(clients, executor.namespace, old.name, setAt)
    const gap = serviceGap(executor, setAt)
    await executor.kubectl(["set", "image", "deployment/agent-task-executor", `service=${node!.registry}/agent-task-executor@${next.digest}`])
    const termination = await terminated
    const rolled = await executor.waitReady(180_000, (p) => p.name !== old.name && p.imageId?.endsWith(next.digest) === true)
    const readyMs = Date.now() - setAt
    const service = await gap
    await executor.kubectl(["rollout", "status", "deployment/agent-task-executor", "--timeout=60s"])
    expect(await executor.metric("build_info", { version: next.version })).toBeGreaterThan(0)
    const recovered = await recoveredBy(rolled)
    const duplicates = await everyRunSettled(runs)
    figures.push(
      `rollout ${image.version} -> ${next.version}: the old pod exited ${termination.exitCode} ${termination.ms} ms after kubectl set image, ` +
        `the service's /readiness 200 again (new version) at ${service.upMs} ms, the new pod Ready ${readyMs} ms after it, recovered ${recovered.runs} runs from ${recovered.jobs} labelled Jobs (12 in flight); duplicates: ${duplicates.length}`
    )
    expect(termination.exitCode).toBe(0)
    expect(duplicates).toEqual([])
  })

  it("was never refused by the API server (no 403 in its audit log)", () => {
    expect(forbidden(auditEntries(node!.auditLog, executor.user)).map((e) => `${e.verb} ${e.uri}`)).toEqual([])
  })
})
