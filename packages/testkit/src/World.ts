import { Clock, type Context, type Cron, Effect, Exit, Layer, Ref, Scope } from "effect"
import {
  Dispatcher,
  Executor,
  ExecutorSettings,
  Healthcheck,
  HealthcheckCronLive,
  type ExecutorSettingsShape,
  Journal,
  type JournalEntry
} from "@executor/executor"
import { Commands } from "@executor/domain"
import * as InMemoryBus from "./InMemoryBus.js"
import * as InMemoryCluster from "./InMemoryCluster.js"
import type * as PodBehaviour from "./PodBehaviour.js"

export type Recorded = JournalEntry & { readonly at: number }

/**
 * A namespace and a broker that outlive executor processes: tests start an executor, kill it
 * (all memory lost, in-flight work interrupted) and start a fresh one over the same world.
 */
export interface World {
  readonly cluster: InMemoryCluster.InMemoryClusterShape
  readonly bus: InMemoryBus.InMemoryBus
  readonly settings: ExecutorSettingsShape
  /** What every executor process of this world decided, in order. */
  readonly journal: Effect.Effect<ReadonlyArray<Recorded>>
  /**
   * Starts an executor process. `full` consumes task events; `detection` runs everything but the
   * consumer (tests then call the dispatcher directly). The process stops with `stop` or its scope.
   */
  readonly startExecutor: (
    mode?: "full" | "detection",
    options?: { readonly healthcheckCron?: Cron.Cron }
  ) => Effect.Effect<ExecutorProcess, never, Scope.Scope>
}

export type ExecutorServices = Layer.Layer.Success<typeof Executor.layerState> | Dispatcher

export interface ExecutorProcess {
  readonly context: Context.Context<ExecutorServices>
  /** Kills the process at once: fibers interrupted, in-flight work lost, memory lost. */
  readonly stop: Effect.Effect<void>
  readonly use: <A, E>(effect: Effect.Effect<A, E, ExecutorServices>) => Effect.Effect<A, E>
}

export interface WorldOptions {
  readonly podBehaviour: PodBehaviour.Resolver
  readonly settings?: Partial<ExecutorSettingsShape>
  /** Partitions of the request topic (default 1). */
  readonly requestPartitions?: number
}

export const make = (options: WorldOptions): Effect.Effect<World, never, Scope.Scope> =>
  Effect.gen(function* () {
    const settings: ExecutorSettingsShape = { ...ExecutorSettings.defaults, ...options.settings }
    const cluster = yield* InMemoryCluster.make({
      namespace: settings.namespace,
      names: settings.names,
      podBehaviour: options.podBehaviour
    })
    const requestTopic = Commands.topics(settings.topicPrefix).request
    const bus = yield* InMemoryBus.make({
      partitions: (topic) => (topic === requestTopic ? (options.requestPartitions ?? 1) : 1)
    })
    const journal = yield* Ref.make<ReadonlyArray<Recorded>>([])
    const journalLayer = Layer.succeed(Journal, {
      record: (entry) =>
        Effect.flatMap(Clock.currentTimeMillis, (at) => Ref.update(journal, (all) => [...all, { ...entry, at }]))
    })
    const infra = Layer.mergeAll(
      cluster.layer,
      InMemoryBus.layerPublisher(bus, { topicPrefix: settings.topicPrefix }),
      InMemoryBus.layerEventSource(bus, { topicPrefix: settings.topicPrefix }),
      ExecutorSettings.layer(settings),
      journalLayer
    )

    const startExecutor = (mode: "full" | "detection" = "full", options: { readonly healthcheckCron?: Cron.Cron } = {}) =>
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const core =
          mode === "full"
            ? Executor.layerExecutor
            : Dispatcher.layer.pipe(Layer.provideMerge(Executor.layerZombieDetection))
        const cron = options.healthcheckCron
        const executor =
          cron === undefined
            ? core
            : Layer.merge(core, HealthcheckCronLive(cron).pipe(Layer.provide(Healthcheck.layer), Layer.provide(core)))
        const context = yield* Layer.buildWithScope(executor.pipe(Layer.provide(infra)), scope)
        const stop = Scope.close(scope, Exit.void)
        yield* Effect.addFinalizer(() => stop)
        return {
          context: context as Context.Context<ExecutorServices>,
          stop,
          use: (effect) => Effect.provide(effect, context as Context.Context<ExecutorServices>)
        } satisfies ExecutorProcess
      })

    return { cluster, bus, settings, journal: Ref.get(journal), startExecutor }
  })
