/**
 * Dispatch throughput in memory: N task events on the in-memory broker, the whole executor
 * (`World.startExecutor("full")`: consumer, gates, dispatcher, Job creation in the in-memory
 * cluster, spawn pair and offset in one transaction) until N Jobs exist; beside it the floor, a
 * raw loop over the same bus and cluster: consume each event and create its Job, nothing else.
 *   node scripts/bench/.out/dispatch.mjs [--events 2000]
 */
import { Effect, Stream } from "effect"
import { ClusterOps } from "@executor/executor"
import { InMemoryBus, PodBehaviour, World } from "@executor/testkit"
import { agentSpec, dispatchTopics, taskEvent } from "../../packages/executor/test/fixtures.js"
import { jobWire, taskIdOf } from "./fixtures.js"
import { load } from "./proc.js"

const args = process.argv.slice(2)
const n = Number(args.includes("--events") ? args[args.indexOf("--events") + 1] : 2000)

const waitFor = (check: Effect.Effect<boolean>) =>
  Effect.gen(function* () {
    while (!(yield* check)) yield* Effect.sleep("5 millis")
  })

const executor = Effect.scoped(
  Effect.gen(function* () {
    const world = yield* World.make({ podBehaviour: PodBehaviour.always(PodBehaviour.hang) })
    yield* world.cluster.applyConfig("claude", agentSpec())
    for (let i = 0; i < n; i++) {
      const event = taskEvent(taskIdOf(i))
      yield* world.bus.produce(dispatchTopics.event, event.taskIdentifier, JSON.stringify(event))
    }
    const started = performance.now()
    yield* world.startExecutor("full")
    yield* waitFor(Effect.map(world.cluster.jobsSnapshot, (jobs) => jobs.length >= n))
    return performance.now() - started
  })
)

const floor = Effect.scoped(
  Effect.gen(function* () {
    const world = yield* World.make({ podBehaviour: PodBehaviour.always(PodBehaviour.hang) })
    for (let i = 0; i < n; i++) {
      const event = taskEvent(taskIdOf(i))
      yield* world.bus.produce(dispatchTopics.event, event.taskIdentifier, JSON.stringify(event))
    }
    const ops = yield* Effect.provide(ClusterOps, world.cluster.layer)
    const started = performance.now()
    yield* world.bus.consume(InMemoryBus.executorGroup, dispatchTopics.event).pipe(
      Stream.take(n),
      Stream.runForEach((record) =>
        Effect.gen(function* () {
          const { taskIdentifier } = JSON.parse(record.value) as { taskIdentifier: string }
          const i = Number.parseInt(taskIdentifier.slice(0, 8), 16)
          const wire = jobWire(world.settings.namespace, i)
          yield* Effect.ignore(ops.createJob({ ...wire, metadata: { name: wire.metadata.name, labels: wire.metadata.labels } } as never))
        })
      )
    )
    return performance.now() - started
  })
)

const floorMs = await Effect.runPromise(floor)
const executorMs = await Effect.runPromise(executor)
process.stdout.write(
  `${JSON.stringify({ bench: "dispatch-memory", events: n, executorMs, perSecond: (1000 * n) / executorMs, floorMs, floorPerSecond: (1000 * n) / floorMs, ratio: executorMs / floorMs, load: load() })}\n`
)
process.exit(0)
