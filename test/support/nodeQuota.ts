// A ResourceQuota `pods: "0"` on the real node that only the pods of one PriorityClass count
// against: the ResourceQuota admission refuses every such pod (the job controller records
// `FailedCreate ... exceeded quota`), while the other pods of the namespace run as usual.
import * as k8s from "@kubernetes/client-node"
import type { NodeClients } from "./nodeCluster.js"
import { eventually } from "./wait.js"

export interface PodQuota {
  readonly name: string
  readonly priorityClass: string
}

export const createPodQuota = async (
  clients: NodeClients,
  namespace: string,
  name: string,
  priorityClass = `${namespace}-no-pods`
): Promise<PodQuota> => {
  await clients.kc.makeApiClient(k8s.SchedulingV1Api).createPriorityClass({
    body: {
      metadata: { name: priorityClass },
      value: 0,
      globalDefault: false,
      preemptionPolicy: "Never",
      description: "pods of this class are refused by a ResourceQuota pods: 0 (agent-task-executor tests)"
    }
  })
  await clients.core.createNamespacedResourceQuota({
    namespace,
    body: {
      metadata: { name },
      spec: {
        hard: { pods: "0" },
        scopeSelector: { matchExpressions: [{ scopeName: "PriorityClass", operator: "In", values: [priorityClass] }] }
      }
    }
  })
  // until the quota controller has written its status, the admission refuses with "status unknown"
  await eventually(`the status of ResourceQuota ${namespace}/${name}`, 30_000, async () =>
    (await clients.core.readNamespacedResourceQuota({ name, namespace })).status?.hard?.["pods"] === "0" ? true : undefined)
  return { name, priorityClass }
}

export const deletePodQuota = (clients: NodeClients, priorityClass: string) =>
  clients.kc.makeApiClient(k8s.SchedulingV1Api).deletePriorityClass({ name: priorityClass }).then(() => undefined, () => undefined)
