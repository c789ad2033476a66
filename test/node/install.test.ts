// The executor installed into the real node as an operator installs it (deploy/ through kustomize,
// the image from the node's registry, its ServiceAccount and Role, the in-cluster configuration),
// then driven end to end: a dispatch, a success, a zombie of each detector and a restart. The API
// server's audit log proves least privilege: a 403 anywhere fails, and every permission of the Role
// was used by some request.
import * as k8s from "@kubernetes/client-node"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { auditEntries, forbidden, permissionsGranted, permissionsUsed, usageTable } from "../support/audit.js"
import { agentConfig, type ExecutorImage, type Install, install, killContainer, readyImage } from "../support/executorInstall.js"
import { newTaskId, spawnOf } from "../support/harness.js"
import { type CommandRecord, failuresOf, isFailure, isIncrement, isSpawnNotification, reasonOf } from "../support/kafka.js"
import { names } from "../support/kube.js"
import { type NodeClients, nodeClients } from "../support/nodeCluster.js"
import { requireNode } from "../support/nodeEnv.js"
import { eventually, sleep } from "../support/wait.js"

const node = requireNode("test/node/install.test.ts")

const agent = (assignee: string, env: Record<string, string>, extra: object = {}) => agentConfig(node, assignee, { env, ...extra })

const agents = {
  ok: agent("ok", { AGENT_STDOUT: "done", AGENT_SLEEP: "2" }),
  crash: agent("crash", { AGENT_STDERR: "boom", AGENT_EXIT: "1" }),
  // runs a while, then fails: its Job has long been steady when the pod ends
  "late-crash": agent("late-crash", { AGENT_SLEEP: "8", AGENT_EXIT: "1" }),
  badimage: { ...agent("badimage", {}), image: "Bad:Image::x" },
  deadline: agent("deadline", { AGENT_SLEEP: "forever" }, { zombieJobTimeoutSeconds: 30 }),
  sweep: agent("sweep", { AGENT_SLEEP: "forever" }, { zombieJobTimeoutSeconds: 30 }),
  hold: agent("hold", { AGENT_SLEEP: "forever" }),
  slow: agent("slow", { AGENT_SLEEP: "25" }),
  // asks for ephemeral storage, which the namespace's quota does not allow: the Job gets no pod
  quota: agent("quota", {}, { resources: { requests: { "ephemeral-storage": "1Mi" } } }),
  pull: { ...agent("pull", {}), image: node?.images.unreachable ?? "" }
}

const verdictLine = (logs: string, job: string) =>
  logs.split("\n").flatMap((line) => {
    try {
      const entry = JSON.parse(line) as { annotations?: Record<string, string> }
      return entry.annotations?.["event"] === "zombie_verdict" && entry.annotations["job"] === job ? [entry.annotations] : []
    } catch {
      return []
    }
  })

/** Exactly one failure pair for the task: `{current_job: ""}` with `## Failure`, then the increment. */
const expectOneFailure = (records: ReadonlyArray<CommandRecord>, taskId: string, job: string, reason: string) => {
  const pairs = failuresOf(records, taskId)
  expect(pairs, `failure updates of ${taskId}`).toHaveLength(1)
  const { next, update } = pairs[0]!
  expect(update.key).toBe(taskId)
  expect(update.updates).toEqual({ current_job: "" })
  expect(update.body?.section).toContain(`- **Job:** ${job}\n`)
  expect(reasonOf(update)).toBe(reason)
  expect(next?.operation).toBe("increment-frontmatter")
  expect(next?.data).toEqual({ taskIdentifier: taskId, field: "trigger_count", delta: 1 })
}

