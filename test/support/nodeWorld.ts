// The end-to-end world of test/support/harness.ts on the real node: the real `run` service with the
// node's admin kubeconfig and its Kafka (127.0.0.1:9092), a namespace that can take pods, and the
// request topic read uncommitted, as the real controller reads it (as every world does).
import * as k8s from "@kubernetes/client-node"
import { expect } from "vitest"
import { makeWorld, type World } from "./harness.js"
import type { InfraInfo } from "./infraEnv.js"
import { type CommandRecord, isFailure, isIncrement, isSpawnNotification } from "./kafka.js"
import { names } from "./kube.js"
import { defaultServiceAccount } from "./nodeCluster.js"
import type { NodeInfo } from "./nodeEnv.js"
import { eventually } from "./wait.js"

const mergePatch = k8s.setHeaderOptions("Content-Type", k8s.PatchStrategy.MergePatch)

export const nodeInfra = (node: NodeInfo): InfraInfo => ({
  runDir: node.runDir,
  kubeconfig: node.kubeconfig,
  kafkaBrokers: node.kafkaBrokers,
  kubeApiserverUrl: node.kubeApiserverUrl,
  kafkaLibs: "",
  javaBin: ""
})

export const makeNodeWorld = (node: NodeInfo, label: string, agents: Readonly<Record<string, object>>) =>
  makeWorld(nodeInfra(node), label, agents, {
    namespaceReady: (kube, namespace) => defaultServiceAccount(kube.core, namespace).then(() => undefined)
  })

/**
 * After the world's executors are gone: the finalizers they left on Jobs released, and the
 * namespace deleted, waiting (up to `timeoutMs`) until its pods are gone: a node kept for more runs
 * does not fill up, and node-down.sh does not race the kubelet killing them.
 */
export const removeNamespace = async (world: World, timeoutMs = 90_000) => {
  const jobs = await world.kube.batch.listNamespacedJob({ namespace: world.namespace }).catch(() => ({ items: [] }))
  for (const job of jobs.items) {
    if (!(job.metadata?.finalizers ?? []).includes(names.finalizer)) continue
    await world.kube.batch
      .patchNamespacedJob({ name: job.metadata?.name ?? "", namespace: world.namespace, body: { metadata: { finalizers: null } } }, mergePatch)
      .catch(() => undefined)
  }
  await world.kube.core.deleteNamespace({ name: world.namespace }).catch(() => undefined)
  await eventually(`namespace ${world.namespace} deleted`, timeoutMs, () =>
    world.kube.core.readNamespace({ name: world.namespace }).then(() => undefined, () => true), 500).catch((error: unknown) => {
    console.warn(String(error))
  })
}

const kindOf = (r: CommandRecord) =>
  isSpawnNotification(r) ? "spawn notification" : isFailure(r) ? "failure" : isIncrement(r) ? "increment" : r.operation

/**
 * Everything a read-uncommitted reader saw for one task, in order: the spawn increment and the spawn
 * notification, then (for a zombie) the failure update and its increment; exactly once each, all
 * keyed by the task id.
 */
export const expectRunCommands = (records: ReadonlyArray<CommandRecord>, taskId: string, zombie: boolean) => {
  const mine = records.filter((r) => r.taskId === taskId)
  const spawn = ["increment", "spawn notification"]
  expect(mine.map(kindOf), `the commands of task ${taskId}`).toEqual(zombie ? [...spawn, "failure", "increment"] : spawn)
  expect(mine.every((r) => r.key === taskId)).toBe(true)
}

