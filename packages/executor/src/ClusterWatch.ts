import { Context, type Effect, type Option, type Stream } from "effect"
import type { Kube } from "@executor/domain"
import type { ClusterError } from "./ClusterOps.js"

/**
 * One change seen by an informer. A subscription first replays the whole cache as `Upsert`s, then
 * says `Synced`, then follows live changes: a consumer that handles every event is level-triggered
 * and never misses an object, whenever it subscribes.
 */
export type WatchEvent<A> =
  | { readonly _tag: "Upsert"; readonly object: A }
  | { readonly _tag: "Delete"; readonly object: A }
  | { readonly _tag: "Synced" }

/** A `Config` custom resource as watched: its spec is decoded later, by the agent registry. */
export interface ConfigObject {
  readonly metadata: Kube.ObjectMeta
  readonly spec: unknown
}

/** Cluster reads: informer streams and their caches, scoped to the executor's namespace. */
export interface ClusterWatchShape {
  readonly jobEvents: Stream.Stream<WatchEvent<Kube.Job>>
  readonly podEvents: Stream.Stream<WatchEvent<Kube.Pod>>
  readonly configEvents: Stream.Stream<WatchEvent<ConfigObject>>
  /**
   * The kubelet's `Evicted` Events about pods of the namespace (field selector
   * `Kube.podEvictionSelector`): the only trace of an eviction whose process exited 0 on SIGTERM.
   */
  readonly evictionEvents: Stream.Stream<WatchEvent<Kube.Event>>
  /** Completes once the Job, Pod, Config and eviction caches hold their initial lists. */
  readonly synced: Effect.Effect<void>
  readonly job: (name: string) => Effect.Effect<Option.Option<Kube.Job>>
  /**
   * The Job as the API server has it now, bypassing the cache: a cache that lags (a watch that is
   * reconnecting, a slow event) may not hold a Job yet, so its absence alone proves nothing.
   */
  readonly readJob: (name: string) => Effect.Effect<Option.Option<Kube.Job>, ClusterError>
  /** The pods of a Job (of the task `taskId`) as the API server has them now, bypassing the cache. */
  readonly readPodsOfJob: (jobName: string, taskId: string) => Effect.Effect<ReadonlyArray<Kube.Pod>, ClusterError>
  /** Every Job carrying the task-id label. */
  readonly jobs: Effect.Effect<ReadonlyArray<Kube.Job>>
  readonly podsOfJob: (jobName: string) => Effect.Effect<ReadonlyArray<Kube.Pod>>
  /** The cached `Evicted` Events of the namespace. */
  readonly evictions: Effect.Effect<ReadonlyArray<Kube.Event>>
  /** The Events of the namespace that match a field selector (`a=b,c=d`), as the API server has them now. */
  readonly readEvents: (fieldSelector: string) => Effect.Effect<ReadonlyArray<Kube.Event>, ClusterError>
}

export class ClusterWatch extends Context.Tag("executor/ClusterWatch")<ClusterWatch, ClusterWatchShape>() {}