describe.skipIf(node === undefined)("the executor installed in the real node", () => {
  let clients: NodeClients
  let image: ExecutorImage
  let executor: Install

  const jobsOf = async (taskId: string) =>
    (await clients.batch.listNamespacedJob({ namespace: executor.namespace, labelSelector: `${names.taskIdLabel}=${taskId}` })).items
  // generous: the node's files run side by side on 2 cores
  const jobOf = (taskId: string, timeoutMs = 90_000) =>
    eventually(`the Job of ${taskId}`, timeoutMs, async () => (await jobsOf(taskId))[0], 200)
  const jobGone = (name: string, timeoutMs: number) =>
    eventually(`Job ${name} deleted`, timeoutMs, async () => {
      try {
        await clients.batch.readNamespacedJob({ name, namespace: executor.namespace })
        return undefined
      } catch (error) {
        return (error as { code?: number }).code === 404 ? true : undefined
      }
    }, 250)
  const failureCommand = (taskId: string, timeoutMs: number) =>
    executor.log.waitFor(`a ## Failure update for ${taskId}`, timeoutMs, (all) => all.find((r) => r.taskId === taskId && isFailure(r)))
  /** The verdict as the executor logged it (reason, detector), from the current pod's log. */
  const verdictOf = async (job: string) => {
    const pod = (await executor.pods()).find((p) => !p.deleting)!
    return eventually(`the zombie_verdict log line of ${job}`, 10_000, async () => verdictLine(await executor.logs(pod.name), job)[0])
  }
  /** One task through to its verdict: the Job, the failure pair, the Job deleted, the detector. */
  const zombie = async (assignee: string, reason: string, timeoutMs: number, whileRunning?: (job: k8s.V1Job) => Promise<void>) => {
    const taskId = newTaskId()
    await executor.publishTasks([{ taskId, assignee, stage: "prod" }])
    const job = await jobOf(taskId)
    if (whileRunning !== undefined) await whileRunning(job)
    const failure = await failureCommand(taskId, timeoutMs)
    const name = job.metadata!.name!
    expect(reasonOf(failure)).toBe(reason)
    await jobGone(name, 60_000)
    await sleep(1_000)
    expectOneFailure(executor.log.all(), taskId, name, reason)
    return { taskId, job: name, verdict: await verdictOf(name) }
  }

  beforeAll(async () => {
    clients = nodeClients(node!)
    image = await readyImage(node!)
    executor = await install(node!, clients, { label: "install", image, agents })
    await clients.core.createNamespacedResourceQuota({
      namespace: executor.namespace,
      body: { metadata: { name: "no-ephemeral-storage" }, spec: { hard: { "requests.ephemeral-storage": "0" } } }
    })
    console.log(`[install] ${image.image} installed in ${executor.namespace}, Ready ${executor.readyAfterMs} ms after kubectl apply -k`)
  }, 300_000)

  afterAll(async () => {
    if (executor !== undefined) await executor.uninstall()
  }, 120_000)

  it("runs the image of build-image.sh from the node's registry under its ServiceAccount, with the in-cluster configuration and probes green", async () => {
    const pod = await executor.waitReady()
    const spec = pod.pod.spec!
    expect(spec.serviceAccountName).toBe("agent-task-executor")
    expect(spec.hostNetwork).toBe(true)
    // the projected ServiceAccount token and CA the ServiceAccount admission plugin adds
    const access = spec.volumes?.find((v) => v.name.startsWith("kube-api-access-"))
    expect(access?.projected?.sources?.map((s) => Object.keys(s).filter((k) => (s as Record<string, unknown>)[k] !== undefined)[0])).toEqual(
      expect.arrayContaining(["serviceAccountToken", "configMap"])
    )
    const container = spec.containers.find((c) => c.name === "service")!
    expect(container.env?.find((e) => e.name === "KUBERNETES_SERVICE_HOST")?.value).toBe("127.0.0.1")
    expect(container.env?.some((e) => e.name === "KUBECONFIG")).toBe(false)
    expect(container.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false })
    expect(spec.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001 })
    // the kubelet pulled the image from the node's registry: the version's digest there
    const head = await fetch(`http://${node!.registry}/v2/agent-task-executor/manifests/${image.version}`, { method: "HEAD" })
    expect(head.headers.get("docker-content-digest")).toBe(image.digest)
    expect(container.image).toBe(`${node!.registry}/agent-task-executor@${image.digest}`)
    expect(pod.imageId).toBe(`${node!.registry}/agent-task-executor@${image.digest}`)
    expect(pod.restarts).toBe(0)
    expect((await executor.http("/healthz")).status).toBe(200)
    expect((await executor.http("/readiness")).status).toBe(200)
    expect(await executor.metric("build_info", { version: image.version })).toBeGreaterThan(0)
    // it talked to the API server as its ServiceAccount (the projected token)
    expect(auditEntries(node!.auditLog, executor.user).filter((e) => e.verb === "list").length).toBeGreaterThan(0)
  })

  describe.concurrent("end to end", { timeout: 300_000 }, () => {
    it("dispatches a task event to one Job of the agent image with the Config's env, and settles its success", async () => {
      const taskId = newTaskId()
      await executor.publishTasks([{ taskId, assignee: "ok", stage: "prod" }])
      const { increment, notification } = await spawnOf(executor.log, taskId, 90_000)
      expect(increment.data).toEqual({ taskIdentifier: taskId, field: "trigger_count", delta: 1 })
      const job = await jobOf(taskId)
      const name = job.metadata!.name!
      expect(notification.updates?.["current_job"]).toBe(name)
      const agentContainer = job.spec!.template.spec!.containers[0]!
      expect(agentContainer.image).toBe(node!.images.agent)
      expect(agentContainer.env).toEqual(expect.arrayContaining([{ name: "AGENT_STDOUT", value: "done" }, { name: "AGENT_SLEEP", value: "2" }]))
      expect(job.metadata?.finalizers).toContain(names.finalizer)
      // Kubernetes runs it to Complete; the executor releases its finalizer and publishes nothing more
      const settled = await eventually(`${name} Complete and released`, 120_000, async () => {
        const current = await clients.batch.readNamespacedJob({ name, namespace: executor.namespace })
        const complete = current.status?.conditions?.some((c) => c.type === "Complete" && c.status === "True") ?? false
        return complete && !(current.metadata?.finalizers ?? []).includes(names.finalizer) ? current : undefined
      }, 250)
      expect(settled.status?.succeeded).toBe(1)
      await sleep(2_000)
      const mine = executor.log.forTask(taskId)
      expect(mine.filter(isSpawnNotification)).toHaveLength(1)
      expect(mine.filter(isIncrement)).toHaveLength(1)
      expect(mine.filter(isFailure)).toHaveLength(0)
      expect(await jobsOf(taskId)).toHaveLength(1)
    })

    it("the pod watcher: a container that fails after running a while is pod_crash_no_stdout", async () => {
      const { verdict } = await zombie("late-crash", "pod_crash_no_stdout", 120_000)
      // the job controller learns of it from the same pod update, so the pod watcher is first
      expect(verdict).toMatchObject({ reason: "pod_crash_no_stdout", source: "pod" })
    })

    // The two below are judged on the pod's evidence by whichever watcher sees a change first: the
    // Job's own status changes in the same second (its pod created, its failure counted).
    it("an image name the kubelet cannot parse is pod_config_error at once", async () => {
      const { verdict } = await zombie("badimage", "pod_config_error", 90_000)
      expect(["pod", "job"]).toContain(verdict["source"])
    })

    it("a container that exits 1 at once is pod_crash_no_stdout", async () => {
      const { verdict } = await zombie("crash", "pod_crash_no_stdout", 90_000)
      expect(["pod", "job"]).toContain(verdict["source"])
    })

    it("the job watcher: a Job deleted under the executor is executor_watch_lost", async () => {
      // a Job the quota gives no pod: no pod event can race the Job's own (a running pod's Job
      // deleted is judged by whichever watcher sees its change first)
      const { verdict } = await zombie("quota", "executor_watch_lost", 90_000, async (job) => {
        await clients.batch.deleteNamespacedJob({ name: job.metadata!.name!, namespace: executor.namespace, propagationPolicy: "Background" })
      })
      expect(verdict).toMatchObject({ reason: "executor_watch_lost", source: "job" })
    })

    it("the job controller's deadline: a run past zombieJobTimeoutSeconds is deadline_exceeded", async () => {
      const { verdict } = await zombie("deadline", "deadline_exceeded", 150_000)
      // the Job's FailureTarget condition and the pod's deletion arrive close together
      expect(["job", "pod"]).toContain(verdict["source"])
    })

    it("the sweeper: a pod still running past the deadline the Job no longer enforces is deadline_exceeded", async () => {
      const { verdict } = await zombie("sweep", "deadline_exceeded", 180_000, async (job) => {
        // an operator lengthened the Job's deadline by hand: no Kubernetes signal comes at 30 s
        await clients.batch.patchNamespacedJob(
          { name: job.metadata!.name!, namespace: executor.namespace, body: { spec: { activeDeadlineSeconds: 3600 } } },
          k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch)
        )
      })
      expect(verdict).toMatchObject({ reason: "deadline_exceeded", source: "sweeper" })
    })

    it("the no-pod timer: a Job the quota gives no pod is job_pod_create_failed after podCreateGraceSeconds", async () => {
      const { verdict } = await zombie("quota", "job_pod_create_failed", 150_000)
      expect(verdict).toMatchObject({ reason: "job_pod_create_failed", source: "job" })
    })

    it("the pending-signal timer: an image that cannot be pulled is image_pull_backoff after imagePullGraceSeconds", async () => {
      const { verdict } = await zombie("pull", "image_pull_backoff", 120_000)
      expect(verdict).toMatchObject({ reason: "image_pull_backoff", source: "pod" })
    })
  })

  describe("restarts", () => {
    it("a killed container's replacement recovers the runs in flight; a Job deleted while no executor ran is judged by recovery", async () => {
      const slow = [newTaskId(), newTaskId()]
      const held = newTaskId()
      await executor.publishTasks([
        ...slow.map((taskId) => ({ taskId, assignee: "slow", stage: "prod" })),
        { taskId: held, assignee: "hold", stage: "prod" }
      ])
      const slowJobs = await Promise.all(slow.map((t) => jobOf(t)))
      const heldJob = (await jobOf(held)).metadata!.name!
      for (const taskId of [...slow, held]) await spawnOf(executor.log, taskId, 90_000)
      // mid-run: every pod running (a kill mid-dispatch is the publisher's case)
      await eventually("the three pods Running", 120_000, async () => {
        const pods = await clients.core.listNamespacedPod({ namespace: executor.namespace, labelSelector: names.taskIdLabel })
        const running = new Set(pods.items.filter((p) => p.status?.phase === "Running").map((p) => p.metadata?.labels?.["job-name"]))
        return [...slowJobs.map((j) => j.metadata!.name!), heldJob].every((name) => running.has(name)) ? true : undefined
      }, 250)

      // SIGKILL mid-run: the kubelet starts the container again
      const before = await executor.waitReady()
      await killContainer(node!, before.containerId!)
      const killedAt = Date.now()
      const after = await executor.waitReady(120_000, (p) => p.restarts === before.restarts + 1)
      console.log(`[install] container killed: Ready again after ${Date.now() - killedAt} ms (restart ${after.restarts})`)
      expect(after.name).toBe(before.name)

      // the slow runs succeed under the new container: released, no verdict, no second Job
      for (const job of slowJobs) {
        await eventually(`${job.metadata!.name!} released`, 90_000, async () => {
          const current = await clients.batch.readNamespacedJob({ name: job.metadata!.name!, namespace: executor.namespace })
          const complete = current.status?.conditions?.some((c) => c.type === "Complete" && c.status === "True") ?? false
          return complete && !(current.metadata?.finalizers ?? []).includes(names.finalizer) ? true : undefined
        }, 500)
      }

      // the executor down (scaled to 0), the held run's Job deleted meanwhile: it stays, Terminating
      await executor.scale(0)
      await clients.batch.deleteNamespacedJob({ name: heldJob, namespace: executor.namespace, propagationPolicy: "Background" })
      const terminating = await clients.batch.readNamespacedJob({ name: heldJob, namespace: executor.namespace })
      expect(terminating.metadata?.deletionTimestamp).toBeDefined()
      await executor.scale(1)
      const recovered = await executor.waitReady()
      const failure = await failureCommand(held, 60_000)
      expect(reasonOf(failure)).toBe("executor_watch_lost")
      await jobGone(heldJob, 30_000)
      expect(verdictLine(await executor.logs(recovered.name), heldJob)[0]).toMatchObject({ source: "recovery" })

      await sleep(2_000)
      const records = executor.log.all()
      expectOneFailure(records, held, heldJob, "executor_watch_lost")
      for (const taskId of [...slow, held]) {
        const mine = records.filter((r) => r.taskId === taskId)
        expect(mine.filter(isSpawnNotification), `spawns of ${taskId}`).toHaveLength(1)
        expect(await jobsOf(taskId), `Jobs of ${taskId}`).toHaveLength(taskId === held ? 0 : 1)
      }
      for (const taskId of slow) expect(records.filter((r) => r.taskId === taskId && isFailure(r))).toHaveLength(0)
    }, 300_000)
  })

  it("needed no permission it lacks, and every permission of its Role was used", async () => {
    await sleep(1_000)
    const entries = auditEntries(node!.auditLog, executor.user)
    console.log(`[install] requests of ${executor.user}, by permission:\n  ${usageTable(entries).join("\n  ")}`)
    expect(forbidden(entries).map((e) => `${e.verb} ${e.uri}`)).toEqual([])
    const role = await clients.kc.makeApiClient(k8s.RbacAuthorizationV1Api).readNamespacedRole({ name: "agent-task-executor", namespace: executor.namespace })
    expect(permissionsUsed(entries)).toEqual(permissionsGranted(role))
  })
})
