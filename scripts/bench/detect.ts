/**
 * Detection latency at N in-flight runs: N Jobs of the executor's shape with Running pods on the
 * bare API server, the built `run` started over them (recovery adopts every one), then, one at a
 * time, a pod's status is written as the kubelet writes a failure that has no grace (OOMKilled exit
 * 137, Evicted, InvalidImageName) and the time until its failure pair is readable (read committed)
 * on the request topic is taken. The floor, measured on the same writes: a bare client-node watch
 * of the namespace's pods seeing the write, plus one raw kafkajs produce (acks all) of one message.
 *   node scripts/bench/.out/detect.mjs [--runs 1000] [--samples 30]
 */
import * as k8s from "@kubernetes/client-node"
import { join } from "node:path"
import { log, stack, startBuilt } from "./built.js"
import { jobNameOf, podNameOf, taskIdOf } from "./fixtures.js"
import { load } from "./proc.js"
import { populate, rawApi } from "./rawApi.js"
import { agentSpec } from "../../test/support/harness.js"
import { commandLog, createTopics, failuresOf, kafka } from "../../test/support/kafka.js"
import { kubeClient, podStatus, prepareNamespace } from "../../test/support/kube.js"
import { sleep } from "../../test/support/wait.js"

const args = process.argv.slice(2)
const option = (name: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : undefined)
const n = Number(option("runs") ?? 1000)
const samples = Math.min(n, Number(option("samples") ?? 30))
const image = "127.0.0.1:5001/agent:1"
const quantile = (xs: ReadonlyArray<number>, q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))] ?? Number.NaN

const s = await stack()
const kube = kubeClient(s.kubeconfig)
const api = rawApi(s.dir)
const namespace = `bench-detect-${process.pid}`
const prefix = namespace
try {
  await prepareNamespace(kube, namespace)
  await kube.applyConfig(namespace, "agent", agentSpec("bench-agent", { image, zombieJobTimeoutSeconds: 3600 }))
  const created = performance.now()
  await populate(api, namespace, n, { createNamespace: false })
  log(`${n} Jobs and Running pods in ${((performance.now() - created) / 1000).toFixed(0)} s`)
  const topics = { event: `${prefix}-agent-task-v1-event`, request: `${prefix}-agent-task-v1-request` }
  const floorTopic = `${prefix}-floor`
  await createTopics(s.kafkaBrokers, [topics.event, topics.request, floorTopic])
  const commands = await commandLog(s.kafkaBrokers, topics.request)
  const built = await startBuilt(s, { namespace, prefix, logDir: join(s.dir, "bench") })

  // the floor: a bare watch and a raw produce
  const producer = kafka(s.kafkaBrokers, "bench-floor").producer({ allowAutoTopicCreation: false })
  await producer.connect()
  const floorDone = new Map<string, number>()
  const waiting = new Set<string>()
  const kc = new k8s.KubeConfig()
  kc.loadFromFile(s.kubeconfig)
  const watch = await new k8s.Watch(kc).watch(`/api/v1/namespaces/${namespace}/pods`, {}, (type, object: k8s.V1Pod) => {
    const name = object.metadata?.name ?? ""
    if (type !== "MODIFIED" || !waiting.has(name)) return
    waiting.delete(name)
    void producer.send({ topic: floorTopic, acks: -1, messages: [{ key: name, value: "x" }] }).then(() => floorDone.set(name, performance.now()))
  }, () => undefined)

  try {
    const readyMs = await built.ready(300_000)
    log(`run ready over ${n} runs in ${(readyMs / 1000).toFixed(1)} s`)
    await sleep(3_000)
    const modes = [
      ["OOMKilled", podStatus.terminated(image, 137, "OOMKilled")],
      ["Evicted", podStatus.evicted()],
      ["InvalidImageName", podStatus.waiting(image, "InvalidImageName", `Failed to apply default image tag "${image}": couldn't parse image name`)]
    ] as const
    const latencies: Array<number> = []
    const floors: Array<number> = []
    for (let k = 0; k < samples; k++) {
      const i = Math.floor((k * n) / samples)
      const [mode, status] = modes[k % modes.length] ?? modes[0]
      const pod = podNameOf(i)
      waiting.add(pod)
      const t0 = performance.now()
      const wall0 = Date.now()
      await kube.patchPodStatus(namespace, pod, status)
      const failure = await commands.waitFor(`failure of ${jobNameOf(i)} (${mode})`, 60_000, (all) => failuresOf(all, taskIdOf(i))[0])
      latencies.push(failure.update.receivedAt - wall0)
      while (!floorDone.has(pod) && performance.now() - t0 < 10_000) await sleep(5)
      floors.push((floorDone.get(pod) ?? Number.NaN) - t0)
      await sleep(200)
    }
    const result = {
      bench: "detect",
      runs: n,
      samples,
      p50ms: quantile(latencies, 0.5),
      p99ms: quantile(latencies, 0.99),
      maxMs: Math.max(...latencies),
      floorP50ms: quantile(floors, 0.5),
      floorP99ms: quantile(floors, 0.99),
      ratioP99: quantile(latencies, 0.99) / quantile(floors, 0.99),
      latencies: latencies.map((l) => Math.round(l)),
      floors: floors.map((l) => Math.round(l))
    }
    process.stdout.write(`${JSON.stringify({ ...result, load: load() })}\n`)
  } finally {
    watch.abort()
    await producer.disconnect()
    await built.stop()
    await commands.stop()
  }
} finally {
  await api.call("DELETE", `/api/v1/namespaces/${namespace}`).catch(() => 0)
  api.close()
  s.stop()
}
process.exit(0)
