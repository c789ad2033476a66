// The installed executor's memory as the kubelet counts it (the pod cgroup's usage minus inactive
// file pages; cross-checked with the kubelet's /stats/summary), at start and with 60 tasks in
// flight: 50 that succeed after 20 s, 10 whose image cannot be pulled. deploy/deployment.yaml's
// requests and limits come from these figures (docs/operations.md, "Resources"); the test fails when
// the measured working set no longer fits them with the headroom chosen there.
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { auditEntries, forbidden } from "../support/audit.js"
import {
  agentConfig,
  type ExecutorImage,
  type Install,
  install,
  type MemorySamples,
  mib,
  readyImage,
  sampleWorkingSet
} from "../support/executorInstall.js"
import { newTaskId } from "../support/harness.js"
import { isFailure } from "../support/kafka.js"
import { names } from "../support/kube.js"
import { type NodeClients, nodeClients } from "../support/nodeCluster.js"
import { requireNode } from "../support/nodeEnv.js"
import { repoRoot } from "../support/stack.js"
import { eventually, sleep } from "../support/wait.js"

const node = requireNode("test/node/resources.test.ts")

// small agent pods, so that 60 of them fit the 2-CPU node beside the other test files' pods
const agentResources = { requests: { cpu: "5m", memory: "16Mi" }, limits: { cpu: "50m", memory: "32Mi" } }
const agent = (assignee: string, extra: object) => agentConfig(node, assignee, { resources: agentResources, ...extra })
const agents = {
  work: agent("work", { env: { AGENT_SLEEP: "20" } }),
  // in flight for the whole load: judged only after 40 s of ImagePullBackOff
  stuck: agent("stuck", { image: node?.images.unreachable ?? "", imagePullGraceSeconds: 40 })
}

/** `memory: 160Mi` and the like of the service container in deploy/deployment.yaml. */
const deployedMemory = () => {
  const text = readFileSync(join(repoRoot, "deploy", "deployment.yaml"), "utf8")
  const quantity = (section: "requests" | "limits") => {
    const match = new RegExp(`${section}:\\n\\s+cpu: \\S+\\n\\s+memory: (\\d+)Mi`).exec(text)
    if (match === null) throw new Error(`no ${section}.memory in deploy/deployment.yaml`)
    return Number(match[1]) * 1048576
  }
  return { request: quantity("requests"), limit: quantity("limits") }
}

const describeSamples = (s: MemorySamples) =>
  `working set max ${mib(s.max)} MiB, mean ${mib(s.mean)} MiB (${s.count} samples; kubelet's max ${mib(s.kubeletMax)} MiB), CPU ${Math.round(s.cpuMillicores)}m on average`

describe.skipIf(node === undefined)("the installed executor's memory", () => {
  let clients: NodeClients
  let image: ExecutorImage
  let executor: Install
  const figures: Array<string> = []

  beforeAll(async () => {
    clients = nodeClients(node!)
    image = await readyImage(node!)
    executor = await install(node!, clients, { label: "resources", image, agents })
  }, 300_000)

  afterAll(async () => {
    console.log(`[resources] ${image?.version}\n  ${figures.join("\n  ")}`)
    if (executor !== undefined) await executor.uninstall()
  }, 180_000)

  it("fits its requests and limits at start and with 60 tasks in flight", async () => {
    const pod = await executor.waitReady()
    // start-up: the first 15 s after Ready
    const idle = await sampleWorkingSet(node!, executor.namespace, pod, sleep(15_000))
    figures.push(`idle after start: ${describeSamples(idle)}`)

    const work = Array.from({ length: 50 }, () => ({ taskId: newTaskId(), assignee: "work", stage: "prod" }))
    const stuck = Array.from({ length: 10 }, () => ({ taskId: newTaskId(), assignee: "stuck", stage: "prod" }))
    const publishedAt = Date.now()
    await executor.publishTasks([...work, ...stuck])
    const settled = (async () => {
      const jobsOf = async (taskId: string) =>
        (await clients.batch.listNamespacedJob({ namespace: executor.namespace, labelSelector: `${names.taskIdLabel}=${taskId}` })).items
      await eventually("the 50 runs Complete and released", 420_000, async () => {
        const jobs = (await clients.batch.listNamespacedJob({ namespace: executor.namespace, labelSelector: `${names.assigneeLabel}=work` })).items
        const done = jobs.filter((j) =>
          (j.status?.conditions ?? []).some((c) => c.type === "Complete" && c.status === "True") &&
          !(j.metadata?.finalizers ?? []).includes(names.finalizer))
        return done.length === 50 ? true : undefined
      }, 1_000)
      await executor.log.waitFor("the 10 image_pull_backoff verdicts", 120_000, (all) =>
        stuck.every((t) => all.some((r) => r.taskId === t.taskId && isFailure(r))) ? true : undefined)
      for (const t of work.slice(0, 3)) expect(await jobsOf(t.taskId)).toHaveLength(1)
    })()
    const load = await sampleWorkingSet(node!, executor.namespace, pod, settled)
    await settled
    figures.push(`60 tasks (50 x 20 s, 10 unreachable images), all settled in ${Math.round((Date.now() - publishedAt) / 1000)} s: ${describeSamples(load)}`)
    const after = await sampleWorkingSet(node!, executor.namespace, pod, sleep(10_000))
    figures.push(`idle after the load: ${describeSamples(after)}`)

    const { limit, request } = deployedMemory()
    figures.push(`deploy/deployment.yaml: requests.memory ${mib(request)} MiB, limits.memory ${mib(limit)} MiB`)
    const peak = Math.max(idle.max, load.max, after.max, load.kubeletMax)
    // the request covers the load; the limit leaves at least half as much again on top of the peak
    expect(peak, "peak working set within requests.memory").toBeLessThanOrEqual(request)
    expect(peak * 1.5, "1.5 x the peak within limits.memory").toBeLessThanOrEqual(limit)
    expect((await executor.pods())[0]?.restarts).toBe(0)
    expect(forbidden(auditEntries(node!.auditLog, executor.user))).toEqual([])
  }, 600_000)
})
