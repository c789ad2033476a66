// The kube adapter against a real kube-apiserver + etcd (test/infra/up.sh). Needs KUBECONFIG;
// skipped without it. There is no controller-manager and no scheduler: the test creates the pods
// a Job controller would, and plays the kubelet through the /status subresource.
import { randomBytes } from "node:crypto"
import { spawn } from "node:child_process"
import { existsSync, openSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it, layer } from "@effect/vitest"
import * as k8s from "@kubernetes/client-node"
import { AgentConfig, type JobBuilder, Kube, Labels } from "@executor/domain"
import { ClusterOps, ClusterWatch, type WatchEvent } from "@executor/executor"
import { Api, Crd, Informer, KubeCluster, KubeConfig, Lease } from "@executor/kube"
import { Duration, Effect, Either, Layer, Metric, Option, Ref, Schedule, Schema, TestClock, TestContext } from "effect"
import { fileURLToPath } from "node:url"
import { parseAllDocuments } from "yaml"
import { messageOf } from "../../../test/support/kube.js"
import { named, operator, redirected, subscribe, tcpProxy } from "./support.js"

const kubeconfig = process.env["KUBECONFIG"] ?? ""
const rbacFile = fileURLToPath(new URL("../../../deploy/rbac.yaml", import.meta.url))
const names = Labels.names()
const group = names.apiGroup
const ns = `kube-it-${randomBytes(4).toString("hex")}`

/** Only loopback API servers, unless explicitly allowed: these tests create CRDs and namespaces. */
const loopbackOnly = (server: string) =>
  process.env["KUBE_IT_ALLOW_REMOTE"] === "1" || /^https?:\/\/(127\.0\.0\.1|localhost|\[::1\])(:|\/|$)/.test(server)

const fastRestart = Informer.restartSchedule({ base: "100 millis", cap: "1 second", healthyAfter: "5 seconds" })

const Connection = KubeConfig.layer(KubeConfig.file(kubeconfig), ns)

const Setup = Layer.effectDiscard(
  Effect.gen(function*() {
    const { kubeConfig, server } = yield* KubeConfig.KubeConnection
    if (!loopbackOnly(server)) {
      return yield* Effect.dieMessage(`refusing to run against ${server}: set KUBE_IT_ALLOW_REMOTE=1 to allow`)
    }
    const started = Date.now()
    yield* Crd.applyCrd()
    yield* operator(kubeConfig).createNamespace(ns)
    yield* Effect.log(`CRD applied and namespace ${ns} created in ${Date.now() - started} ms`)
  })
).pipe(Layer.provide(Connection))

const Cluster = KubeCluster.layer({ namespace: ns, names, restartSchedule: fastRestart, requestTimeout: "10 seconds" })

const Live = Cluster.pipe(Layer.provideMerge(Layer.merge(Connection, Setup)))

const taskIdLabels = (taskId: string) => ({ [names.taskIdLabel]: taskId, [names.assigneeLabel]: "it-agent" })

const jobManifest = (name: string, taskId: string): JobBuilder.JobManifest => ({
  apiVersion: "batch/v1",
  kind: "Job",
  metadata: { name, namespace: ns, labels: taskIdLabels(taskId), annotations: {}, finalizers: [] },
  spec: {
    backoffLimit: 0,
    completions: 1,
    parallelism: 1,
    completionMode: "NonIndexed",
    podReplacementPolicy: "TerminatingOrFailed",
    ttlSecondsAfterFinished: 600,
    activeDeadlineSeconds: 600,
    template: {
      metadata: { labels: taskIdLabels(taskId), annotations: {} },
      spec: {
        restartPolicy: "Never",
        automountServiceAccountToken: false,
        imagePullSecrets: [{ name: "docker" }],
        containers: [{
          name: "agent",
          image: "registry.invalid/agent:dev",
          imagePullPolicy: "Always",
          env: [{ name: "TASK_ID", value: taskId }],
          resources: { requests: { cpu: "10m", memory: "16Mi" }, limits: { cpu: "100m", memory: "64Mi" } }
        }]
      }
    }
  }
})

/** What the job controller would create for `job`. */
const podOf = (job: Kube.Job, taskId: string, suffix = "x7k2p"): k8s.V1Pod => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: {
    name: `${job.metadata.name}-${suffix}`,
    labels: { ...taskIdLabels(taskId), "job-name": job.metadata.name },
    ownerReferences: [{
      apiVersion: "batch/v1",
      kind: "Job",
      name: job.metadata.name,
      uid: job.metadata.uid ?? "",
      controller: true,
      blockOwnerDeletion: true
    }]
  },
  spec: { restartPolicy: "Never", containers: [{ name: "agent", image: "registry.invalid/agent:dev" }] }
})

/** A minimal Job as an operator would create it (no task-id label: the executor's informers ignore it). */
const plainJob = (name: string, labels: Record<string, string>): k8s.V1Job => ({
  apiVersion: "batch/v1",
  kind: "Job",
  metadata: { name, labels },
  spec: { template: { spec: { restartPolicy: "Never", containers: [{ name: "c", image: "registry.invalid/c:1" }] } } }
})

const validSpec = {
  assignee: "it-agent",
  image: "registry.invalid/agent",
  heartbeat: "5m",
  taskTypes: ["llm"]
}

const upsertOf = <A extends { readonly metadata: { readonly name: string } }>(
  name: string,
  predicate: (object: A) => boolean = () => true
) =>
(event: WatchEvent<A>) => event._tag === "Upsert" && event.object.metadata.name === name && predicate(event.object)

