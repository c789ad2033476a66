/**
 * RSS and CPU of the built `run` (apps/executor/dist/main.mjs) against the real API server and broker
 * of the test stack under a fixed synthetic load, beside its floor: a bare node process that loads
 * the same bundle and starts nothing. The bench plays the job controller and the kubelet on the bare
 * API server (no node): for every Job the executor creates it creates the pod, then writes what a
 * kubelet writes (test/support/kube.ts):
 *   - a good run: Running at once, Succeeded (and its Job Complete) 20 s later;
 *   - a broken run (assignee bench-broken, image 127.0.0.1:5999/x:1, nothing listens): ErrImagePull,
 *     then ImagePullBackOff, until the executor judges it (image_pull_backoff after the 5 s grace).
 * Finished Jobs and their pods are deleted 60 s later (the TTL and garbage collectors do that in a
 * cluster; the bare API server runs neither).
 *
 *   burst (Issue B): idle 30 s, then 50 good + 10 broken task events at once, measured until every
 *   run is settled; then idle again.
 *     node scripts/bench/.out/load.mjs burst [--before DIR] [--variant "LABEL=NODE FLAGS"]... [--idle 30]
 *   --before DIR: first the build of another checkout (DIR/apps/executor/dist), e.g. the tree before
 *   a change, so that before and after are measured in one run.
 *   soak: a steady rate of task events (2/s), a tenth broken, for M minutes; RSS and event-loop lag
 *   (from /metrics) every 10 s.
 *     node scripts/bench/.out/load.mjs soak [--minutes 10] [--rate 2]
 * Prints JSON lines on stdout. INFRA_RUN_DIR reuses a running stack (test/infra/up.sh).
 */
import { spawn } from "node:child_process"
import { readdirSync } from "node:fs"
import { join } from "node:path"
import type * as k8s from "@kubernetes/client-node"
import { type Built, log, metricValue, root, stack, startBuilt } from "./built.js"
import { load, rssMiB, sampler, type Summary } from "./proc.js"
import { agentSpec, newTaskId } from "../../test/support/harness.js"
import { produce, taskEvent } from "../../test/support/kafka.js"
import { jobStatus, kubeClient, podStatus, prepareNamespace, uniqueSuffix } from "../../test/support/kube.js"
import { sleep } from "../../test/support/wait.js"

const args = process.argv.slice(2)
const mode = args[0] ?? "burst"
const option = (name: string) => (args.includes(`--${name}`) ? args[args.indexOf(`--${name}`) + 1] : undefined)
interface Variant {
  readonly label: string
  readonly flags: ReadonlyArray<string>
  readonly tree?: string
}
const before = option("before")
const variants: Array<Variant> = [
  ...(before === undefined ? [] : [{ label: "before", flags: [], tree: before }]),
  ...args.flatMap((a, i) => (a === "--variant" ? [args[i + 1] ?? ""] : [])).map((v) => ({
    label: v.split("=")[0] ?? v,
    flags: v.slice(v.indexOf("=") + 1).split(" ").filter((f) => f !== "")
  }))
]
const idleSeconds = Number(option("idle") ?? 30)
const goodImage = "127.0.0.1:5001/agent:1"
const brokenImage = "127.0.0.1:5999/x:1"
const emit = (o: object) => process.stdout.write(`${JSON.stringify({ ...o, load: load() })}\n`)

const s = await stack()
const kube = kubeClient(s.kubeconfig)

