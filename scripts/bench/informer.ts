/**
 * Informer sync from the real API server: N Jobs and N pods (shaped like the executor's, pods with a
 * Running status) created on the bare API server of the test stack (no kubelet: about 110 pods fit a
 * node; the API server alone holds any number), then, each in a fresh process:
 *   executor: the executor's KubeCluster (Job, pod, Config and eviction informers) until `synced`;
 *             RSS after the sync and after a full GC;
 *   floor:    a plain paginated LIST (limit 500) of the same Jobs and pods with client-node, the
 *             items kept; RSS the same way.
 *   node scripts/bench/.out/informer.mjs [--objects 10000] [--fake]
 * --fake: the lists come from an in-memory stand-in (scripts/bench/fakeApi.ts), not the API server:
 * the client side alone, in seconds instead of the minutes that creating 20k objects takes here.
 * Prints JSON lines on stdout. INFRA_RUN_DIR reuses a running stack.
 */
import { spawn } from "node:child_process"
import * as k8s from "@kubernetes/client-node"
import { Context, Effect, Layer } from "effect"
import { ClusterWatch } from "@executor/executor"
import { KubeCluster, KubeConfig } from "@executor/kube"
import { log, stack } from "./built.js"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as FakeApi from "./fakeApi.js"
import { jobWire, names, podWire } from "./fixtures.js"
import { populate, rawApi } from "./rawApi.js"
import { load } from "./proc.js"

const args = process.argv.slice(2)
const option = (name: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : undefined)
const mib = (bytes: number) => bytes / 1048576
const gc = () => (globalThis as { gc?: () => void }).gc?.()

const measureChild = async (mode: "executor" | "floor", kubeconfig: string, namespace: string) => {
  const started = performance.now()
  if (mode === "executor") {
    await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const context = yield* Layer.build(
            KubeCluster.layer({ namespace, names }).pipe(Layer.provide(KubeConfig.layer(KubeConfig.file(kubeconfig))))
          )
          const watch = Context.get(context, ClusterWatch)
          yield* watch.synced
          const syncMs = performance.now() - started
          const rssSynced = mib(process.memoryUsage().rss)
          const jobs = (yield* watch.jobs).length
          gc()
          gc()
          const memory = process.memoryUsage()
          process.stdout.write(`${JSON.stringify({ mode, syncMs, jobs, rssSynced, rssAfterGc: mib(memory.rss), heapUsedAfterGc: mib(memory.heapUsed) })}\n`)
        })
      )
    )
  } else {
    const kc = new k8s.KubeConfig()
    kc.loadFromFile(kubeconfig)
    const batch = kc.makeApiClient(k8s.BatchV1Api)
    const core = kc.makeApiClient(k8s.CoreV1Api)
    const held: Array<unknown> = []
    let cont: string | undefined
    do {
      const page = await batch.listNamespacedJob({ namespace, labelSelector: names.taskIdLabel, limit: 500, ...(cont === undefined ? {} : { _continue: cont }) })
      held.push(...page.items)
      cont = page.metadata?._continue
    } while (cont !== undefined && cont !== "")
    do {
      const page = await core.listNamespacedPod({ namespace, labelSelector: names.taskIdLabel, limit: 500, ...(cont === undefined ? {} : { _continue: cont }) })
      held.push(...page.items)
      cont = page.metadata?._continue
    } while (cont !== undefined && cont !== "")
    const syncMs = performance.now() - started
    const rssSynced = mib(process.memoryUsage().rss)
    gc()
    gc()
    const memory = process.memoryUsage()
    process.stdout.write(`${JSON.stringify({ mode, syncMs, objects: held.length, rssSynced, rssAfterGc: mib(memory.rss), heapUsedAfterGc: mib(memory.heapUsed) })}\n`)
  }
}


const child = option("child") as "executor" | "floor" | undefined
if (child !== undefined) {
  await measureChild(child, option("kubeconfig") ?? "", option("namespace") ?? "")
  process.exit(0)
}

const n = Number(option("objects") ?? 10000)
const fake = args.includes("--fake")
const s = fake ? { dir: "", kubeconfig: "", kafkaBrokers: "", stop: () => undefined } : await stack()
const namespace = `bench-informer-${process.pid}`
const api = fake ? undefined : rawApi(s.dir)
const fakeDir = fake ? mkdtempSync(join(tmpdir(), "bench-informer-")) : ""
const stand = fake
  ? await FakeApi.start(fakeDir, namespace, {
    jobs: Array.from({ length: n }, (_, i) => jobWire(namespace, i)),
    pods: Array.from({ length: n }, (_, i) => podWire(namespace, i))
  })
  : undefined
const kubeconfig = stand?.kubeconfig ?? s.kubeconfig
const createStarted = performance.now()
if (api !== undefined) await populate(api, namespace, n)
log(`created ${n} Jobs and ${n} pods in ${((performance.now() - createStarted) / 1000).toFixed(0)} s`)

const bundled = process.argv[1] ?? ""
const run = (mode: string) =>
  new Promise<string>((resolve, reject) => {
    const c = spawn(process.execPath, ["--expose-gc", bundled, "--child", mode, "--kubeconfig", kubeconfig, "--namespace", namespace], {
      stdio: ["ignore", "pipe", "inherit"]
    })
    let out = ""
    c.stdout.on("data", (d: Buffer) => (out += d.toString()))
    c.on("exit", (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`${mode}: exit ${code}`))))
  })
try {
  for (const mode of ["floor", "executor", "floor", "executor"]) {
    const result = JSON.parse(await run(mode)) as Record<string, unknown>
    process.stdout.write(`${JSON.stringify({ bench: "informer", objects: n, ...result, load: load() })}\n`)
  }
} finally {
  await api?.call("DELETE", `/api/v1/namespaces/${namespace}`)
  api?.close()
  await stand?.close()
  if (fakeDir !== "") rmSync(fakeDir, { recursive: true, force: true })
  s.stop()
}
process.exit(0)
