/**
 * Sweep tick over tracked runs, in memory: the executor's real caches (KubeCluster informers over an
 * API server stand-in that serves N Jobs and N Running pods from memory, scripts/bench/fakeApi.ts),
 * N tracked runs, the real Verdicts; one `sweepOnce` timed, beside a bare loop over the same cached
 * objects (the floor: every run's Job and pods visited, nothing classified).
 *
 *   node --import tsx scripts/bench/sweep.ts [--runs 1000,10000,100000] [--ticks 5] [--profile FILE]
 * The first tick is reported apart (it creates every run's first-seen state); the figure is the
 * median of the others. --profile: a V8 CPU profile of the timed ticks of the last size.
 * Prints one JSON line per size on stdout.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Layer, Option } from "effect"
import { ClusterWatch, Executor, ExecutorSettings, Journal, RunTracker, sweepOnce } from "@executor/executor"
import { KubeCluster, KubeConfig } from "@executor/kube"
import { InMemoryBus } from "@executor/testkit"
import * as FakeApi from "./fakeApi.js"
import { jobNameOf, jobWire, names, podWire, taskIdOf } from "./fixtures.js"
import { load } from "./proc.js"

const argument = (name: string): string | undefined => {
  const i = process.argv.indexOf(`--${name}`)
  return i < 0 ? undefined : process.argv[i + 1]
}
const sizes = (argument("runs") ?? "1000,10000,100000").split(",").map(Number)
const ticks = Number(argument("ticks") ?? 5)
const profileFile = argument("profile")
const namespace = "bench"

const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN

const measure = (n: number) =>
  Effect.gen(function* () {
    const dir = mkdtempSync(join(tmpdir(), "bench-sweep-"))
    const jobs = Array.from({ length: n }, (_, i) => jobWire(namespace, i))
    const pods = Array.from({ length: n }, (_, i) => podWire(namespace, i))
    const api = yield* Effect.acquireRelease(Effect.promise(() => FakeApi.start(dir, namespace, { jobs, pods })), (a) =>
      Effect.promise(() => a.close()).pipe(Effect.zipRight(Effect.sync(() => rmSync(dir, { recursive: true, force: true })))))
    const bus = yield* InMemoryBus.make()
    const infra = Layer.mergeAll(
      KubeCluster.layer({ namespace, names }).pipe(Layer.provide(KubeConfig.layer(KubeConfig.file(api.kubeconfig)))),
      InMemoryBus.layerPublisher(bus, { topicPrefix: "" }),
      ExecutorSettings.layer({ namespace, names }),
      Layer.succeed(Journal, { record: () => Effect.void })
    )
    const context = yield* Layer.build(Executor.layerState.pipe(Layer.provideMerge(infra)))
    return yield* Effect.gen(function* () {
      const watch = yield* ClusterWatch
      const tracker = yield* RunTracker
      const syncStarted = performance.now()
      yield* watch.synced
      const syncMs = performance.now() - syncStarted
      const now = Date.now()
      for (let i = 0; i < n; i++) {
        yield* tracker.track({
          taskId: taskIdOf(i),
          jobName: jobNameOf(i),
          assignee: "bench-agent",
          startedAt: now,
          timeoutSeconds: 3600,
          attempt: Option.some(1),
          spawnPublished: true
        })
      }
      const firstStarted = performance.now()
      yield* sweepOnce
      const firstTickMs = performance.now() - firstStarted
      const session = profileFile === undefined ? undefined : new Session()
      if (session !== undefined) {
        session.connect()
        yield* Effect.promise(() => session.post("Profiler.enable").then(() => session.post("Profiler.start")))
      }
      const tickMs: Array<number> = []
      const tickCpuMs: Array<number> = []
      for (let t = 0; t < ticks; t++) {
        const started = performance.now()
        const cpu = process.cpuUsage()
        yield* sweepOnce
        const used = process.cpuUsage(cpu)
        tickMs.push(performance.now() - started)
        tickCpuMs.push((used.user + used.system) / 1000)
      }
      if (session !== undefined && profileFile !== undefined) {
        const { profile } = yield* Effect.promise(() => session.post("Profiler.stop"))
        writeFileSync(profileFile, JSON.stringify(profile))
        session.disconnect()
      }
      const floorMs: Array<number> = []
      const floorCpuMs: Array<number> = []
      for (let t = 0; t < ticks; t++) {
        const started = performance.now()
        const cpu = process.cpuUsage()
        const runs = yield* tracker.all
        const cachedJobs = yield* watch.jobs
        const byName = new Map(cachedJobs.map((j) => [j.metadata.name, j]))
        let visited = 0
        for (const run of runs) if (byName.get(run.jobName) !== undefined) visited++
        yield* Effect.sync(() => visited)
        floorMs.push(performance.now() - started)
        const used = process.cpuUsage(cpu)
        floorCpuMs.push((used.user + used.system) / 1000)
      }
      const left = (yield* tracker.all).length
      return { runs: n, syncMs, firstTickMs, tickMs: median(tickMs), tickCpuMs: median(tickCpuMs), ticks: tickMs, floorMs: median(floorMs), floorCpuMs: median(floorCpuMs), stillTracked: left }
    }).pipe(Effect.provide(context))
  }).pipe(Effect.scoped)

for (const n of sizes) {
  const result = await Effect.runPromise(measure(n))
  process.stdout.write(`${JSON.stringify({ bench: "sweep", ...result, ratio: result.tickMs / result.floorMs, load: load() })}\n`)
  if (global.gc !== undefined) global.gc()
}
process.exit(0)