/** The job controller and kubelet of the bare API server, for the Jobs of one namespace. */
const playKubelet = (namespace: string, runSeconds: number) => {
  const seen = new Map<string, { readonly broken: boolean; readonly pod: string; finishedAt?: number }>()
  let stopped = false
  let settled = 0
  const loop = (async () => {
    while (!stopped) {
      const jobs = await kube.jobsOf(namespace).catch(() => [] as ReadonlyArray<k8s.V1Job>)
      const present = new Set<string>()
      for (const job of jobs) {
        const name = job.metadata?.name ?? ""
        present.add(name)
        const known = seen.get(name)
        if (known === undefined) {
          const image = job.spec?.template.spec?.containers[0]?.image ?? ""
          const broken = image === brokenImage
          const pod = await kube.createPodFor(job).catch(() => undefined)
          const podName = pod?.metadata?.name ?? ""
          seen.set(name, { broken, pod: podName })
          if (podName === "") continue
          if (broken) {
            await kube.patchPodStatus(namespace, podName, podStatus.waiting(image, "ErrImagePull", `failed to pull image "${image}": dial tcp 127.0.0.1:5999: connect: connection refused`))
            setTimeout(() => {
              void kube
                .patchPodStatus(namespace, podName, podStatus.waiting(image, "ImagePullBackOff", `Back-off pulling image "${image}"`))
                .catch(() => undefined)
            }, 2_000)
          } else {
            await kube.patchPodStatus(namespace, podName, podStatus.running(image))
            setTimeout(() => {
              void (async () => {
                await kube.patchPodStatus(namespace, podName, podStatus.succeeded(image))
                await kube.patchJobStatus(namespace, name, jobStatus.complete(undefined))
                const entry = seen.get(name)
                if (entry !== undefined) entry.finishedAt = Date.now()
                settled++
              })().catch(() => undefined)
            }, runSeconds * 1000)
          }
        } else if (known.finishedAt !== undefined && Date.now() - known.finishedAt > 60_000) {
          // the TTL controller and the garbage collector
          known.finishedAt = Number.POSITIVE_INFINITY
          await kube.deleteJob(namespace, name).catch(() => undefined)
          await deletePod(namespace, known.pod)
        }
      }
      // a broken run's Job is deleted by the executor's verdict: the pod goes with it
      for (const [name, entry] of seen) {
        if (present.has(name) || !entry.broken || entry.finishedAt !== undefined) continue
        entry.finishedAt = Number.POSITIVE_INFINITY
        settled++
        await deletePod(namespace, entry.pod)
      }
      await sleep(300)
    }
  })()
  return {
    settled: () => settled,
    started: () => seen.size,
    stop: async () => {
      stopped = true
      await loop
    }
  }
}

const deletePod = async (namespace: string, name: string) => {
  if (name === "") return
  // kubeClient has no pod delete
  const k8sModule = await import("@kubernetes/client-node")
  const config = new k8sModule.KubeConfig()
  config.loadFromFile(s.kubeconfig)
  await config.makeApiClient(k8sModule.CoreV1Api).deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0 }).catch(() => undefined)
}

const world = async (label: string) => {
  const id = uniqueSuffix()
  const namespace = `bench-${label}-${id}`
  const prefix = `bench-${label}-${id}`
  await prepareNamespace(kube, namespace)
  await kube.applyConfig(namespace, "good", agentSpec("bench-good", { image: goodImage }))
  await kube.applyConfig(namespace, "broken", agentSpec("bench-broken", { image: brokenImage }))
  const publish = (assignees: ReadonlyArray<string>) =>
    produce(
      s.kafkaBrokers,
      `${prefix}-agent-task-v1-event`,
      assignees.map((assignee) => {
        const event = taskEvent({ taskId: newTaskId(), assignee })
        return { key: event.taskIdentifier, value: JSON.stringify(event) }
      })
    )
  return { namespace, prefix, publish }
}

/** A bare node that loads the bundle's `run` chunk (every module evaluated) and starts nothing. */
const floor = async (flags: ReadonlyArray<string>, tree = root): Promise<Summary> => {
  const chunks = join(tree, "apps/executor/dist/chunks")
  const run = readdirSync(chunks).find((f) => f.startsWith("Run-") && f.endsWith(".mjs"))
  if (run === undefined) throw new Error("no Run chunk: pnpm build first")
  const child = spawn(process.execPath, [...flags, "--input-type=module", "-e", `await import(${JSON.stringify(join(chunks, run))}); setInterval(() => {}, 1 << 30)`], {
    stdio: "ignore"
  })
  await sleep(5_000)
  const pid = child.pid ?? 0
  const sm = sampler(pid)
  await sleep(idleSeconds * 1000)
  const summary = sm.stop()
  child.kill("SIGKILL")
  return summary
}

const settle = async (player: ReturnType<typeof playKubelet>, total: number, timeoutMs: number) => {
  const started = Date.now()
  while (player.settled() < total && Date.now() - started < timeoutMs) await sleep(500)
  return player.settled()
}

