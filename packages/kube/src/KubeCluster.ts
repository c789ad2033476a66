import { hostname } from "node:os"
import * as k8s from "@kubernetes/client-node"
import { Kube, type Labels } from "@executor/domain"
import {
  ClusterError,
  ClusterOps,
  type ClusterOpsShape,
  ClusterWatch,
  type ClusterWatchShape,
  type ConfigObject,
  type CreateOutcome,
  ExecutorSettings,
  type JobEvent,
  NotFound
} from "@executor/executor"
import { Clock, Context, Deferred, Duration, Effect, Either, Layer, Metric, Option, Schedule, type Scope, Schema } from "effect"
import * as Api from "./Api.js"
import * as ApiServerCheck from "./ApiServerCheck.js"
import * as Informer from "./Informer.js"
import { KubeConnection } from "./KubeConfig.js"
import * as Wire from "./Wire.js"

/** `source.component` and `reportingComponent` of the Events the executor records. */
export const eventComponent = "agent-task-executor"

export interface Options {
  readonly namespace: string
  readonly names: Labels.Names
  /** Per API call; default 30 s. */
  readonly requestTimeout?: Duration.DurationInput | undefined
  /** A full, diffed relist of every informer this often; default 5 minutes (REF's resync). */
  readonly resyncInterval?: Duration.DurationInput | undefined
  readonly restartSchedule?: Schedule.Schedule<unknown, Informer.InformerFailure> | undefined
  /** `reportingInstance` of recorded Events; default the host (pod) name. */
  readonly instance?: string | undefined
  /**
   * Before the informers list: wait until the API server is usable (credentials present and
   * accepted, the Config CRD served), logging what is wrong meanwhile (`ApiServerCheck`). `run` does.
   */
  readonly awaitApiServer?: boolean | undefined
}

export interface KubeClusterShape {
  readonly namespace: string
  readonly watch: ClusterWatchShape
  readonly ops: ClusterOpsShape
  readonly informers: {
    readonly jobs: Informer.InformerShape<Kube.Job>
    readonly pods: Informer.InformerShape<Kube.Pod>
    readonly configs: Informer.InformerShape<ConfigObject>
    readonly evictions: Informer.InformerShape<Kube.Event>
  }
}

/** The real cluster adapter with its informers exposed (tests force relists through them). */
export class KubeCluster extends Context.Tag("executor/kube/KubeCluster")<KubeCluster, KubeClusterShape>() {}

const ConfigObjectWire = Schema.Struct({ metadata: Kube.ObjectMeta, spec: Schema.optional(Schema.Unknown) })
const decodeConfigObject = (wire: unknown) =>
  Either.map(
    Schema.decodeUnknownEither(ConfigObjectWire)(wire),
    (config): ConfigObject => ({ metadata: config.metadata, spec: config.spec })
  )

const isList = (value: unknown): value is k8s.KubernetesListObject<k8s.KubernetesObject> =>
  typeof value === "object" && value !== null && Array.isArray((value as { readonly items?: unknown }).items)

const compare = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)
const byCreation = (a: Kube.Job, b: Kube.Job): number =>
  compare(a.metadata.creationTimestamp ?? "", b.metadata.creationTimestamp ?? "") || compare(a.metadata.name, b.metadata.name)

interface Owned {
  readonly metadata?: { readonly ownerReferences?: ReadonlyArray<{ readonly kind?: string; readonly name?: string }> | undefined } | undefined
}
const ownedBy = (jobName: string) => (object: Owned): boolean =>
  object.metadata?.ownerReferences?.some((ref) => ref.kind === "Job" && ref.name === jobName) ?? false
/** The Jobs a pod belongs to: the keys of the pod cache's index. */
const ownerJobs = (object: Owned): ReadonlyArray<string> =>
  object.metadata?.ownerReferences?.flatMap((ref) => (ref.kind === "Job" && ref.name !== undefined ? [ref.name] : [])) ?? []

/** A 409 only means "re-read and try again": retry quickly, a bounded number of times. */
const finalizerConflictRetry = Schedule.exponential("10 millis").pipe(
  Schedule.union(Schedule.spaced("100 millis")),
  Schedule.jittered,
  Schedule.intersect(Schedule.recurs(10))
)

/** Events may not carry longer texts (API validation of `message`); keep the head. */
const clip = (text: string, max: number): string => (text.length <= max ? text : `${text.slice(0, max - 1)}…`)

