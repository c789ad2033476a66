// Records what the real node writes for each failure mode of modes.ts into the testkit's fixtures
// (packages/testkit/test/fixtures/real-node/<mode>.json, checked by RealNodeShapes.test.ts).
// No executor runs: each mode is one Job exactly as the executor builds it (JobBuilder.buildJob, the
// finalizer included), and a watch records every write Kubernetes makes to the Job, its pod and their
// Events until the run is over (or, for a run that never ends, for a while).
//
//   RECORD_FIXTURES=1 npx -y pnpm@12.4.2 run test:node -- test/node/record-fixtures.test.ts
//
// Without RECORD_FIXTURES=1 the file is skipped.
import { randomUUID } from "node:crypto"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import * as k8s from "@kubernetes/client-node"
import { Either } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { AgentConfig, JobBuilder, Labels, TaskEvent } from "@executor/domain"
import { taskEvent } from "../support/kafka.js"
import { createNamespace, deleteNamespace, type NodeClients, nodeClients } from "../support/nodeCluster.js"
import { requireNode } from "../support/nodeEnv.js"
import { fixture, fixtureDir } from "../support/nodeFixtures.js"
import { type Recorder, startRecorder } from "../support/nodeRecorder.js"
import { createPodQuota, deletePodQuota } from "../support/nodeQuota.js"
import { eventually, sleep } from "../support/wait.js"
import { fastSpec, type Mode, type ModeContext, modes, variants } from "./modes.js"

const mergePatch = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch)
const node = process.env["RECORD_FIXTURES"] === "1" ? requireNode("test/node/record-fixtures.test.ts") : undefined
const names = Labels.names()
const assignee = "claude-agent"

const decoded = <A, E>(what: string, either: Either.Either<A, E>): A => {
  if (Either.isLeft(either)) throw new Error(`${what}: ${String(either.left)}`)
  return either.right
}

describe.skipIf(node === undefined).concurrent("recording the real node's statuses for the testkit's fixtures", () => {
  let clients: NodeClients
  let namespace: string
  let recorder: Recorder
  let ctx: ModeContext

  beforeAll(async () => {
    clients = nodeClients(node!)
    namespace = await createNamespace(clients, "rec")
    const quota = await createPodQuota(clients, namespace, "agent-quota")
    ctx = { node: node!, quotaPriorityClass: quota.priorityClass, quotaName: quota.name }
    recorder = await startRecorder(clients.kc, namespace)
  }, 60_000)

  afterAll(async () => {
    await recorder?.stop()
    if (clients !== undefined && namespace !== undefined) {
      await deletePodQuota(clients, ctx.quotaPriorityClass)
      await deleteNamespace(clients, namespace)
    }
  }, 60_000)

  const jobOf = (mode: Mode, taskId: string) => {
    const event = decoded("task event", TaskEvent.decodeTaskEvent(JSON.stringify(taskEvent({ taskId, assignee }))))
    const config = decoded(mode.name, AgentConfig.agentConfig({ name: assignee, namespace }, { assignee, image: node!.images.agent, ...fastSpec, ...mode.spec(ctx) }))
    const name = JobBuilder.jobName({ assignee, taskIdentifier: taskId, eventIdentity: JobBuilder.eventIdentity(event), triggerCount: 0 })
    const settings: JobBuilder.JobSettings = {
      namespace,
      branch: "dev",
      kafkaBrokers: node!.kafkaBrokers,
      topicPrefix: "rec",
      jobTtlSecondsAfterFinished: mode.record.ttl ?? 600,
      kafkaClientCertSecret: "",
      kafkaCaCertSecret: "",
      imagePullSecret: "docker"
    }
    return decoded(mode.name, JobBuilder.buildJob({ event, config, settings, names, name }))
  }

  const readJob = (name: string) => clients.batch.readNamespacedJob({ name, namespace }).catch(() => undefined)

  /** Over: a finished Job whose pods all ended (or a Job gone), seen for a few more seconds. */
  const over = async (name: string) => {
    const job = await readJob(name)
    if (job === undefined) return true
    const finished = job.status?.conditions?.some((c) => (c.type === "Complete" || c.type === "Failed") && c.status === "True") ?? false
    if (!finished) return false
    const pods = await clients.core.listNamespacedPod({ namespace, labelSelector: `job-name=${name}` })
    return pods.items.every((p) => p.status?.phase === "Succeeded" || p.status?.phase === "Failed")
  }

  const release = async (name: string) => {
    await clients.batch.patchNamespacedJob({ name, namespace, body: { metadata: { finalizers: null } } }, mergePatch).catch(() => undefined)
    await clients.batch.deleteNamespacedJob({ name, namespace, propagationPolicy: "Background" }).catch(() => undefined)
  }

  /** One run of the mode, recorded until it is over (or for the mode's time), then released. */
  const recordRun = async (mode: Mode) => {
    const taskId = randomUUID()
    const manifest = jobOf(mode, taskId)
    const name = manifest.metadata.name
    // the JSON the executor sends (JobBuilder's manifest is a subset of V1Job, with readonly fields)
    await clients.batch.createNamespacedJob({ namespace, body: manifest as unknown as k8s.V1Job })
    const deadline = Date.now() + mode.record.seconds * 1000
    if (mode.record.ttl !== undefined) {
      // the TTL controller deletes the Job; our finalizer holds it Terminating until released
      await eventually(`the TTL controller deleting ${name}`, mode.record.seconds * 1000, async () =>
        (await readJob(name))?.metadata?.deletionTimestamp === undefined ? undefined : true)
      await sleep(2_000)
    } else {
      while (Date.now() < deadline && !(await over(name))) await sleep(500)
      await sleep(3_000)
    }
    // what follows is our own clean-up, not the mode: the recording ends here
    const releasedAt = Date.now()
    await release(name)
    return {
      jobName: name,
      taskId,
      namespace,
      steps: recorder.steps(name).filter((step) => step.at < releasedAt),
      events: recorder.events(name).filter((event) => event.at < releasedAt).map((event) => event.object)
    }
  }

  for (const mode of modes) {
    it(mode.name, async () => {
      const started = Date.now()
      const runs = await Promise.all(Array.from({ length: mode.record.replicas ?? 1 }, () => recordRun(mode)))
      const written = new Set<string>()
      for (const run of runs) {
        const variant = variants.find((v) => v.shows(run.steps))
        const name = variant === undefined ? mode.name : `${mode.name}-${variant.suffix}`
        console.info(`${mode.name}: a run recorded as ${name} (${run.steps.length} steps, ${run.events.length} events)`)
        if (written.has(name)) continue
        written.add(name)
        const recorded = fixture(mode, run, variant === undefined ? undefined : { name, summary: `${mode.fixture.summary}; ${variant.summary}` })
        writeFileSync(join(fixtureDir, `${name}.json`), `${JSON.stringify(recorded, null, 2)}\n`)
      }
      console.info(`recorded ${mode.name} in ${((Date.now() - started) / 1000).toFixed(1)} s: ${[...written].join(", ")}`)
      expect(runs.every((run) => run.steps.length > 0)).toBe(true)
    }, 180_000)
  }
})
