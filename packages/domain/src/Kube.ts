import { Option, Schema } from "effect"
import { type Millis, parseTimestamp } from "./Time.js"

/**
 * The parts of Kubernetes objects the executor reads. Unknown fields are ignored on decode. Every
 * optional field also accepts `null`, read as absent: the API server and the kubelet write `null`
 * for unset times (`terminated.startedAt` of a container that never started, `lastProbeTime`,
 * `eventTime` of a core/v1 Event) and client-node's serializer keeps them.
 */
const optional = <S extends Schema.Schema.Any>(schema: S) => Schema.optionalWith(schema, { nullable: true })

const StringMap = Schema.Record({ key: Schema.String, value: Schema.String })

export const OwnerReference = Schema.Struct({
  apiVersion: optional(Schema.String),
  kind: Schema.String,
  name: Schema.String,
  uid: optional(Schema.String),
  controller: optional(Schema.Boolean)
})

export const ObjectMeta = Schema.Struct({
  name: Schema.String,
  namespace: optional(Schema.String),
  uid: optional(Schema.String),
  resourceVersion: optional(Schema.String),
  labels: optional(StringMap),
  annotations: optional(StringMap),
  finalizers: optional(Schema.Array(Schema.String)),
  ownerReferences: optional(Schema.Array(OwnerReference)),
  creationTimestamp: optional(Schema.String),
  deletionTimestamp: optional(Schema.String)
})
export type ObjectMeta = typeof ObjectMeta.Type

export const Condition = Schema.Struct({
  type: Schema.String,
  status: Schema.String,
  reason: optional(Schema.String),
  message: optional(Schema.String),
  lastTransitionTime: optional(Schema.String)
})
export type Condition = typeof Condition.Type

export const Job = Schema.Struct({
  metadata: ObjectMeta,
  spec: optional(
    Schema.Struct({
      activeDeadlineSeconds: optional(Schema.Number),
      backoffLimit: optional(Schema.Number),
      ttlSecondsAfterFinished: optional(Schema.Number)
    })
  ),
  status: optional(
    Schema.Struct({
      conditions: optional(Schema.Array(Condition)),
      active: optional(Schema.Number),
      succeeded: optional(Schema.Number),
      failed: optional(Schema.Number),
      startTime: optional(Schema.String),
      completionTime: optional(Schema.String)
    })
  )
})
export type Job = typeof Job.Type

export const TerminatedState = Schema.Struct({
  exitCode: Schema.Number,
  reason: optional(Schema.String),
  message: optional(Schema.String),
  startedAt: optional(Schema.String),
  finishedAt: optional(Schema.String)
})
export type TerminatedState = typeof TerminatedState.Type

export const ContainerState = Schema.Struct({
  waiting: optional(Schema.Struct({ reason: optional(Schema.String), message: optional(Schema.String) })),
  running: optional(Schema.Struct({ startedAt: optional(Schema.String) })),
  terminated: optional(TerminatedState)
})

export const ContainerStatus = Schema.Struct({
  name: Schema.String,
  image: optional(Schema.String),
  state: optional(ContainerState),
  /** The previous state: where the kubelet keeps `ContainerStatusUnknown` of a container it lost. */
  lastState: optional(ContainerState)
})
export type ContainerStatus = typeof ContainerStatus.Type

export const Pod = Schema.Struct({
  metadata: ObjectMeta,
  spec: optional(
    Schema.Struct({
      restartPolicy: optional(Schema.String),
      containers: optional(Schema.Array(Schema.Struct({ name: Schema.String, image: optional(Schema.String) })))
    })
  ),
  status: optional(
    Schema.Struct({
      phase: optional(Schema.String),
      reason: optional(Schema.String),
      message: optional(Schema.String),
      conditions: optional(Schema.Array(Condition)),
      containerStatuses: optional(Schema.Array(ContainerStatus)),
      initContainerStatuses: optional(Schema.Array(ContainerStatus))
    })
  )
})
export type Pod = typeof Pod.Type

/** A core/v1 Event: what the kubelet and the controllers say about an object. */
export const Event = Schema.Struct({
  metadata: ObjectMeta,
  involvedObject: Schema.Struct({
    kind: optional(Schema.String),
    name: optional(Schema.String),
    namespace: optional(Schema.String),
    uid: optional(Schema.String)
  }),
  reason: optional(Schema.String),
  message: optional(Schema.String),
  type: optional(Schema.String),
  count: optional(Schema.Number),
  firstTimestamp: optional(Schema.String),
  lastTimestamp: optional(Schema.String),
  eventTime: optional(Schema.String),
  series: optional(Schema.Struct({ count: optional(Schema.Number), lastObservedTime: optional(Schema.String) })),
  source: optional(Schema.Struct({ component: optional(Schema.String), host: optional(Schema.String) })),
  reportingComponent: optional(Schema.String)
})
export type Event = typeof Event.Type

