import { Context, Deferred, Effect, Either, Layer, Metric, Option, Ref, Stream } from "effect"
import { AgentConfig } from "@executor/domain"
import { ClusterWatch, type ConfigObject } from "./ClusterWatch.js"
import * as Metrics from "./Metrics.js"

/** The agents the executor knows, from the `Config` resources of its namespace. */
export interface AgentRegistryShape {
  /** Completes once the initial list of Configs has been loaded. */
  readonly synced: Effect.Effect<void>
  readonly all: Effect.Effect<ReadonlyArray<AgentConfig.AgentConfig>>
  /** The Config whose `spec.assignee` matches exactly; the first by name when several do. */
  readonly byAssignee: (assignee: string) => Effect.Effect<Option.Option<AgentConfig.AgentConfig>>
  /** Graces of an agent; defaults when its Config is gone. The timeout is the Job's own. */
  readonly graces: (assignee: string, jobTimeoutSeconds: number) => Effect.Effect<AgentConfig.Graces>
  readonly sweeperIntervalSeconds: Effect.Effect<number>
}

const apply = (configs: ReadonlyMap<string, AgentConfig.AgentConfig>, object: ConfigObject) =>
  Either.map(AgentConfig.agentConfig(object.metadata, object.spec), (config) =>
    new Map(configs).set(object.metadata.name, config)
  )

const make = Effect.gen(function* () {
  const watch = yield* ClusterWatch
  const configs = yield* Ref.make<ReadonlyMap<string, AgentConfig.AgentConfig>>(new Map())
  const synced = yield* Deferred.make<void>()

  yield* watch.configEvents.pipe(
    Stream.runForEach((event) => {
      switch (event._tag) {
        case "Synced":
          return Deferred.succeed(synced, undefined)
        case "Delete":
          return Ref.update(configs, (m) => {
            const next = new Map(m)
            next.delete(event.object.metadata.name)
            return next
          })
        case "Upsert":
          return Effect.flatMap(Ref.get(configs), (current) =>
            Either.match(apply(current, event.object), {
              onRight: (next) => Ref.set(configs, next),
              // A bad Config is reported and ignored; a previously valid version stays in force.
              onLeft: (invalid) =>
                Effect.zipRight(
                  Metric.increment(Metrics.configsRejected),
                  Effect.logError(invalid.message).pipe(
                    Effect.annotateLogs({ event: "config_rejected", config: invalid.name })
                  )
                )
            })
          )
      }
    }),
    Effect.catchAllCause((cause) => Effect.logError("Config watch ended", cause)),
    Effect.forkScoped
  )

  const all = Effect.map(Ref.get(configs), (m) =>
    [...m.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
  )
  const byAssignee = (assignee: string) =>
    Effect.map(all, (list) => Option.fromNullable(list.find((c) => c.spec.assignee === assignee)))
  const shape: AgentRegistryShape = {
    synced: Deferred.await(synced),
    all,
    byAssignee,
    graces: (assignee, jobTimeoutSeconds) =>
      Effect.map(byAssignee(assignee), (config) => ({
        ...Option.match(config, {
          onNone: () => AgentConfig.defaultGraces,
          onSome: (c): AgentConfig.Graces => c
        }),
        timeoutSeconds: jobTimeoutSeconds
      })),
    sweeperIntervalSeconds: Effect.map(all, AgentConfig.sweeperIntervalSeconds)
  }
  return shape
})

export class AgentRegistry extends Context.Tag("executor/AgentRegistry")<AgentRegistry, AgentRegistryShape>() {
  static readonly layer = Layer.scoped(AgentRegistry, make)
}