const timed = <A, E, R>(label: string, effect: Effect.Effect<A, E, R>) =>
  Effect.timed(effect).pipe(
    Effect.tap(([duration]) => Effect.log(`${label}: ${Duration.format(duration)}`)),
    Effect.map(([, a]) => a)
  )

if (kubeconfig === "") {
  describe.skip("kube adapter against a real kube-apiserver: SKIPPED, KUBECONFIG is not set (start test/infra/up.sh RUN_DIR and export KUBECONFIG=RUN_DIR/kubeconfig)", () => {
    it("needs KUBECONFIG", () => undefined)
  })
} else {
  layer(Live, { excludeTestServices: true, timeout: "90 seconds" })("kube adapter against a real kube-apiserver", (it) => {
    it.effect("the CRD is Established and keeps its CEL rule and bounds (second apply updates in place)", () =>
      Effect.gen(function*() {
        expect(yield* Crd.applyCrd()).toBe("updated")
        const { kubeConfig } = yield* KubeConfig.KubeConnection
        const crd = yield* operator(kubeConfig).readCrd(Crd.crdName())
        const conditions = crd.status?.conditions ?? []
        expect(conditions.find((c) => c.type === "Established")?.status).toBe("True")
        const spec = crd.spec.versions[0]?.schema?.openAPIV3Schema?.properties?.["spec"]
        expect(spec?.x_kubernetes_validations?.[0]?.rule).toBe(Crd.taskTypeRule.rule)
        expect(spec?.properties?.["zombieJobTimeoutSeconds"]).toMatchObject({ minimum: 30, maximum: 604800 })
        expect(crd.spec.names.shortNames).toEqual(["cfg"])
      }))

    it.effect("Configs out of bounds or without a task type are rejected by the API server, naming the field", () =>
      Effect.gen(function*() {
        const { kubeConfig } = yield* KubeConfig.KubeConnection
        const op = operator(kubeConfig)
        const reject = (name: string, spec: object) =>
          op.createConfig(group, ns, name, spec).pipe(
            Effect.flip,
            Effect.map(messageOf),
            // The CR endpoint can answer 404 for a moment after the CRD is Established (infra.md B7).
            Effect.retry({ schedule: Schedule.spaced("200 millis"), times: 25, while: (e) => !(e instanceof Error) })
          )
        const below = yield* reject("below-floor", { ...validSpec, zombieSweeperIntervalSeconds: 5 })
        expect(below).toContain("spec.zombieSweeperIntervalSeconds")
        expect(below).toContain("greater than or equal to 10")
        const above = yield* reject("above-ceiling", { ...validSpec, zombieJobTimeoutSeconds: 604801 })
        expect(above).toContain("spec.zombieJobTimeoutSeconds")
        expect(above).toContain("less than or equal to 604800")
        const grace = yield* reject("grace", { ...validSpec, podCreateGraceSeconds: 3601, imagePullGraceSeconds: -1 })
        expect(grace).toContain("spec.podCreateGraceSeconds")
        expect(grace).toContain("spec.imagePullGraceSeconds")
        const noType = yield* reject("no-type", { assignee: "a", image: "i", heartbeat: "1m", taskTypes: [] })
        expect(noType).toContain("at least one of spec.taskType or spec.taskTypes must be non-empty")
        const missing = yield* reject("missing", { assignee: "a", taskType: "llm" })
        expect(missing).toContain("spec.image")
        expect(missing).toContain("spec.heartbeat")
      }))

    it.effect("resources that can never make a valid Job are rejected by the API server (CEL quantity rules), naming the field; the executor agrees", () =>
      Effect.gen(function*() {
        const { kubeConfig } = yield* KubeConfig.KubeConnection
        const op = operator(kubeConfig)
        const create = (name: string, resources: object) =>
          op.createConfig(group, ns, name, { ...validSpec, resources }).pipe(
            // The CR endpoint can answer 404 for a moment after the CRD is Established (infra.md B7).
            Effect.retry({
              schedule: Schedule.spaced("200 millis"),
              times: 25,
              while: (e) => !(e instanceof Error) && (e as { readonly code?: number }).code === 404
            }),
            Effect.either
          )
        const executorSays = (resources: object) => AgentConfig.agentConfig({ name: "x" }, { ...validSpec, resources })
        const rejected: ReadonlyArray<readonly [string, object, ReadonlyArray<string>]> = [
          ["q-unparsable", { limits: { memory: "16Q" } }, ["spec.resources.limits.memory", "must be a resource quantity"]],
          ["q-capital-k", { requests: { cpu: "1K" } }, ["spec.resources.requests.cpu", "must be a resource quantity"]],
          ["q-negative", { requests: { cpu: "-1" } }, ["spec.resources.requests.cpu", "must not be negative"]],
          ["q-too-long", { limits: { memory: "1".repeat(65) } }, ["spec.resources.limits.memory", "64"]],
          [
            "q-above-limit",
            { requests: { memory: "20Mi" }, limits: { memory: "16Mi" } },
            ["spec.resources.requests.memory", "must be less than or equal to spec.resources.limits.memory"]
          ],
          ["q-cpu-above-limit", { requests: { cpu: "1.5" }, limits: { cpu: "1200m" } }, ["spec.resources.requests.cpu"]],
          [
            "q-storage-above-limit",
            { requests: { "ephemeral-storage": "1Gi" }, limits: { "ephemeral-storage": "1G" } },
            ["ephemeral-storage", "must be less than or equal to spec.resources.limits.ephemeral-storage"]
          ]
        ]
        for (const [name, resources, fragments] of rejected) {
          const result = yield* create(name, resources)
          expect(Either.isLeft(result), `${name} was accepted`).toBe(true)
          const message = Either.isLeft(result) ? messageOf(result.left) : ""
          for (const fragment of fragments) expect(message, name).toContain(fragment)
          expect(Either.isLeft(executorSays(resources)), `the executor accepts ${name}`).toBe(true)
        }
        const accepted: ReadonlyArray<readonly [string, object]> = [
          ["q-equal-spellings", { requests: { cpu: "1", memory: "1Gi" }, limits: { cpu: "1000m", memory: "1073741824" } }],
          ["q-limits-only", { limits: { memory: "16Mi", cpu: "10m" } }],
          ["q-requests-only", { requests: { memory: "1Gi", "ephemeral-storage": "2Gi" } }],
          ["q-spellings", { requests: { cpu: "100n", memory: "1e3" }, limits: { cpu: "+2", memory: "1.5Gi" } }]
        ]
        for (const [name, resources] of accepted) {
          const result = yield* create(name, resources)
          expect(Either.isRight(result), `${name}: ${Either.isLeft(result) ? messageOf(result.left) : ""}`).toBe(true)
          expect(Either.isRight(executorSays(resources)), `the executor rejects ${name}`).toBe(true)
        }
      }))

    it.scoped("the eviction watch sees only the kubelet's Evicted Events about pods (field selector); Events are read live by selector", () =>
      Effect.gen(function*() {
        const watch = yield* ClusterWatch
        const { kubeConfig } = yield* KubeConfig.KubeConnection
        const op = operator(kubeConfig)
        yield* watch.synced
        const evictions = yield* subscribe(watch.evictionEvents)
        const pod = "it-agent-4aa57614-evict-b2c4d"
        const message = "Pod ephemeral local storage usage exceeds the total limit of containers 16Mi."
        // noise the selector keeps out: the Killing that follows, an "Evicted" about a Job
        yield* op.createEvent(ns, { kind: "Pod", name: pod }, { reason: "Killing", message: "Stopping container agent", type: "Normal", component: "kubelet" })
        yield* op.createEvent(ns, { kind: "Job", name: "it-agent-4aa57614-evict" }, { reason: "Evicted", message, type: "Warning", component: "someone" })
        yield* op.createEvent(ns, { kind: "Pod", name: pod, uid: "pod-uid-1" }, { reason: "Evicted", message, type: "Warning", component: "kubelet" })
        const seen = yield* timed("Evicted Event -> eviction watch", evictions.next((e) => e._tag === "Upsert"))
        expect(seen._tag === "Upsert" && seen.object).toMatchObject({
          involvedObject: { kind: "Pod", name: pod, uid: "pod-uid-1" },
          reason: "Evicted",
          message,
          type: "Warning",
          source: { component: "kubelet" }
        })
        // eventTime is null on a core/v1 Event the kubelet writes; it decodes, and the Event has a time
        expect(seen._tag === "Upsert" && Option.isSome(Kube.eventTime(seen.object))).toBe(true)
        yield* Effect.sleep("300 millis")
        expect(yield* evictions.drain).toEqual([])
        expect((yield* watch.evictions).map((e) => [e.involvedObject.kind, e.involvedObject.name, e.reason])).toEqual([["Pod", pod, "Evicted"]])
        // the same through a live read, as a verdict or a success is confirmed
        expect((yield* watch.readEvents(Kube.podEvictionSelector)).map((e) => e.involvedObject.name)).toEqual([pod])
        const job = "it-agent-4aa57614-quota"
        const quota = `Error creating: pods "${job}-" is forbidden: exceeded quota: agent-quota, requested: pods=1, used: pods=0, limited: pods=0`
        yield* op.createEvent(ns, { kind: "Job", name: job }, { reason: "FailedCreate", message: quota, type: "Warning", component: "job-controller" })
        yield* op.createEvent(ns, { kind: "Job", name: `${job}-other` }, { reason: "FailedCreate", message: quota, type: "Warning", component: "job-controller" })
        const failedCreate = yield* watch.readEvents(Kube.jobCreateFailureSelector(job))
        expect(failedCreate.map((e) => [e.involvedObject.name, e.reason, e.message, e.source?.component])).toEqual([
          [job, "FailedCreate", quota, "job-controller"]
        ])
        const bad = yield* Effect.flip(watch.readEvents("metadata.labels=x"))
        expect(bad).toMatchObject({ _tag: "ClusterError", transient: false, operation: "listEvents" })
      }))

    it.scoped("a container that never started (ContainerStatusUnknown, the API server writes null times) decodes in the cache and the live read", () =>
      Effect.gen(function*() {
        const watch = yield* ClusterWatch
        const ops = yield* ClusterOps
        const { kubeConfig } = yield* KubeConfig.KubeConnection
        const op = operator(kubeConfig)
        yield* watch.synced
        const pods = yield* subscribe(watch.podEvents)
        const name = "it-agent-4aa57614-unknown"
        yield* ops.createJob(jobManifest(name, "task-unknown"))
        const job = Option.getOrThrow(yield* watch.readJob(name))
        const pod = podOf(job, "task-unknown")
        yield* op.createPod(pod, ns)
        const failures = Metric.tagged(Informer.decodeFailures, "kind", "Pod")
        const before = (yield* Metric.value(failures)).count
        yield* op.patchPodStatus(pod.metadata?.name ?? "", ns, {
          phase: "Failed",
          conditions: [{ type: "PodScheduled", status: "True", lastProbeTime: null, lastTransitionTime: "2026-06-01T12:00:00Z" }],
          containerStatuses: [{
            name: "agent",
            image: "127.0.0.1:5999/agent:missing",
            imageID: "",
            ready: false,
            restartCount: 0,
            lastState: {},
            state: {
              terminated: {
                exitCode: 137,
                reason: "ContainerStatusUnknown",
                message: "The container could not be located when the pod was terminated",
                startedAt: null,
                finishedAt: null
              }
            }
          }]
        })
        yield* pods.next(upsertOf<Kube.Pod>(pod.metadata?.name ?? "", (p) => p.status?.phase === "Failed"))
        const live = yield* watch.readPodsOfJob(name, "task-unknown")
        expect(live.map((p) => p.status?.containerStatuses?.[0]?.state?.terminated)).toEqual([
          { exitCode: 137, reason: "ContainerStatusUnknown", message: "The container could not be located when the pod was terminated" }
        ])
        expect((yield* watch.podsOfJob(name)).map((p) => p.status?.phase)).toEqual(["Failed"])
        expect((yield* Metric.value(failures)).count - before).toBe(0)
      }))

    it.effect("deploy/rbac.yaml lets the executor's ServiceAccount make every call the adapter makes, and no more", () =>
      Effect.gen(function*() {
        const { kubeConfig } = yield* KubeConfig.KubeConnection
        const op = operator(kubeConfig)
        const rbacNs = `kube-it-rbac-${randomBytes(3).toString("hex")}`
        yield* op.createNamespace(rbacNs)
        const documents = parseAllDocuments(readFileSync(rbacFile, "utf8")).map((d) => d.toJSON() as { readonly kind: string } & Record<string, unknown>)
        yield* op.createRbac(rbacNs, documents)
        const user = `system:serviceaccount:${rbacNs}:agent-task-executor`
        const can = (verb: string, group: string, resource: string) => op.canI(user, { namespace: rbacNs, verb, group, resource })
        const needed: ReadonlyArray<readonly [string, string, ReadonlyArray<string>]> = [
          ["batch", "jobs", ["create", "get", "list", "watch", "patch", "delete"]],
          ["", "pods", ["list", "watch"]],
          ["", "events", ["create", "list", "watch"]],
          [group, "configs", ["list", "watch"]]
        ]
        for (const [apiGroup, resource, verbs] of needed) {
          for (const verb of verbs) expect(yield* can(verb, apiGroup, resource), `${verb} ${apiGroup}/${resource}`).toBe(true)
        }
        for (const [verb, apiGroup, resource] of [
          ["delete", "", "events"],
          ["patch", "", "events"],
          ["delete", "", "pods"],
          ["get", "", "pods"],
          ["update", "batch", "jobs"],
          ["get", "coordination.k8s.io", "leases"],
          ["get", "", "secrets"],
          ["update", "apiextensions.k8s.io", "customresourcedefinitions"]
        ] as const) {
          expect(yield* can(verb, apiGroup, resource), `${verb} ${apiGroup}/${resource}`).toBe(false)
        }
      }))

    it.scoped("a valid Config reaches configEvents (unknown fields pruned) and its deletion too", () =>
      Effect.gen(function*() {
        const watch = yield* ClusterWatch
        const { kubeConfig } = yield* KubeConfig.KubeConnection
        const events = yield* subscribe(watch.configEvents)
        yield* operator(kubeConfig).createConfig(group, ns, "it-agent", {
          ...validSpec,
          zombieSweeperIntervalSeconds: 10,
          zombieJobTimeoutSeconds: 604800,
          unknownField: "pruned"
        }).pipe(Effect.retry({ schedule: Schedule.spaced("200 millis"), times: 25 }))
        const event = yield* timed("Config create -> Upsert", events.next(upsertOf("it-agent")))
        const spec = event._tag === "Upsert" ? event.object.spec : undefined
        expect(spec).toMatchObject({ assignee: "it-agent", taskTypes: ["llm"], zombieSweeperIntervalSeconds: 10 })
        expect(spec).not.toHaveProperty("unknownField")
        yield* Effect.promise(() =>
          operator(kubeConfig).custom.deleteNamespacedCustomObject({ group, version: "v1", namespace: ns, plural: "configs", name: "it-agent" })
        )
        yield* events.next((e) => e._tag === "Delete" && e.object.metadata.name === "it-agent")
      }))

    it.scoped("createJob (twice: exists), its pod, a /status patch, annotate and finalizers reach streams and caches", () =>
      Effect.gen(function*() {
        const watch = yield* ClusterWatch
        const ops = yield* ClusterOps
        const { kubeConfig } = yield* KubeConfig.KubeConnection
        const op = operator(kubeConfig)
        yield* watch.synced
        const jobs = yield* subscribe(watch.jobEvents)
        const pods = yield* subscribe(watch.podEvents)

        const name = "it-agent-4aa57614-create"
        expect(yield* timed("createJob", ops.createJob(jobManifest(name, "task-create")))).toBe("created")
        expect(yield* ops.createJob(jobManifest(name, "task-create"))).toBe("exists")
        yield* timed("createJob -> Upsert", jobs.next(upsertOf(name)))
        const job = Option.getOrThrow(yield* watch.job(name))
        expect(job.metadata.labels?.[names.taskIdLabel]).toBe("task-create")
        expect(job.spec?.activeDeadlineSeconds).toBe(600)
        expect(job.metadata.creationTimestamp).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/)
        expect((yield* watch.jobs).map((j) => j.metadata.name)).toContain(name)
        // The live read (past the cache) decodes the same Job.
        const live = Option.getOrThrow(yield* watch.readJob(name))
        expect(live.metadata.uid).toBe(job.metadata.uid)
        expect(live.metadata.labels?.[names.taskIdLabel]).toBe("task-create")
        // The manifest went through client-node's model classes: nothing was dropped on the way.
        const stored = yield* op.readJob(name, ns)
        expect(stored.spec).toMatchObject({ backoffLimit: 0, completionMode: "NonIndexed", podReplacementPolicy: "TerminatingOrFailed", ttlSecondsAfterFinished: 600 })
        expect(stored.spec?.template.spec).toMatchObject({
          restartPolicy: "Never",
          automountServiceAccountToken: false,
          imagePullSecrets: [{ name: "docker" }],
          containers: [{ name: "agent", imagePullPolicy: "Always", env: [{ name: "TASK_ID", value: "task-create" }] }]
        })
        expect(stored.spec?.template.spec?.containers[0]?.resources?.limits).toEqual({ cpu: "100m", memory: "64Mi" })

        const pod = podOf(job, "task-create")
        yield* op.createPod(pod, ns)
        yield* timed("pod create -> Upsert", pods.next(upsertOf(pod.metadata?.name ?? "")))
        const owned = yield* watch.podsOfJob(name)
        expect(owned.map((p) => p.metadata.name)).toEqual([pod.metadata?.name])
        expect(Option.getOrThrow(Kube.ownerJobName(owned[0]!))).toBe(name)
        // the live read of a Job's pods (selected by task id, filtered by owner) sees the same pod
        expect((yield* watch.readPodsOfJob(name, "task-create")).map((p) => p.metadata.name)).toEqual([pod.metadata?.name])
        expect(yield* watch.readPodsOfJob("it-agent-other-job", "task-create")).toEqual([])

        yield* op.patchPodStatus(pod.metadata?.name ?? "", ns, {
          phase: "Pending",
          conditions: [{ type: "PodScheduled", status: "True", lastTransitionTime: "2026-06-01T12:00:00Z" }],
          containerStatuses: [{
            name: "agent",
            image: "registry.invalid/agent:dev",
            imageID: "",
            ready: false,
            restartCount: 0,
            state: { waiting: { reason: "ImagePullBackOff", message: "Back-off pulling image \"registry.invalid/agent:dev\"" } }
          }]
        })
        const waiting = yield* timed(
          "pod /status patch -> Upsert",
          pods.next(upsertOf<Kube.Pod>(pod.metadata?.name ?? "", (p) =>
            p.status?.containerStatuses?.[0]?.state?.waiting?.reason === "ImagePullBackOff"))
        )
        expect(waiting._tag === "Upsert" && waiting.object.status?.phase).toBe("Pending")
        const cached = (yield* watch.podsOfJob(name))[0]
        expect(cached?.status?.containerStatuses?.[0]?.state?.waiting?.reason).toBe("ImagePullBackOff")

        yield* ops.annotateJob(name, names.verdictAnnotation, "{\"reason\":\"image_pull_backoff\"}")
        yield* jobs.next(upsertOf<Kube.Job>(name, (j) => j.metadata.annotations?.[names.verdictAnnotation] !== undefined))

        yield* ops.addJobFinalizer(name, names.finalizer)
        yield* ops.addJobFinalizer(name, names.finalizer) // idempotent
        yield* jobs.next(upsertOf<Kube.Job>(name, (j) => (j.metadata.finalizers ?? []).includes(names.finalizer)))
        expect((yield* op.readJob(name, ns)).metadata?.finalizers).toEqual([names.finalizer])

        // Concurrent writers: every finalizer lands (409 on a stale resourceVersion, then re-read).
        const extra = Array.from({ length: 6 }, (_, i) => `example.com/f${i}`)
        yield* Effect.forEach(extra, (f) => ops.addJobFinalizer(name, f), { concurrency: "unbounded" })
        expect([...((yield* op.readJob(name, ns)).metadata?.finalizers ?? [])].sort()).toEqual([names.finalizer, ...extra].sort())
        yield* Effect.forEach(extra, (f) => ops.removeJobFinalizer(name, f), { concurrency: "unbounded" })
        yield* ops.removeJobFinalizer(name, names.finalizer)
        yield* ops.removeJobFinalizer(name, names.finalizer) // idempotent
        yield* jobs.next(upsertOf<Kube.Job>(name, (j) => (j.metadata.finalizers ?? []).length === 0))
        expect((yield* op.readJob(name, ns)).metadata?.finalizers ?? []).toEqual([])
      }))

    it.scoped("deleteJob (Background): the finalizer keeps the Job Terminating until it is removed, then Delete", () =>
      Effect.gen(function*() {
        const watch = yield* ClusterWatch
        const ops = yield* ClusterOps
        const jobs = yield* subscribe(watch.jobEvents)
        const name = "it-agent-4aa57614-delete"
        yield* ops.createJob({ ...jobManifest(name, "task-delete"), metadata: { ...jobManifest(name, "task-delete").metadata, finalizers: [names.finalizer] } })
        yield* jobs.next(upsertOf(name))

        yield* ops.deleteJob(name)
        yield* timed("deleteJob -> Terminating Upsert", jobs.next(upsertOf<Kube.Job>(name, (j) => Kube.isDeleting(j.metadata))))
        const terminating = Option.getOrThrow(yield* watch.job(name))
        expect(terminating.metadata.deletionTimestamp).toBeDefined()
        yield* ops.deleteJob(name) // a repeated delete of a Terminating Job is harmless

        // No new finalizers on an object being deleted: a permanent error with the API's message.
        const refused = yield* Effect.flip(ops.addJobFinalizer(name, "example.com/late"))
        expect(refused).toMatchObject({ _tag: "ClusterError", transient: false })
        expect(refused._tag === "ClusterError" && refused.message).toContain("no new finalizers can be added")

        yield* ops.removeJobFinalizer(name, names.finalizer)
        const deleted = yield* timed("finalizer removed -> Delete", jobs.next(named(name)))
        expect(deleted._tag).toBe("Delete")
        expect(yield* watch.job(name)).toEqual(Option.none())
        expect(yield* watch.readJob(name)).toEqual(Option.none())
        expect(yield* Effect.flip(ops.deleteJob(name))).toMatchObject({ _tag: "NotFound", kind: "Job", name })
      }))

    it.effect("recordJobEvent creates a core/v1 Event with the Job as involvedObject and Clock timestamps", () =>
      Effect.gen(function*() {
        const ops = yield* ClusterOps
        const { kubeConfig } = yield* KubeConfig.KubeConnection
        const name = "it-agent-4aa57614-event"
        expect(yield* ops.createJob(jobManifest(name, "task-event"))).toBe("created")
        const uid = (yield* operator(kubeConfig).readJob(name, ns)).metadata?.uid
        const at = Date.UTC(2030, 0, 2, 3, 4, 5, 678)
        // The timestamps come from Effect's Clock: a TestClock set to `at` shows up on the Event.
        yield* Effect.gen(function*() {
          yield* TestClock.setTime(at)
          yield* ops.recordJobEvent({
            jobName: name,
            jobUid: uid,
            reason: "ZombieDetected",
            message: "image_pull_backoff: ImagePullBackOff registry.invalid/agent:dev",
            type: "Warning"
          })
        }).pipe(Effect.provide(TestContext.TestContext))
        const list = yield* operator(kubeConfig).listEvents(ns, name)
        expect(list.items).toHaveLength(1)
        const event = list.items[0]!
        expect(event.involvedObject).toMatchObject({ apiVersion: "batch/v1", kind: "Job", namespace: ns, name, uid })
        expect(event).toMatchObject({
          reason: "ZombieDetected",
          message: "image_pull_backoff: ImagePullBackOff registry.invalid/agent:dev",
          type: "Warning",
          source: { component: KubeCluster.eventComponent },
          reportingComponent: KubeCluster.eventComponent,
          action: "ZombieDetected",
          count: 1
        })
        expect(event.firstTimestamp?.getTime()).toBe(Date.UTC(2030, 0, 2, 3, 4, 5))
        expect(event.lastTimestamp?.getTime()).toBe(Date.UTC(2030, 0, 2, 3, 4, 5))
        expect(String(event.eventTime)).toBe("2030-01-02T03:04:05.678000Z")
      }))

    it.effect("errors are classified: 404 NotFound, 4xx permanent with the API message, connection refused transient", () =>
      Effect.gen(function*() {
        const ops = yield* ClusterOps
        const missing = "it-agent-does-not-exist"
        for (const call of [
          ops.deleteJob(missing),
          ops.annotateJob(missing, "a", "b"),
          ops.addJobFinalizer(missing, names.finalizer),
          ops.removeJobFinalizer(missing, names.finalizer)
        ]) {
          expect(yield* Effect.flip(call)).toMatchObject({ _tag: "NotFound", kind: "Job", name: missing })
        }
        const invalid = yield* Effect.flip(ops.createJob(jobManifest("Not_A_Valid_Name", "t")))
        expect(invalid).toMatchObject({ _tag: "ClusterError", transient: false, operation: "createJob" })
        expect(invalid.message).toContain("metadata.name")
        const wrongNamespace = yield* Effect.flip(
          ops.createJob({ ...jobManifest("it-agent-wrong-ns", "t"), metadata: { ...jobManifest("it-agent-wrong-ns", "t").metadata, namespace: "elsewhere" } })
        )
        expect(wrongNamespace.message).toContain("does not match the namespace")

        // Nothing listens on port 1: the same ops against it fail transiently.
        const { kubeConfig } = yield* KubeConfig.KubeConnection
        const refused = yield* Effect.scoped(
          Effect.gen(function*() {
            const cluster = yield* KubeCluster.make({ namespace: ns, names, resyncInterval: undefined })
            return yield* Effect.flip(cluster.ops.createJob(jobManifest("it-agent-refused", "t")))
          }).pipe(Effect.provide(KubeConfig.layer(redirected(kubeConfig, "https://127.0.0.1:1"), ns)))
        )
        expect(refused).toMatchObject({ _tag: "ClusterError", transient: true, operation: "createJob" })
        expect(refused.message).toContain("ECONNREFUSED")
      }))

    it.scoped("every subscriber gets the replay; a relist emits nothing for unchanged objects", () =>
      Effect.gen(function*() {
        const watch = yield* ClusterWatch
        const ops = yield* ClusterOps
        const cluster = yield* KubeCluster.KubeCluster
        const name = "it-agent-4aa57614-replay"
        const first = yield* subscribe(watch.jobEvents)
        yield* ops.createJob(jobManifest(name, "task-replay"))
        yield* first.next(upsertOf(name))
        const second = yield* subscribe(watch.jobEvents)
        const cachedNames = (yield* watch.jobs).map((j) => j.metadata.name).sort()
        const replayed = second.replay.flatMap((e) => (e._tag === "Upsert" ? [e.object.metadata.name] : [])).sort()
        expect(replayed).toEqual(cachedNames)
        expect(replayed).toContain(name)
        expect(second.replay.at(-1)?._tag).toBe("Synced")
        expect(second.replay.filter((e) => e._tag === "Synced")).toHaveLength(1)

        yield* timed("forced relist", cluster.informers.jobs.relist)
        const marker = "it-agent-4aa57614-marker"
        yield* ops.createJob(jobManifest(marker, "task-marker"))
        // The relist re-read every Job; none changed, so the next event on both streams is the marker.
        expect(upsertOf(marker)(yield* second.take())).toBe(true)
        expect(upsertOf(marker)(yield* first.take())).toBe(true)
        expect(yield* Effect.all([first.drain, second.drain])).toEqual([[], []])
      }))

    it.scoped("an object that does not decode is skipped and counted; the stream goes on", () =>
      Effect.gen(function*() {
        const { kubeConfig } = yield* KubeConfig.KubeConnection
        const op = operator(kubeConfig)
        const label = "kube-it/decode"
        const probe = (name: string, verdict: string) => plainJob(name, { [label]: verdict })
        yield* op.createJob(probe("decode-bad", "bad"), ns)
        yield* op.createJob(probe("decode-good-1", "good"), ns)
        // Stricter than the domain schema: the label must say "good".
        const Strict = Schema.Struct({ metadata: Schema.Struct({ labels: Schema.Struct({ [label]: Schema.Literal("good") }) }) })
        const decode = (wire: unknown) => Either.flatMap(Schema.decodeUnknownEither(Strict)(wire), () => Kube.decodeJob(wire))
        const counter = Metric.tagged(Informer.decodeFailures, "kind", "DecodeProbe")
        const before = (yield* Metric.value(counter)).count
        const batch = op.batch
        const informer = yield* Informer.make<Kube.Job>(kubeConfig, {
          kind: "DecodeProbe",
          path: `/apis/batch/v1/namespaces/${ns}/jobs`,
          labelSelector: label,
          list: Api.call("listJobs", ns, (o) => batch.listNamespacedJob({ namespace: ns, labelSelector: label }, o)),
          toWire: (object) => JSON.parse(JSON.stringify(object)) as unknown,
          decode,
          restartSchedule: fastRestart
        })
        const events = yield* subscribe(informer.events)
        expect(events.replay.map((e) => (e._tag === "Synced" ? "Synced" : e.object.metadata.name))).toEqual(["decode-good-1", "Synced"])
        expect((yield* Metric.value(counter)).count - before).toBe(1)
        yield* op.patchJob("decode-bad", ns, { metadata: { annotations: { touched: "yes" } } })
        yield* op.createJob(probe("decode-good-2", "good"), ns)
        // The new version of the bad object is counted again but emits nothing.
        expect(upsertOf("decode-good-2")(yield* events.take())).toBe(true)
        expect((yield* Metric.value(counter)).count - before).toBe(2)
        expect(yield* events.drain).toEqual([])
        expect((yield* informer.list).map((j) => j.metadata.name)).toEqual(["decode-good-1", "decode-good-2"])
      }))

    it.scoped("a periodic resync relists without emitting anything for unchanged objects", () =>
      Effect.gen(function*() {
        const { kubeConfig } = yield* KubeConfig.KubeConnection
        const op = operator(kubeConfig)
        const label = "kube-it/resync"
        for (const name of ["resync-a", "resync-b"]) yield* op.createJob(plainJob(name, { [label]: "yes" }), ns)
        const lists = yield* Ref.make(0)
        const informer = yield* Informer.make<Kube.Job>(kubeConfig, {
          kind: "ResyncProbe",
          path: `/apis/batch/v1/namespaces/${ns}/jobs`,
          labelSelector: label,
          list: Api.call("listJobs", ns, (o) => op.batch.listNamespacedJob({ namespace: ns, labelSelector: label }, o)).pipe(
            Effect.tap(() => Ref.update(lists, (n) => n + 1))
          ),
          toWire: (object) => JSON.parse(JSON.stringify(object)) as unknown,
          decode: Kube.decodeJob,
          resyncInterval: "150 millis"
        })
        const events = yield* subscribe(informer.events)
        expect(events.replay.filter((e) => e._tag === "Upsert")).toHaveLength(2)
        yield* Effect.sleep("1 second")
        expect(yield* Ref.get(lists)).toBeGreaterThanOrEqual(4)
        yield* op.deleteJob("resync-a", ns)
        const deleted = yield* events.take()
        expect(deleted._tag === "Delete" && deleted.object.metadata.name).toBe("resync-a")
        yield* Effect.sleep("500 millis")
        expect(yield* events.drain).toEqual([])
      }))

    it.scoped("after a connection loss the informer restarts, relists and emits only the differences", () =>
      Effect.gen(function*() {
        const { kubeConfig, server } = yield* KubeConfig.KubeConnection
        const op = operator(kubeConfig)
        const url = new URL(server)
        const proxy = yield* tcpProxy(url.hostname, Number(url.port))
        const label = "kube-it/gap"
        const gapJob = (name: string) => plainJob(name, { [label]: "yes" })
        for (const name of ["gap-gone", "gap-changed", "gap-same"]) yield* op.createJob(gapJob(name), ns)

        const proxied = yield* KubeConfig.load(redirected(kubeConfig, `https://127.0.0.1:${proxy.port}`), ns)
        const batch = proxied.kubeConfig.makeApiClient(k8s.BatchV1Api)
        const restarts = Metric.tagged(Informer.informerRestarts, "kind", "GapProbe")
        const restartsBefore = (yield* Metric.value(restarts)).count
        const informer = yield* Informer.make<Kube.Job>(proxied.kubeConfig, {
          kind: "GapProbe",
          path: `/apis/batch/v1/namespaces/${ns}/jobs`,
          labelSelector: label,
          list: Api.call("listJobs", ns, (o) => batch.listNamespacedJob({ namespace: ns, labelSelector: label }, o)),
          toWire: (object) => JSON.parse(JSON.stringify(object)) as unknown,
          decode: Kube.decodeJob,
          restartSchedule: fastRestart
        })
        const events = yield* subscribe(informer.events)
        expect(events.replay.filter((e) => e._tag === "Upsert")).toHaveLength(3)

        yield* proxy.cut
        yield* Effect.gen(function*() {
          const n = (yield* Metric.value(restarts)).count
          if (n <= restartsBefore) return yield* Effect.fail("not yet")
        }).pipe(Effect.retry({ schedule: Schedule.spaced("50 millis"), times: 100 }))
        // While the informer is cut off:
        yield* op.deleteJob("gap-gone", ns)
        yield* op.patchJob("gap-changed", ns, { metadata: { annotations: { changed: "yes" } } })
        yield* op.createJob(gapJob("gap-new"), ns)
        yield* Effect.sleep("300 millis")
        expect(yield* events.drain).toEqual([])

        const resumedAt = Date.now()
        yield* proxy.resume
        const seen: Array<string> = []
        for (let i = 0; i < 3; i++) {
          const event = yield* events.take("15 seconds")
          if (event._tag !== "Synced") seen.push(`${event._tag} ${event.object.metadata.name}`)
        }
        yield* Effect.log(`reconnect -> relist diff delivered in ${Date.now() - resumedAt} ms`)
        expect(seen.sort()).toEqual(["Delete gap-gone", "Upsert gap-changed", "Upsert gap-new"])
        yield* op.createJob(gapJob("gap-marker"), ns)
        expect(upsertOf("gap-marker")(yield* events.take())).toBe(true)
        expect(yield* events.drain).toEqual([])
        expect((yield* informer.list).map((j) => j.metadata.name).sort()).toEqual(["gap-changed", "gap-marker", "gap-new", "gap-same"])
      }))

    it.effect("Leases: create, get, optimistic update with 409 surfaced as LeaseConflict, NotFound", () =>
      Effect.gen(function*() {
        const leases = yield* Lease.make(ns)
        const t0 = Date.UTC(2030, 0, 1, 0, 0, 0, 123)
        const created = yield* leases.create("agent-task-executor", {
          holderIdentity: "replica-a",
          leaseDurationSeconds: 15,
          acquireTime: t0,
          renewTime: t0,
          leaseTransitions: 0
        })
        expect(created).toMatchObject({ name: "agent-task-executor", holderIdentity: "replica-a", acquireTime: t0, renewTime: t0 })
        expect(yield* Effect.flip(leases.create("agent-task-executor", {}))).toMatchObject({ _tag: "LeaseConflict" })
        const renewed = yield* leases.update({ ...created, renewTime: t0 + 2000 })
        expect(renewed.renewTime).toBe(t0 + 2000)
        expect(renewed.resourceVersion).not.toBe(created.resourceVersion)
        // A second replica still holding the old version loses.
        const stale = yield* Effect.flip(leases.update({ ...created, holderIdentity: "replica-b" }))
        expect(stale._tag).toBe("LeaseConflict")
        expect((yield* leases.get("agent-task-executor")).holderIdentity).toBe("replica-a")
        expect(yield* Effect.flip(leases.get("missing"))).toMatchObject({ _tag: "NotFound", kind: "Lease" })
      }))

    // A real restart of kube-apiserver needs to know how up.sh started it: opt in with INFRA_RUN_DIR.
    const runDir = process.env["INFRA_RUN_DIR"] ?? ""
    const pidFile = join(runDir, "kube-apiserver.pid")
    it.effect.skipIf(runDir === "" || !existsSync(pidFile))(
      "the informers recover after kube-apiserver is restarted (INFRA_RUN_DIR set)",
      () =>
        Effect.gen(function*() {
          const watch = yield* ClusterWatch
          const ops = yield* ClusterOps
          const before = "it-agent-4aa57614-pre-restart"
          yield* ops.createJob(jobManifest(before, "task-restart"))
          const pid = Number(readFileSync(pidFile, "utf8").trim())
          const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter((a) => a !== "")
          const stoppedAt = Date.now()
          const alive = Effect.sync(() => {
            try {
              return !readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z")
            } catch {
              return false
            }
          })
          const gone = (times: number) =>
            Effect.flatMap(alive, (up) => (up ? Effect.fail("alive") : Effect.void)).pipe(
              Effect.retry({ schedule: Schedule.spaced("100 millis"), times })
            )
          // Graceful termination keeps open watches until it exits (20-60 s here): give it 5 s, then kill.
          process.kill(-pid, "SIGTERM")
          yield* gone(50).pipe(
            Effect.orElse(() => Effect.zipRight(Effect.sync(() => process.kill(-pid, "SIGKILL")), gone(100)))
          )
          const down = yield* Effect.flip(ops.createJob(jobManifest("it-agent-4aa57614-while-down", "t")))
          expect(down).toMatchObject({ _tag: "ClusterError", transient: true })
          const log = openSync(join(runDir, "kube-apiserver.log"), "a")
          const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ["ignore", log, log] })
          child.unref()
          writeFileSync(pidFile, `${child.pid}\n`)
          // Back up: the first write that succeeds, then the informers must deliver it.
          const after = "it-agent-4aa57614-post-restart"
          yield* ops.createJob(jobManifest(after, "task-restart")).pipe(
            Effect.retry({ schedule: Schedule.spaced("250 millis"), times: 240, while: (e) => e.transient })
          )
          const upAt = Date.now()
          yield* Effect.gen(function*() {
            if (Option.isNone(yield* watch.job(after))) return yield* Effect.fail("not yet")
          }).pipe(Effect.retry({ schedule: Schedule.spaced("100 millis"), times: 300 }))
          yield* Effect.log(`apiserver down+up ${upAt - stoppedAt} ms; informer caught up ${Date.now() - upAt} ms later`)
          expect(Option.isSome(yield* watch.job(before))).toBe(true)
        }),
      60_000
    )
  })
}
