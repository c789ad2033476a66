// The real node's API from a test: clients, a namespace per test file, Jobs of the agent image,
// and waiting for what the Job controller and the kubelet write.
import { randomBytes } from "node:crypto"
import * as k8s from "@kubernetes/client-node"
import type { NodeInfo } from "./nodeEnv.js"
import { eventually, sleep } from "./wait.js"

export interface NodeClients {
  readonly kc: k8s.KubeConfig
  readonly core: k8s.CoreV1Api
  readonly batch: k8s.BatchV1Api
  readonly auth: k8s.AuthenticationV1Api
}

export const nodeClients = (node: NodeInfo): NodeClients => {
  const kc = new k8s.KubeConfig()
  kc.loadFromFile(node.kubeconfig)
  return { kc, core: kc.makeApiClient(k8s.CoreV1Api), batch: kc.makeApiClient(k8s.BatchV1Api), auth: kc.makeApiClient(k8s.AuthenticationV1Api) }
}

/**
 * A fresh namespace, returned once its `default` ServiceAccount exists: before that the
 * ServiceAccount admission plugin rejects every pod, and the Job controller backs off.
 */
export const createNamespace = async (clients: NodeClients, prefix: string): Promise<string> => {
  const name = `${prefix}-${randomBytes(3).toString("hex")}`
  await clients.core.createNamespace({ body: { metadata: { name } } })
  await defaultServiceAccount(clients.core, name)
  return name
}

/** Waits for the `default` ServiceAccount of a new namespace (until then every pod is rejected). */
export const defaultServiceAccount = (core: k8s.CoreV1Api, namespace: string) =>
  eventually(`the default ServiceAccount of ${namespace}`, 30_000, async () =>
    (await core.readNamespacedServiceAccount({ name: "default", namespace })).metadata?.name, 100)

export const deleteNamespace = (clients: NodeClients, name: string) =>
  clients.core.deleteNamespace({ name }).then(() => undefined, () => undefined)

/** The agent container: behaviour from AGENT_* variables (test/infra/images/agent.sh). */
export const agentContainer = (
  image: string,
  env: Readonly<Record<string, string>> = {},
  extra: Partial<k8s.V1Container> = {}
): k8s.V1Container => ({
  name: "agent",
  image,
  imagePullPolicy: "Always",
  env: Object.entries(env).map(([name, value]) => ({ name, value })),
  ...extra
})

/** A Job of one pod that is never retried (as the executor builds them). */
export const createJob = (
  clients: NodeClients,
  namespace: string,
  name: string,
  container: k8s.V1Container,
  pod: Partial<k8s.V1PodSpec> = {}
) =>
  clients.batch.createNamespacedJob({
    namespace,
    body: {
      metadata: { name },
      spec: {
        backoffLimit: 0,
        template: {
          spec: { restartPolicy: "Never", automountServiceAccountToken: false, dnsPolicy: "Default", containers: [container], ...pod }
        }
      }
    }
  })

const terminalConditions = ["Complete", "Failed"]

/**
 * The Job's condition of `type` once it is True. Waiting for one terminal condition fails at once
 * when the Job ends with the other.
 */
export const jobCondition = async (clients: NodeClients, namespace: string, name: string, type: string, timeoutMs = 60_000) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const job = await clients.batch.readNamespacedJob({ name, namespace })
    const conditions = (job.status?.conditions ?? []).filter((c) => c.status === "True")
    const wanted = conditions.find((c) => c.type === type)
    if (wanted !== undefined) return wanted
    const other = conditions.find((c) => terminalConditions.includes(c.type) && terminalConditions.includes(type))
    if (other !== undefined) throw new Error(`Job ${namespace}/${name} is ${other.type} (${other.reason}: ${other.message}), not ${type}`)
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for Job ${namespace}/${name} ${type}`)
    await sleep(250)
  }
}

/** The Job's pod (the first one), once there is one and `accept` says it is what we wait for. */
export const jobPod = (
  clients: NodeClients,
  namespace: string,
  job: string,
  accept: (pod: k8s.V1Pod) => boolean,
  what: string,
  timeoutMs = 60_000,
  intervalMs = 250
) =>
  eventually(`the pod of Job ${namespace}/${job}: ${what}`, timeoutMs, async () => {
    const pods = await clients.core.listNamespacedPod({ namespace, labelSelector: `job-name=${job}` })
    return pods.items.find(accept)
  }, intervalMs)

/** The agent container's status in a pod. */
export const agentStatus = (pod: k8s.V1Pod) => pod.status?.containerStatuses?.find((c) => c.name === "agent")

/** The container's log, as the API server reads it from the kubelet. */
export const podLog = (clients: NodeClients, namespace: string, name: string) =>
  clients.core.readNamespacedPodLog({ name, namespace, container: "agent" })