const burst = async (label: string, flags: ReadonlyArray<string>, tree?: string) => {
  const w = await world(label.replace(/[^a-z0-9]/g, "").slice(0, 12) || "burst")
  const player = playKubelet(w.namespace, 20)
  const b: Built = await startBuilt(s, { namespace: w.namespace, prefix: w.prefix, nodeArgs: flags, logDir: join(s.dir, "bench"), ...(tree === undefined ? {} : { tree }) })
  try {
    const readyMs = await b.ready()
    const readyRss = rssMiB(b.pid)
    await sleep(5_000)
    let sm = sampler(b.pid)
    await sleep(idleSeconds * 1000)
    const idle = sm.stop()
    sm = sampler(b.pid)
    const started = Date.now()
    await w.publish([...Array.from({ length: 50 }, () => "bench-good"), ...Array.from({ length: 10 }, () => "bench-broken")])
    const settled = await settle(player, 60, 180_000)
    const loadSeconds = (Date.now() - started) / 1000
    await sleep(5_000)
    const underLoad = sm.stop()
    sm = sampler(b.pid)
    await sleep(idleSeconds * 1000)
    const after = sm.stop()
    const metrics = await b.metrics()
    const spawned = metricValue(metrics, "agent_executor_jobs_spawned_total")
    const verdicts = metricValue(metrics, "agent_executor_zombie_verdicts_total")
    return { label, flags, readyMs, readyRss, idle, underLoad, after, loadSeconds, settled, spawned, verdicts }
  } finally {
    await b.stop()
    await player.stop()
  }
}

const soak = async (minutes: number, rate: number) => {
  const w = await world("soak")
  const player = playKubelet(w.namespace, 20)
  const b = await startBuilt(s, { namespace: w.namespace, prefix: w.prefix, logDir: join(s.dir, "bench") })
  try {
    await b.ready()
    const started = Date.now()
    let sent = 0
    let nextReport = started
    const sm = sampler(b.pid, 1_000)
    while (Date.now() - started < minutes * 60_000) {
      const due = Math.floor(((Date.now() - started) / 1000) * rate)
      if (due > sent) {
        const batch = Array.from({ length: due - sent }, (_, i) => ((sent + i) % 10 === 9 ? "bench-broken" : "bench-good"))
        await w.publish(batch).catch(() => undefined)
        sent = due
      }
      if (Date.now() >= nextReport) {
        nextReport += 10_000
        const m = await b.metrics().catch(() => "")
        emit({
          bench: "soak",
          minute: (Date.now() - started) / 60_000,
          rssMiB: rssMiB(b.pid),
          heapUsedMiB: metricValue(m, "nodejs_heap_used_bytes") / 1048576,
          lagP99ms: 1000 * metricValue(m, "nodejs_eventloop_lag_seconds", { quantile: "0.99" }),
          lagMaxMs: 1000 * metricValue(m, "nodejs_eventloop_lag_seconds", { quantile: "1" }),
          tracked: metricValue(m, "agent_executor_tracked_runs"),
          spawned: metricValue(m, "agent_executor_jobs_spawned_total"),
          verdicts: metricValue(m, "agent_executor_zombie_verdicts_total"),
          sent,
          settled: player.settled()
        })
      }
      await sleep(100)
    }
    const summary = sm.stop()
    emit({ bench: "soak-summary", minutes, rate, sent, settled: player.settled(), ...summary })
  } finally {
    await b.stop()
    await player.stop()
  }
}

try {
  if (mode === "soak") {
    await soak(Number(option("minutes") ?? 10), Number(option("rate") ?? 2))
  } else {
    const list: ReadonlyArray<Variant> = variants.length > (before === undefined ? 0 : 1) ? variants : [...variants, { label: "default", flags: [] }]
    for (const v of list) {
      log(`burst: ${v.label}`)
      emit({ bench: "burst", ...(await burst(v.label, v.flags, v.tree)) })
      log(`floor: ${v.label}`)
      emit({ bench: "floor", label: v.label, flags: v.flags, ...(await floor(v.flags, v.tree)) })
    }
  }
} finally {
  s.stop()
}
process.exit(0)
