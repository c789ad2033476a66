// The `run` service end to end: readiness, dispatch of a task event to exactly one Job (D6.1, D6.4),
// Config bounds enforced by the real API server (D4.6), /agents, bad input on the event topic, and
// SIGTERM. One `run` process for the whole file, reaching the API server through a TCP proxy the
// test can cut.
import { randomBytes } from "node:crypto"
import { join } from "node:path"
import type * as k8s from "@kubernetes/client-node"
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { JobBuilder } from "@executor/domain"
import type { ExecutorProcess, HttpAnswer } from "../support/executorProcess.js"
import { agentSpec, commandCounts, makeWorld, newTaskId, spawnOf, type World } from "../support/harness.js"
import { readState, requireInfra } from "../support/infraEnv.js"
import { committedOffset, endOffset, taskEvent } from "../support/kafka.js"
import { names } from "../support/kube.js"
import { redirectKubeconfig, type TcpProxy, tcpProxy } from "../support/proxy.js"
import { eventually, sleep } from "../support/wait.js"

const infra = requireInfra("test/e2e/service.test.ts")

const agent = "svc-agent"
const secret = "e2e-agents-secret"
const jobTtl = 600

describe.skipIf(infra === undefined)("the run service end to end (real apiserver and broker)", () => {
  let world: World
  let executor: ExecutorProcess
  let proxy: TcpProxy
  let readinessSeen: ReadonlyArray<number> = []

  beforeAll(async () => {
    const state = readState(infra!.runDir)
    // the API server is unreachable for `run` until the readiness test lets it through
    proxy = await tcpProxy(state.ports.kubeApiserver, { startCut: true })
    const kubeconfig = redirectKubeconfig(state.kubeconfig, proxy.port, join(infra!.runDir, `svc-kubeconfig-${proxy.port}`))
    world = await makeWorld(
      infra!,
      "svc",
      { [agent]: agentSpec(agent, {
        env: { EXTRA_SETTING: "on", TASK_ID: "shadowed" },
        // these runs get no pod: no verdict while the file runs
        zombieJobTimeoutSeconds: 900,
        podCreateGraceSeconds: 600
      }) },
      { kubeconfig }
    )
    // The CRD is installed (makeWorld); APPLY_CRD=true would need the API server right at start.
    executor = await world.start(
      "run",
      { APPLY_CRD: "false", AGENTS_AUTH_SECRET: secret, JOB_TTL_SECONDS_AFTER_FINISHED: String(jobTtl) },
      { waitListening: false }
    )
  }, 180_000)

  afterAll(async () => {
    await world?.close()
    await proxy?.close()
  }, 30_000)

  afterEach(({ task }) => {
    if (task.result?.state === "fail" && executor !== undefined) {
      console.error(`--- ${executor.name} log (last lines) ---\n${executor.logTail(120)}`)
    }
  })

  it("/readiness is not 200 until the caches synced, then 200 (D4.8)", async () => {
    const seen: Array<number> = []
    // tsx start-up plus a few seconds with the API server unreachable
    const until = Date.now() + 25_000
    while (Date.now() < until) {
      seen.push((await executor.http("/readiness", { timeoutMs: 2_000 })).status)
      expect(executor.isRunning(), executor.logTail()).toBe(true)
      await sleep(250)
    }
    expect(seen.filter((s) => s === 200)).toEqual([])
    await proxy.resume()
    await executor.ready(60_000)
    expect((await executor.http("/healthz")).body).toBe("OK")
    readinessSeen = seen
  }, 120_000)

  it("/readiness answers 503 while the caches sync (the HTTP server is up before the executor is ready)", () => {
    expect(readinessSeen.length).toBeGreaterThan(0)
    // while it waits for the caches the service answers, and says "not ready" (0 = connection refused)
    expect(new Set(readinessSeen)).toContain(503)
  })

  let dispatched: { readonly taskId: string; readonly name: string; readonly event: string } | undefined

  it("a task event gives exactly one Job of the D6.4 shape, the increment and the spawn notification in one batch, then the consumed offset", async () => {
    await executor.ready(60_000)
    const taskId = newTaskId()
    const offsetBefore = await endOffset(infra!.kafkaBrokers, world.topics.event)
    const [event] = await world.publishTasks([{ taskId, assignee: agent, triggerCount: 1 }])
    const job = await world.kube.jobOf(world.namespace, taskId, 30_000)
    const { increment, notification } = await spawnOf(world.log, taskId)

    // --- the Job (executor.md §4.2 + D6.4)
    const name = job.metadata?.name ?? ""
    expect(name).toBe(
      JobBuilder.jobName({
        assignee: agent,
        taskIdentifier: taskId,
        eventIdentity: event!.identifier,
        triggerCount: 1
      })
    )
    expect(name).toMatch(new RegExp(`^${agent}-${taskId.slice(0, 8)}-[0-9a-f]{10}$`))
    expect(job.metadata?.namespace).toBe(world.namespace)
    expect(job.metadata?.finalizers).toEqual([names.finalizer])
    expect(job.metadata?.labels).toEqual({ [names.taskIdLabel]: taskId, [names.assigneeLabel]: agent })
    // where the spawn commands go, written on the Job before they are sent (docs/decisions.md#placement)
    expect(Object.keys(job.metadata?.annotations ?? {})).toEqual([names.spawnAnnotation])
    expect(JSON.parse(job.metadata?.annotations?.[names.spawnAnnotation] ?? "{}")).toEqual({
      group: `spawn/${name}`,
      partition: 0,
      from: String(increment.offset)
    })
    expect(job.spec).toMatchObject({
      backoffLimit: 0,
      completions: 1,
      parallelism: 1,
      completionMode: "NonIndexed",
      podReplacementPolicy: "TerminatingOrFailed",
      ttlSecondsAfterFinished: jobTtl,
      activeDeadlineSeconds: 900
    })
    const template = job.spec?.template as k8s.V1PodTemplateSpec
    // (the API server adds job-name and controller-uid labels of its own)
    expect(template.metadata?.labels).toMatchObject({
      app: "agent",
      component: taskId,
      [names.taskIdLabel]: taskId,
      [names.assigneeLabel]: agent
    })
    const pod = template.spec!
    expect(pod.automountServiceAccountToken).toBe(false)
    expect(pod.restartPolicy).toBe("Never")
    expect(pod.imagePullSecrets).toEqual([{ name: "docker" }])
    expect(pod.serviceAccountName).toBeUndefined()
    expect(pod.containers).toHaveLength(1)
    const container = pod.containers[0]!
    expect(container.name).toBe("agent")
    expect(container.image).toBe(`registry.invalid/agents/${agent}:dev`)
    expect(container.imagePullPolicy).toBe("Always")
    expect(container.resources).toEqual({ requests: { cpu: "20m", memory: "20Mi" }, limits: { cpu: "50m", memory: "50Mi" } })
    expect((container.env ?? []).map((e) => e.name)).toEqual([
      "TASK_CONTENT", "TASK_ID", "KAFKA_BROKERS", "BRANCH", "TOPIC_PREFIX", "PHASE", "TASK_TYPE", "EXTRA_SETTING"
    ])
    const env = Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? ""]))
    expect(env).toMatchObject({
      TASK_ID: taskId,
      KAFKA_BROKERS: infra!.kafkaBrokers,
      BRANCH: "dev",
      TOPIC_PREFIX: world.topicPrefix,
      PHASE: "execution",
      TASK_TYPE: "llm",
      EXTRA_SETTING: "on"
    })
    expect(env["TASK_CONTENT"]).toMatch(/^---\n/)
    expect(env["TASK_CONTENT"]).toContain(`assignee: ${agent}\n`)
    expect(env["TASK_CONTENT"]).toContain("clone_url: https://example.invalid/org/repo.git\n")
    expect(env["TASK_CONTENT"]).toContain("trigger_count: 1\n")
    expect(env["TASK_CONTENT"]?.endsWith(`\n---\n${event!.content}`)).toBe(true)

    // --- the spawn commands (D5, D6.1): increment then notification, one record batch (no transaction), keyed by task id
    expect(increment.key).toBe(taskId)
    expect(increment.data).toEqual({ taskIdentifier: taskId, field: "trigger_count", delta: 1 })
    expect(notification.key).toBe(taskId)
    expect(Object.keys(notification.updates ?? {}).sort()).toEqual(["current_job", "job_started_at", "spawn_notification"])
    expect(notification.updates).toMatchObject({ current_job: name, spawn_notification: true })
    expect(String(notification.updates?.["job_started_at"])).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
    expect(notification.body).toBeUndefined()
    expect(notification.offset).toBe(increment.offset + 1)
    expect(increment.batch.inTransaction).toBe(false)
    expect(notification.batch.firstOffset).toBe(increment.batch.firstOffset)
    // ... and then the consumed offset: the group is past the event
    await eventually("the group's offset past the event", 10_000, async () =>
      (await committedOffset(infra!.kafkaBrokers, world.groupId, world.topics.event)) > offsetBefore ? true : undefined
    )

    dispatched = { taskId, name, event: JSON.stringify(event) }
    expect(commandCounts(world.log.all(), taskId)).toEqual({
      spawnNotifications: 1,
      failures: 0,
      increments: 1,
      total: 2,
      keyedByTask: true
    })
  }, 120_000)

  it("the same task event again (its Job still running) gives nothing new: no second Job, no second increment (D6.1)", async () => {
    expect(dispatched).toBeDefined()
    const { event, name, taskId } = dispatched!
    const offsetAgain = await endOffset(infra!.kafkaBrokers, world.topics.event)
    await world.produceRaw([{ key: taskId, value: event }])
    await eventually("the group's offset past the repeated event", 20_000, async () =>
      (await committedOffset(infra!.kafkaBrokers, world.groupId, world.topics.event)) > offsetAgain ? true : undefined
    )
    await sleep(2_000)
    expect((await world.kube.jobsOf(world.namespace, taskId)).map((j) => j.metadata?.name)).toEqual([name])
    expect(commandCounts(world.log.all(), taskId)).toEqual({
      spawnNotifications: 1,
      failures: 0,
      increments: 1,
      total: 2,
      keyedByTask: true
    })
  }, 60_000)

  it("Configs below a floor or above a ceiling are rejected by the API server naming the field; valid ones reach /agents", async () => {
    const bounded = {
      zombieSweeperIntervalSeconds: [10, 3600],
      zombieJobTimeoutSeconds: [30, 604800],
      maxConcurrentJobs: [0, 10000],
      imagePullGraceSeconds: [0, 3600],
      unschedulableGraceSeconds: [30, 86400],
      podCreateGraceSeconds: [30, 3600]
    } as const
    const base = { image: "registry.invalid/agents/bounds", heartbeat: "1m", taskTypes: ["llm"] }
    for (const [field, [floor, ceiling]] of Object.entries(bounded)) {
      const slug = field.toLowerCase().slice(0, 20)
      const below = await world.kube.tryCreateConfig(world.namespace, `below-${slug}`, { ...base, assignee: "b", [field]: floor - 1 })
      expect(below.ok, `${field} = ${floor - 1}`).toBe(false)
      if (!below.ok) {
        expect(below.status).toBe(422)
        expect(below.message).toContain(`spec.${field}`)
        expect(below.message).toContain(`greater than or equal to ${floor}`)
      }
      const above = await world.kube.tryCreateConfig(world.namespace, `above-${slug}`, { ...base, assignee: "a", [field]: ceiling + 1 })
      expect(above.ok, `${field} = ${ceiling + 1}`).toBe(false)
      if (!above.ok) {
        expect(above.status).toBe(422)
        expect(above.message).toContain(`spec.${field}`)
        expect(above.message).toContain(`less than or equal to ${ceiling}`)
      }
    }
    const noType = await world.kube.tryCreateConfig(world.namespace, "no-type", { ...base, assignee: "n", taskTypes: [] })
    expect(noType.ok).toBe(false)
    if (!noType.ok) expect(noType.message).toContain("at least one of spec.taskType or spec.taskTypes must be non-empty")

    const atFloors = Object.fromEntries(Object.entries(bounded).map(([f, [floor]]) => [f, floor]))
    const atCeilings = Object.fromEntries(Object.entries(bounded).map(([f, [, ceiling]]) => [f, ceiling]))
    await world.kube.applyConfig(world.namespace, "at-floors", { ...base, assignee: "floors", ...atFloors })
    await world.kube.applyConfig(world.namespace, "at-ceilings", { ...base, assignee: "ceilings", ...atCeilings, secretName: "agent-secrets" })

    const agents = (answer: HttpAnswer) => JSON.parse(answer.body) as ReadonlyArray<Record<string, unknown>>
    const listed = await eventually("the new Configs on /agents", 20_000, async () => {
      const answer = await executor.http("/agents", { headers: { "X-Agent-Auth": secret } })
      if (answer.status !== 200) throw new Error(`/agents answered ${answer.status}`)
      const all = agents(answer)
      return all.some((a) => a["name"] === "at-floors") && all.some((a) => a["name"] === "at-ceilings") ? all : undefined
    })
    expect(listed.map((a) => a["name"]).sort()).toEqual(["at-ceilings", "at-floors", agent])
    expect(listed.find((a) => a["name"] === "at-ceilings")).toEqual({
      name: "at-ceilings",
      assignee: "ceilings",
      image: "registry.invalid/agents/bounds",
      heartbeat: "1m",
      secretName: "agent-secrets"
    })
    expect(listed.find((a) => a["name"] === agent)).toEqual({
      name: agent,
      assignee: agent,
      image: `registry.invalid/agents/${agent}`,
      heartbeat: "5m"
    })
    expect((await executor.http("/agents", { headers: { Authorization: `Bearer ${secret}` } })).status).toBe(200)
    expect((await executor.http("/agents")).status).toBe(401)
    expect((await executor.http("/agents", { headers: { "X-Agent-Auth": "wrong" } })).status).toBe(401)
  }, 120_000)

  it("malformed, huge and hostile messages on the event topic are skipped and counted; the service keeps running and a later event still spawns", async () => {
    const skippedBefore = await executor.metric("agent_executor_skipped_events_total")
    const deep = (n: number) => "[".repeat(n) + "]".repeat(n)
    const deepObject = (n: number) => '{"a":'.repeat(n) + "1" + "}".repeat(n)
    const junk: ReadonlyArray<{ readonly why: string; readonly value: string | Buffer | null }> = [
      { why: "Empty", value: null },
      { why: "Empty", value: "" },
      { why: "Empty", value: "  \n " },
      { why: "NotJson", value: "{not json" },
      { why: "NotJson", value: randomBytes(4096) },
      { why: "NotJson", value: Buffer.from([0xff, 0xfe, 0x00, 0x7b, 0x22, 0xc3, 0x28]) },
      { why: "NotJson", value: "x".repeat(900 * 1024) },
      { why: "NotATask", value: JSON.stringify({ blob: "y".repeat(900 * 1024) }) },
      { why: "NotATask", value: deep(200_000) },
      { why: "NotATask", value: `{"taskIdentifier":${deepObject(50_000)}}` },
      { why: "NotATask", value: "[1,2,3]" },
      { why: "NotATask", value: '"a string"' },
      { why: "NotATask", value: '{"taskIdentifier":42}' },
      { why: "NotATask", value: '{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}' },
      { why: "NoTaskId", value: JSON.stringify({ taskIdentifier: "", frontmatter: { assignee: agent } }) }
    ]
    for (const message of junk) await world.produceRaw([{ value: message.value }])

    const taskId = newTaskId()
    await world.publishTasks([{ taskId, assignee: agent }])
    await world.kube.jobOf(world.namespace, taskId, 60_000)
    await spawnOf(world.log, taskId)

    expect(executor.isRunning(), executor.logTail()).toBe(true)
    expect((await executor.http("/healthz")).status).toBe(200)
    expect(await executor.metric("agent_executor_skipped_events_total")).toBe(skippedBefore + junk.length)
    for (const why of ["Empty", "NotJson", "NotATask", "NoTaskId"]) {
      expect(await executor.metric("agent_executor_skipped_events_total", { why }), why).toBeGreaterThanOrEqual(
        junk.filter((j) => j.why === why).length
      )
    }
  }, 180_000)

  it("a task-shaped event with a 20 000 levels deep frontmatter for a configured agent does not stop the consumer: a later event still spawns", async () => {
    const hostileTask = newTaskId()
    const hostileJson = JSON.stringify(taskEvent({ taskId: hostileTask, assignee: agent })).replace(
      '"clone_url":',
      `"nested":${'{"a":'.repeat(20_000)}1${"}".repeat(20_000)},"clone_url":`
    )
    await world.produceRaw([{ key: hostileTask, value: hostileJson }])
    const taskId = newTaskId()
    await world.publishTasks([{ taskId, assignee: agent }])
    await world.kube.jobOf(world.namespace, taskId, 30_000)
    await spawnOf(world.log, taskId)
    expect(executor.isRunning(), executor.logTail()).toBe(true)
  }, 120_000)

  it("SIGTERM after work: the service exits with code 0 within a few seconds", async () => {
    expect(readinessSeen.length).toBeGreaterThan(0)
    const { exit, killed, ms } = await executor.stop(10_000)
    expect({ killed, exit }, `exited after ${ms} ms`).toEqual({ killed: false, exit: { code: 0, signal: null } })
    expect(ms).toBeLessThan(10_000)
  }, 30_000)

  it("SIGTERM on a freshly started service with no runs: exits with code 0 within a few seconds", async () => {
    const idle = await makeWorld(infra!, "idle", {})
    try {
      const fresh = await idle.start("run")
      await fresh.ready()
      await sleep(2_000)
      const { exit, killed, ms } = await fresh.stop(10_000)
      expect({ killed, exit }, `exited after ${ms} ms\n${fresh.logTail(20)}`).toEqual({ killed: false, exit: { code: 0, signal: null } })
      expect(ms).toBeLessThan(10_000)
    } finally {
      await idle.close()
    }
  }, 120_000)
})
