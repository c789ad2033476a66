// The cluster side of the end-to-end tests: what an operator, the job controller and the kubelet
// would do (there is no controller-manager and no scheduler, test/infra README), with
// @kubernetes/client-node against the real kube-apiserver.
import { randomBytes } from "node:crypto"
import * as k8s from "@kubernetes/client-node"
import { Effect } from "effect"
import { Crd, KubeConfig } from "@executor/kube"
import { Labels, Time } from "@executor/domain"
import { eventually } from "./wait.js"

export const names = Labels.names()
export const apiGroup = names.apiGroup

const merge = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch)

/** `status` of a failed API call (client-node's ApiException), else undefined. */
export const statusOf = (error: unknown): number | undefined => {
  const code = (error as { readonly code?: unknown } | undefined)?.code
  return typeof code === "number" ? code : undefined
}

/** The API server's `Status.message` of a rejected call. */
export const messageOf = (error: unknown): string => {
  const body = (error as { readonly body?: unknown } | undefined)?.body
  if (typeof body !== "string") return String(error)
  try {
    return String((JSON.parse(body) as { readonly message?: unknown }).message)
  } catch {
    return body
  }
}

const orUndefinedOn404 = async <A>(call: Promise<A>): Promise<A | undefined> => {
  try {
    return await call
  } catch (error) {
    if (statusOf(error) === 404) return undefined
    throw error
  }
}

export const uniqueSuffix = () => randomBytes(3).toString("hex")

/** Now, at second precision (as the kubelet and the job controller write their times). */
const now = () => new Date(Time.formatUtcSeconds(Date.now()))

// ---------------------------------------------------------------------------------------------
// pod and job statuses, as the kubelet and the job controller write them
// ---------------------------------------------------------------------------------------------

const containerStatus = (image: string, state: k8s.V1ContainerState, ready = false): k8s.V1ContainerStatus => ({
  name: "agent",
  image,
  imageID: "",
  ready,
  restartCount: 0,
  started: state.running !== undefined,
  state
})

const scheduled = (): k8s.V1PodCondition => ({ type: "PodScheduled", status: "True", lastTransitionTime: now() })

export const podStatus = {
  /** Pending on a node, the container waiting (ErrImagePull, ImagePullBackOff, InvalidImageName, CreateContainerConfigError). */
  waiting: (image: string, reason: string, message: string): k8s.V1PodStatus => ({
    phase: "Pending",
    conditions: [scheduled()],
    containerStatuses: [containerStatus(image, { waiting: { reason, message } })]
  }),
  running: (image: string): k8s.V1PodStatus => ({
    phase: "Running",
    startTime: now(),
    conditions: [scheduled(), { type: "Ready", status: "True", lastTransitionTime: now() }],
    containerStatuses: [containerStatus(image, { running: { startedAt: now() } }, true)]
  }),
  succeeded: (image: string): k8s.V1PodStatus => ({
    phase: "Succeeded",
    conditions: [scheduled()],
    containerStatuses: [
      containerStatus(image, { terminated: { exitCode: 0, reason: "Completed", startedAt: now(), finishedAt: now() } })
    ]
  }),
  evicted: (): k8s.V1PodStatus => ({
    phase: "Failed",
    reason: "Evicted",
    message: "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi."
  })
}

const jobCondition = (type: string, reason: string, message: string): k8s.V1JobCondition => ({
  type,
  status: "True",
  reason,
  message,
  lastProbeTime: now(),
  lastTransitionTime: now()
})