export const make = (options: Options): Effect.Effect<KubeClusterShape, never, KubeConnection | Scope.Scope> =>
  Effect.gen(function*() {
    const connection = yield* KubeConnection
    const { kubeConfig } = connection
    const { names, namespace: ns } = options
    const timeout = options.requestTimeout ?? Api.defaultRequestTimeout
    const usable = yield* Deferred.make<void>()
    if (options.awaitApiServer === true) {
      yield* ApiServerCheck.awaitUsable(connection, { apiGroup: names.apiGroup, timeout }).pipe(
        Effect.zipRight(Deferred.succeed(usable, undefined)),
        Effect.forkScoped
      )
    } else {
      yield* Deferred.succeed(usable, undefined)
    }
    const batch = kubeConfig.makeApiClient(k8s.BatchV1Api)
    const core = kubeConfig.makeApiClient(k8s.CoreV1Api)
    const custom = kubeConfig.makeApiClient(k8s.CustomObjectsApi)
    const selector = names.taskIdLabel
    const resyncInterval = options.resyncInterval ?? Duration.minutes(5)
    const common = { restartSchedule: options.restartSchedule, resyncInterval, startAfter: Deferred.await(usable) }

    const jobs = yield* Informer.make<Kube.Job>(kubeConfig, {
      ...common,
      kind: "Job",
      path: `/apis/batch/v1/namespaces/${ns}/jobs`,
      labelSelector: selector,
      list: Api.call("listJobs", ns, (o) => batch.listNamespacedJob({ namespace: ns, labelSelector: selector }, o), {
        timeout
      }),
      toWire: (object) => Wire.toWire(object, "V1Job"),
      decode: Kube.decodeJob
    })
    const pods = yield* Informer.make<Kube.Pod>(kubeConfig, {
      ...common,
      kind: "Pod",
      path: `/api/v1/namespaces/${ns}/pods`,
      labelSelector: selector,
      list: Api.call("listPods", ns, (o) => core.listNamespacedPod({ namespace: ns, labelSelector: selector }, o), {
        timeout
      }),
      toWire: (object) => Wire.toWire(object, "V1Pod"),
      decode: Kube.decodePod,
      indexBy: ownerJobs
    })
    const configs = yield* Informer.make<ConfigObject>(kubeConfig, {
      ...common,
      kind: "Config",
      path: `/apis/${names.apiGroup}/v1/namespaces/${ns}/configs`,
      list: Api.call("listConfigs", ns, async (o) => {
        const list: unknown = await custom.listNamespacedCustomObject(
          { group: names.apiGroup, version: "v1", namespace: ns, plural: "configs" },
          o
        )
        if (!isList(list)) throw new Error("the Config list has no items")
        return list
      }, { timeout }),
      // Custom objects are never converted to model classes: they are wire JSON already.
      toWire: (object) => object,
      decode: decodeConfigObject
    })

    // The kubelet's Evicted Events only: a field selector keeps the rest of the namespace's Events out.
    const evictions = yield* Informer.make<Kube.Event>(kubeConfig, {
      ...common,
      kind: "Event",
      path: `/api/v1/namespaces/${ns}/events`,
      fieldSelector: Kube.podEvictionSelector,
      list: Api.call(
        "listEvents",
        ns,
        (o) => core.listNamespacedEvent({ namespace: ns, fieldSelector: Kube.podEvictionSelector }, o),
        { timeout }
      ),
      toWire: (object) => Wire.toWire(object, "CoreV1Event"),
      decode: Kube.decodeEvent
    })

    const call = <A>(
      operation: string,
      target: string,
      request: (o: k8s.ConfigurationOptions) => Promise<A>,
      patch?: k8s.PatchStrategy
    ) =>
      Api.call(operation, target, request, { timeout, ...(patch === undefined ? {} : { contentType: patch }) })

    const readJob = (name: string) =>
      call("readJob", name, (o) => batch.readNamespacedJob({ name, namespace: ns }, o))

    /** A live object through the domain Schema; one that does not decode is an error, not a gap. */
    const decodeLive = <A>(operation: string, target: string, decode: (wire: unknown) => Either.Either<A, unknown>, type: string) =>
      (object: k8s.KubernetesObject): Effect.Effect<A, ClusterError> =>
        Either.match(Either.flatMap(Either.try(() => Wire.toWire(object, type)), decode), {
          onLeft: () =>
            Effect.fail(new ClusterError({ operation, target, transient: false, message: `a ${type} that does not decode` })),
          onRight: Effect.succeed
        })

    const readJobLive = (name: string): Effect.Effect<Option.Option<Kube.Job>, ClusterError> =>
      readJob(name).pipe(
        Effect.map(Option.some),
        Effect.catchIf(Api.isNotFound, () => Effect.succeed(Option.none<k8s.V1Job>())),
        Effect.mapError(Api.toClusterError),
        Effect.flatMap(Option.match({
          onNone: () => Effect.succeedNone,
          onSome: (job) => Effect.asSome(decodeLive("readJob", name, Kube.decodeJob, "V1Job")(job))
        }))
      )

    /**
     * Listed objects through a domain Schema. One that does not decode is skipped and counted like
     * an informer's: a pod the schema cannot read must not block every verdict on its Job.
     */
    const decodeListed = <A>(kind: string, type: string, decode: (wire: unknown) => Either.Either<A, unknown>) =>
      (items: ReadonlyArray<k8s.KubernetesObject>): Effect.Effect<ReadonlyArray<A>> =>
        Effect.forEach(items, (item) =>
          Either.match(Either.flatMap(Either.try(() => Wire.toWire(item, type)), decode), {
            onRight: (value) => Effect.succeed([value]),
            onLeft: () =>
              Effect.zipRight(
                Metric.increment(Metric.tagged(Informer.decodeFailures, "kind", kind)),
                Effect.logWarning(`skipped a listed ${kind} that does not decode`).pipe(
                  Effect.annotateLogs({ event: "watch_decode_failed", kind, name: item.metadata?.name ?? "" }),
                  Effect.as([])
                )
              )
          })).pipe(Effect.map((lists) => lists.flat()))

    const readPodsOfJobLive = (jobName: string, taskId: string): Effect.Effect<ReadonlyArray<Kube.Pod>, ClusterError> =>
      call("listPods", jobName, (o) => core.listNamespacedPod({ namespace: ns, labelSelector: `${selector}=${taskId}` }, o)).pipe(
        Effect.mapError(Api.toClusterError),
        Effect.flatMap((list) => decodeListed<Kube.Pod>("Pod", "V1Pod", Kube.decodePod)(list.items.filter(ownedBy(jobName))))
      )

    const readEventsLive = (fieldSelector: string): Effect.Effect<ReadonlyArray<Kube.Event>, ClusterError> =>
      call("listEvents", fieldSelector, (o) => core.listNamespacedEvent({ namespace: ns, fieldSelector }, o)).pipe(
        Effect.mapError(Api.toClusterError),
        Effect.flatMap((list) => decodeListed<Kube.Event>("Event", "CoreV1Event", Kube.decodeEvent)(list.items))
      )

    const watch: ClusterWatchShape = {
      jobEvents: jobs.events,
      podEvents: pods.events,
      configEvents: configs.events,
      evictionEvents: evictions.events,
      synced: Effect.all([jobs.synced, pods.synced, configs.synced, evictions.synced], {
        concurrency: "unbounded",
        discard: true
      }),
      job: jobs.get,
      readJob: readJobLive,
      readPodsOfJob: readPodsOfJobLive,
      // the informer selects on the task-id label: every cached Job carries it
      jobs: Effect.map(jobs.list, (all) => [...all].sort(byCreation)),
      podsOfJob: pods.byIndex,
      evictions: evictions.list,
      readEvents: readEventsLive
    }

    // --- writes ----------------------------------------------------------------------------

    /**
     * Read, change the finalizer list, write it back with a merge patch that carries the read
     * `resourceVersion`: a concurrent change makes the API server answer 409 and we start over.
     */
    const updateFinalizers = (
      operation: string,
      name: string,
      change: (current: ReadonlyArray<string>) => ReadonlyArray<string> | undefined
    ): Effect.Effect<void, ClusterError | NotFound> =>
      Effect.gen(function*() {
        const job = yield* readJob(name)
        const next = change(job.metadata?.finalizers ?? [])
        if (next === undefined) return
        const patch = {
          metadata: { resourceVersion: job.metadata?.resourceVersion, finalizers: next.length === 0 ? null : next }
        }
        yield* call(operation, name, (o) => batch.patchNamespacedJob({ name, namespace: ns, body: patch }, o), k8s.PatchStrategy.MergePatch)
      }).pipe(
        Effect.retry({ schedule: finalizerConflictRetry, while: Api.isConflict }),
        Effect.mapError(Api.toPortError("Job", name))
      )

    const instance = options.instance ?? hostname()
    let eventCounter = 0

    const ops: ClusterOpsShape = {
      createJob: Effect.fn("ClusterOps.createJob")(function*(manifest) {
        const name = manifest.metadata.name
        yield* Effect.annotateCurrentSpan({ namespace: ns, name })
        // Through the model classes, whose serializer knows every field's wire name.
        const body = Wire.fromWire<k8s.V1Job>(manifest, "V1Job")
        return yield* call("createJob", name, (o) => batch.createNamespacedJob({ namespace: ns, body }, o)).pipe(
          Effect.as<CreateOutcome>("created"),
          Effect.catchIf(Api.isConflict, () => Effect.succeed<CreateOutcome>("exists")),
          Effect.mapError(Api.toClusterError)
        )
      }),

      deleteJob: Effect.fn("ClusterOps.deleteJob")(function*(name: string) {
        yield* Effect.annotateCurrentSpan({ namespace: ns, name })
        yield* call("deleteJob", name, (o) =>
          batch.deleteNamespacedJob({ name, namespace: ns, propagationPolicy: "Background" }, o)).pipe(
            Effect.mapError(Api.toPortError("Job", name))
          )
      }),

      annotateJob: Effect.fn("ClusterOps.annotateJob")(function*(name: string, key: string, value: string) {
        yield* Effect.annotateCurrentSpan({ namespace: ns, name })
        const patch = { metadata: { annotations: { [key]: value } } }
        yield* call("annotateJob", name, (o) => batch.patchNamespacedJob({ name, namespace: ns, body: patch }, o), k8s.PatchStrategy.MergePatch).pipe(
          Effect.mapError(Api.toPortError("Job", name))
        )
      }),

      addJobFinalizer: Effect.fn("ClusterOps.addJobFinalizer")(function*(name: string, finalizer: string) {
        yield* Effect.annotateCurrentSpan({ namespace: ns, name })
        yield* updateFinalizers("addJobFinalizer", name, (current) =>
          current.includes(finalizer) ? undefined : [...current, finalizer])
      }),

      removeJobFinalizer: Effect.fn("ClusterOps.removeJobFinalizer")(function*(name: string, finalizer: string) {
        yield* Effect.annotateCurrentSpan({ namespace: ns, name })
        yield* updateFinalizers("removeJobFinalizer", name, (current) =>
          current.includes(finalizer) ? current.filter((f) => f !== finalizer) : undefined)
      }),

      recordJobEvent: Effect.fn("ClusterOps.recordJobEvent")(function*(event: JobEvent) {
        yield* Effect.annotateCurrentSpan({ namespace: ns, name: event.jobName })
        const now = yield* Clock.currentTimeMillis
        // Like client-go's recorder: `<object>.<hex nanos>`; a retried call after a lost answer hits 409.
        const unique = (BigInt(now) * 1_000_000n + BigInt(eventCounter++ % 1_000_000)).toString(16)
        const body: k8s.CoreV1Event = {
          apiVersion: "v1",
          kind: "Event",
          metadata: { name: `${event.jobName}.${unique}`, namespace: ns },
          involvedObject: {
            apiVersion: "batch/v1",
            kind: "Job",
            namespace: ns,
            name: event.jobName,
            ...(event.jobUid === undefined ? {} : { uid: event.jobUid })
          },
          reason: clip(event.reason, 128),
          message: clip(event.message, 1024),
          type: event.type,
          count: 1,
          source: { component: eventComponent },
          firstTimestamp: new Date(now),
          lastTimestamp: new Date(now),
          eventTime: new k8s.V1MicroTime(now),
          action: clip(event.reason, 128),
          reportingComponent: eventComponent,
          reportingInstance: clip(instance, 128)
        }
        yield* call("recordJobEvent", event.jobName, (o) => core.createNamespacedEvent({ namespace: ns, body }, o)).pipe(
          Effect.asVoid,
          Effect.catchIf(Api.isConflict, () => Effect.void),
          Effect.mapError(Api.toClusterError)
        )
      })
    }

    return { namespace: ns, watch, ops, informers: { jobs, pods, configs, evictions } }
  }).pipe(Effect.annotateLogs({ service: "KubeCluster" }))

/** `ClusterWatch` and `ClusterOps` (and `KubeCluster`) against the API server of `KubeConnection`. */
export const layer = (options: Options): Layer.Layer<ClusterWatch | ClusterOps | KubeCluster, never, KubeConnection> =>
  Layer.scopedContext(
    Effect.map(make(options), (cluster) =>
      Context.make(KubeCluster, cluster).pipe(
        Context.add(ClusterWatch, cluster.watch),
        Context.add(ClusterOps, cluster.ops)
      ))
  )

/** As `layer`, with the namespace and names of `ExecutorSettings` unless overridden. */
export const layerFromSettings = (
  overrides: Partial<Options> = {}
): Layer.Layer<ClusterWatch | ClusterOps | KubeCluster, never, KubeConnection | ExecutorSettings> =>
  Layer.unwrapEffect(
    Effect.map(ExecutorSettings, (settings) =>
      layer({ namespace: settings.namespace, names: settings.names, ...overrides }))
  )
