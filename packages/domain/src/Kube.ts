import { Option, Schema } from "effect"
import { type Millis, parseTimestamp } from "./Time.js"

/** The parts of Kubernetes objects the executor reads. Unknown fields are ignored on decode. */
const StringMap = Schema.Record({ key: Schema.String, value: Schema.String })

export const OwnerReference = Schema.Struct({
  apiVersion: Schema.optional(Schema.String),
  kind: Schema.String,
  name: Schema.String,
  uid: Schema.optional(Schema.String),
  controller: Schema.optional(Schema.Boolean)
})

export const ObjectMeta = Schema.Struct({
  name: Schema.String,
  namespace: Schema.optional(Schema.String),
  uid: Schema.optional(Schema.String),
  resourceVersion: Schema.optional(Schema.String),
  labels: Schema.optional(StringMap),
  annotations: Schema.optional(StringMap),
  finalizers: Schema.optional(Schema.Array(Schema.String)),
  ownerReferences: Schema.optional(Schema.Array(OwnerReference)),
  creationTimestamp: Schema.optional(Schema.String),
  deletionTimestamp: Schema.optional(Schema.String)
})
export type ObjectMeta = typeof ObjectMeta.Type

export const Condition = Schema.Struct({
  type: Schema.String,
  status: Schema.String,
  reason: Schema.optional(Schema.String),
  message: Schema.optional(Schema.String),
  lastTransitionTime: Schema.optional(Schema.String)
})
export type Condition = typeof Condition.Type

export const Job = Schema.Struct({
  metadata: ObjectMeta,
  spec: Schema.optional(
    Schema.Struct({
      activeDeadlineSeconds: Schema.optional(Schema.Number),
      backoffLimit: Schema.optional(Schema.Number),
      ttlSecondsAfterFinished: Schema.optional(Schema.Number)
    })
  ),
  status: Schema.optional(
    Schema.Struct({
      conditions: Schema.optional(Schema.Array(Condition)),
      active: Schema.optional(Schema.Number),
      succeeded: Schema.optional(Schema.Number),
      failed: Schema.optional(Schema.Number),
      startTime: Schema.optional(Schema.String),
      completionTime: Schema.optional(Schema.String)
    })
  )
})
export type Job = typeof Job.Type

export const ContainerState = Schema.Struct({
  waiting: Schema.optional(Schema.Struct({ reason: Schema.optional(Schema.String), message: Schema.optional(Schema.String) })),
  running: Schema.optional(Schema.Struct({ startedAt: Schema.optional(Schema.String) })),
  terminated: Schema.optional(
    Schema.Struct({
      exitCode: Schema.Number,
      reason: Schema.optional(Schema.String),
      message: Schema.optional(Schema.String),
      finishedAt: Schema.optional(Schema.String)
    })
  )
})

export const ContainerStatus = Schema.Struct({
  name: Schema.String,
  image: Schema.optional(Schema.String),
  state: Schema.optional(ContainerState)
})
export type ContainerStatus = typeof ContainerStatus.Type

export const Pod = Schema.Struct({
  metadata: ObjectMeta,
  spec: Schema.optional(
    Schema.Struct({
      containers: Schema.optional(Schema.Array(Schema.Struct({ name: Schema.String, image: Schema.optional(Schema.String) })))
    })
  ),
  status: Schema.optional(
    Schema.Struct({
      phase: Schema.optional(Schema.String),
      reason: Schema.optional(Schema.String),
      message: Schema.optional(Schema.String),
      conditions: Schema.optional(Schema.Array(Condition)),
      containerStatuses: Schema.optional(Schema.Array(ContainerStatus)),
      initContainerStatuses: Schema.optional(Schema.Array(ContainerStatus))
    })
  )
})
export type Pod = typeof Pod.Type

export const decodeJob = Schema.decodeUnknownEither(Job)
export const decodePod = Schema.decodeUnknownEither(Pod)

const trueCondition = (conditions: ReadonlyArray<Condition> | undefined, type: string) =>
  Option.fromNullable(conditions?.find((c) => c.type === type && c.status === "True"))

/** Condition `Failed=True`. Checked before success: a deadline kill leaves all counters at zero. */
export const jobFailedCondition = (job: Job): Option.Option<Condition> =>
  trueCondition(job.status?.conditions, "Failed")

export const jobSucceeded = (job: Job): boolean =>
  Option.isSome(trueCondition(job.status?.conditions, "Complete")) || (job.status?.succeeded ?? 0) > 0

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