export const jobStatus = {
  /** What the job controller writes at `activeDeadlineSeconds` (FailureTarget before Failed, infra.md B7). */
  deadlineExceeded: (startedAt: Date | undefined): k8s.V1JobStatus => ({
    startTime: startedAt ?? now(),
    active: 0,
    conditions: [
      jobCondition("FailureTarget", "DeadlineExceeded", "Job was active longer than specified deadline"),
      jobCondition("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
    ]
  }),
  complete: (startedAt: Date | undefined): k8s.V1JobStatus => ({
    startTime: startedAt ?? now(),
    completionTime: now(),
    active: 0,
    succeeded: 1,
    conditions: [
      jobCondition("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
      jobCondition("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
    ]
  })
}

// ---------------------------------------------------------------------------------------------
// the client
// ---------------------------------------------------------------------------------------------

export type Kube = ReturnType<typeof kubeClient>

export const kubeClient = (kubeconfig: string | k8s.KubeConfig) => {
  const kc = typeof kubeconfig === "string" ? new k8s.KubeConfig() : kubeconfig
  if (typeof kubeconfig === "string") kc.loadFromFile(kubeconfig)
  const core = kc.makeApiClient(k8s.CoreV1Api)
  const batch = kc.makeApiClient(k8s.BatchV1Api)
  const custom = kc.makeApiClient(k8s.CustomObjectsApi)

  const configsPath = (namespace: string) => ({ group: apiGroup, version: "v1", namespace, plural: "configs" })

  const self = {
    kc,
    core,
    batch,
    custom,

    createNamespace: async (name: string) => {
      await core.createNamespace({ body: { metadata: { name, labels: { "agent-executor-e2e": "true" } } } })
    },

    /** Installs (or updates) the Config CRD the way `run` does with APPLY_CRD=true. */
    applyCrd: (namespace: string) =>
      Effect.runPromise(
        Crd.applyCrd().pipe(
          Effect.provide(KubeConfig.layer(typeof kubeconfig === "string" ? KubeConfig.file(kubeconfig) : KubeConfig.Default, namespace))
        )
      ),

    /** Creates a Config; the answer of the API server, a rejection included. */
    tryCreateConfig: async (namespace: string, name: string, spec: object) => {
      const body = { apiVersion: `${apiGroup}/v1`, kind: "Config", metadata: { name }, spec }
      // Right after the CRD is Established the endpoint may answer 404 for a moment (infra.md B7).
      for (let attempt = 0; ; attempt++) {
        try {
          await custom.createNamespacedCustomObject({ ...configsPath(namespace), body })
          return { ok: true as const }
        } catch (error) {
          if (statusOf(error) === 404 && attempt < 50) {
            await new Promise((r) => setTimeout(r, 200))
            continue
          }
          if (statusOf(error) === undefined) throw error
          return { ok: false as const, status: statusOf(error), message: messageOf(error) }
        }
      }
    },

    applyConfig: async (namespace: string, name: string, spec: object) => {
      const created = await self.tryCreateConfig(namespace, name, spec)
      if (!created.ok) throw new Error(`Config ${namespace}/${name} rejected (${created.status}): ${created.message}`)
    },

    deleteConfig: async (namespace: string, name: string) => {
      await custom.deleteNamespacedCustomObject({ ...configsPath(namespace), name })
    },

    getJob: (namespace: string, name: string) => orUndefinedOn404(batch.readNamespacedJob({ name, namespace })),

    /** Jobs of a task (label `task-id`), or all labelled Jobs of the namespace. */
    jobsOf: async (namespace: string, taskId?: string) =>
      (
        await batch.listNamespacedJob({
          namespace,
          labelSelector: taskId === undefined ? names.taskIdLabel : `${names.taskIdLabel}=${taskId}`
        })
      ).items,

    /** Waits for the single Job of a task (fails on two). */
    jobOf: (namespace: string, taskId: string, timeoutMs = 30_000) =>
      eventually(`a Job for task ${taskId}`, timeoutMs, async () => {
        const jobs = await self.jobsOf(namespace, taskId)
        if (jobs.length > 1) throw new Error(`task ${taskId} has ${jobs.length} Jobs: ${jobs.map((j) => j.metadata?.name).join(", ")}`)
        return jobs[0]
      }),

    /** Waits until the Job is gone (deleted and its finalizers released). */
    jobGone: (namespace: string, name: string, timeoutMs = 30_000) =>
      eventually(`Job ${name} deleted`, timeoutMs, async () => ((await self.getJob(namespace, name)) === undefined ? true : undefined)),

    deleteJob: async (namespace: string, name: string) => {
      await batch.deleteNamespacedJob({ name, namespace, propagationPolicy: "Background" })
    },

    patchJobStatus: async (namespace: string, name: string, status: k8s.V1JobStatus) => {
      await batch.patchNamespacedJobStatus({ name, namespace, body: { status } }, merge)
    },

    /** The pod the job controller would create for `job`: template labels, owner reference, spec. */
    createPodFor: async (job: k8s.V1Job, suffix: string = uniqueSuffix().slice(0, 5)) => {
      const jobName = job.metadata?.name ?? ""
      const namespace = job.metadata?.namespace ?? ""
      const uid = job.metadata?.uid ?? ""
      const template = job.spec?.template
      const pod: k8s.V1Pod = {
        apiVersion: "v1",
        kind: "Pod",
        metadata: {
          name: `${jobName}-${suffix}`,
          namespace,
          labels: {
            ...template?.metadata?.labels,
            "job-name": jobName,
            "batch.kubernetes.io/job-name": jobName,
            "controller-uid": uid,
            "batch.kubernetes.io/controller-uid": uid
          },
          ownerReferences: [{ apiVersion: "batch/v1", kind: "Job", name: jobName, uid, controller: true, blockOwnerDeletion: true }]
        },
        spec: template?.spec ?? { containers: [] }
      }
      return core.createNamespacedPod({ namespace, body: pod })
    },

    patchPodStatus: async (namespace: string, name: string, status: k8s.V1PodStatus) => {
      await core.patchNamespacedPodStatus({ name, namespace, body: { status } }, merge)
    },

    /** Events recorded on an object (by name). */
    eventsFor: async (namespace: string, involvedName: string) =>
      (await core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${involvedName}` })).items
  }
  return self
}

/** The namespace and the CRD for one test file. */
export const prepareNamespace = async (kube: Kube, namespace: string) => {
  await kube.createNamespace(namespace)
  await kube.applyCrd(namespace)
}