export const decodeJob = Schema.decodeUnknownEither(Job)
export const decodePod = Schema.decodeUnknownEither(Pod)
export const decodeEvent = Schema.decodeUnknownEither(Event)

/** The field selector of the Events that tell a pod was evicted (the kubelet's eviction manager writes them). */
export const podEvictionSelector = "involvedObject.kind=Pod,reason=Evicted"

/** The field selector of the job controller's pod creation failures for the Job `jobName`. */
export const jobCreateFailureSelector = (jobName: string): string =>
  `involvedObject.kind=Job,involvedObject.name=${jobName},reason=FailedCreate`

/** When an Event was last seen: an aggregated Event keeps counting on the same object. */
export const eventTime = (event: Event): Option.Option<Millis> =>
  Option.firstSomeOf([
    parseTimestamp(event.series?.lastObservedTime),
    parseTimestamp(event.lastTimestamp),
    parseTimestamp(event.eventTime),
    parseTimestamp(event.firstTimestamp),
    parseTimestamp(event.metadata.creationTimestamp)
  ])

const trueCondition = (conditions: ReadonlyArray<Condition> | undefined, type: string) =>
  Option.fromNullable(conditions?.find((c) => c.type === type && c.status === "True"))

/** Condition `Failed=True`. */
export const jobFailedCondition = (job: Job): Option.Option<Condition> =>
  trueCondition(job.status?.conditions, "Failed")

/**
 * `Failed=True`, else `FailureTarget=True`: the job controller writes `FailureTarget` the moment it
 * decides the Job failed (at the deadline, at the backoff limit) and `Failed` only once its pods
 * have ended, which is a whole termination grace later for a process that ignores SIGTERM.
 */
export const jobFailure = (job: Job): Option.Option<Condition> =>
  Option.orElse(jobFailedCondition(job), () => trueCondition(job.status?.conditions, "FailureTarget"))

/**
 * `Complete=True` or a succeeded pod, and no failure: a pod killed at the deadline whose process
 * exits 0 on SIGTERM ends `Succeeded` while its Job fails `DeadlineExceeded`.
 */
export const jobSucceeded = (job: Job): boolean =>
  Option.isNone(jobFailure(job)) &&
  (Option.isSome(trueCondition(job.status?.conditions, "Complete")) || (job.status?.succeeded ?? 0) > 0)

/** A finished Job no longer occupies its task or its agent's concurrency slot (same predicate as REF). */
export const jobFinished = (job: Job): boolean =>
  Option.isSome(jobFailedCondition(job)) ||
  jobSucceeded(job) ||
  ((job.status?.failed ?? 0) > 0 && (job.status?.active ?? 0) === 0)

export const jobActive = (job: Job): boolean => !jobFinished(job)

export const isDeleting = (meta: ObjectMeta): boolean => meta.deletionTimestamp !== undefined

export const createdAt = (meta: ObjectMeta): Option.Option<Millis> => parseTimestamp(meta.creationTimestamp)

export const label = (meta: ObjectMeta, key: string): string => meta.labels?.[key] ?? ""

export const ownerJobName = (pod: Pod): Option.Option<string> =>
  Option.fromNullable(pod.metadata.ownerReferences?.find((ref) => ref.kind === "Job")?.name)

export const podCondition = (pod: Pod, type: string): Option.Option<Condition> =>
  Option.fromNullable(pod.status?.conditions?.find((c) => c.type === type))

/** The suffix the API server appends to a `generateName` (5 characters, no vowels). */
const generatedSuffix = /^[bcdfghjklmnpqrstvwxz2456789]{5}$/

/**
 * True when `podName` is a name the job controller generates for the pods of `jobName`
 * (`generateName: <job>-`, cut to 58 characters): how an Event about a pod that is already gone
 * is still tied to its Job.
 */
export const isPodNameOfJob = (podName: string, jobName: string): boolean => {
  const prefix = `${jobName}-`.slice(0, 58)
  return podName.startsWith(prefix) && generatedSuffix.test(podName.slice(prefix.length))
}
