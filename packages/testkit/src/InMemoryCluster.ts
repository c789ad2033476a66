import { Cause, Context, DateTime, Duration, Effect, Either, Exit, FiberSet, Layer, Option, Queue, type Scope, Stream } from "effect"
import { Kube, type Labels, Time } from "@executor/domain"
import {
  ClusterError,
  ClusterOps,
  type ClusterOpsShape,
  ClusterWatch,
  type ClusterWatchShape,
  type ConfigObject,
  type CreateOutcome,
  type JobEvent,
  NotFound,
  type WatchEvent
} from "@executor/executor"
import * as PodBehaviour from "./PodBehaviour.js"

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/** The `ClusterOps` calls, by name: the unit of failure injection and of the write hooks. */
export type WriteOperation =
  | "createJob"
  | "deleteJob"
  | "annotateJob"
  | "addJobFinalizer"
  | "removeJobFinalizer"
  | "recordJobEvent"

export interface WriteAttempt {
  readonly operation: WriteOperation
  /** The Job name the call is about. */
  readonly target: string
}

/**
 * Runs around a `ClusterOps` write. A `before` hook that fails or interrupts stops the write (an
 * executor "crashing" before that step); an `after` hook runs once the write is applied (a lost
 * response).
 */
export type WriteHook = (write: WriteAttempt) => Effect.Effect<void, ClusterError>

export interface WriteRecord extends WriteAttempt {
  /** Epoch millis when the call started. */
  readonly at: number
  readonly outcome: "ok" | "failed" | "interrupted"
}

/** Lifecycle notices for a journal: a Job object appeared, or is finally gone (after finalizers). */
export type ClusterNotice =
  | {
      readonly _tag: "JobCreated"
      readonly taskId: string
      readonly jobName: string
      readonly jobUid: string
      readonly attempt: number
      readonly at: number
    }
  | {
      readonly _tag: "JobDeleted"
      readonly taskId: string
      readonly jobName: string
      readonly jobUid: string
      readonly at: number
    }

/** A Kubernetes Event about a Job. */
export interface RecordedEvent {
  readonly name: string
  readonly involvedObject: {
    readonly kind: "Job"
    readonly namespace: string
    readonly name: string
    readonly uid: string | undefined
  }
  readonly reason: string
  readonly message: string
  readonly type: "Normal" | "Warning"
  /** `executor` for `ClusterOps.recordJobEvent`, `job-controller` for the simulated controller. */
  readonly source: string
  readonly at: number
  readonly timestamp: string
}

/** Any JSON object with a name, as `kubectl create -f` takes it. */
export interface AnyManifest {
  readonly metadata: { readonly name: string }
  readonly [key: string]: unknown
}

export type JobStatus = NonNullable<Kube.Job["status"]>
export type PodStatus = NonNullable<Kube.Pod["status"]>

export interface Options {
  readonly namespace: string
  readonly names: Labels.Names
  readonly podBehaviour: PodBehaviour.Resolver
  readonly beforeWrite?: WriteHook
  readonly afterWrite?: WriteHook
}

export interface InMemoryClusterShape {
  readonly namespace: string
  readonly watch: ClusterWatchShape
  readonly ops: ClusterOpsShape
  /** `ClusterWatch` and `ClusterOps` backed by this cluster; the cluster outlives every use of it. */
  readonly layer: Layer.Layer<ClusterWatch | ClusterOps>

  /** While down, every `ClusterOps` write fails with a transient `ClusterError`; caches stay readable. */
  readonly setApiDown: (down: boolean) => Effect.Effect<void>
  /** The next `count` (default 1) calls of `operation` fail with `error` (default: a transient `ClusterError`). */
  readonly failNext: (operation: WriteOperation, error?: ClusterError, count?: number) => Effect.Effect<void>
  readonly setBeforeWrite: (hook: WriteHook | undefined) => Effect.Effect<void>
  readonly setAfterWrite: (hook: WriteHook | undefined) => Effect.Effect<void>
  /** Every `ClusterOps` write call so far, in call order. */
  readonly writes: Effect.Effect<ReadonlyArray<WriteRecord>>

  /** Operator actions and test controls: never subject to failure injection or hooks. */
  /** `kubectl create` of any Job manifest (unlabelled, other backoffLimit, ...); validated like `ClusterOps.createJob`. */
  readonly createJob: (manifest: AnyManifest) => Effect.Effect<CreateOutcome, ClusterError>
  readonly putPod: (pod: Kube.Pod) => Effect.Effect<Kube.Pod>
  /** Merge-patches the pod's `status` (top-level keys replace). */
  readonly patchPodStatus: (name: string, status: PodStatus) => Effect.Effect<Kube.Pod, NotFound>
  /** Merge-patches the Job's `status` (top-level keys replace). */
  readonly patchJobStatus: (name: string, status: JobStatus) => Effect.Effect<Kube.Job, NotFound>
  readonly deletePod: (name: string) => Effect.Effect<void, NotFound>
  /** `kubectl delete job` (background propagation, finalizers honoured). */
  readonly deleteJob: (name: string) => Effect.Effect<void, NotFound>
  /** The documented clean-up: removes every finalizer of the Job. */
  readonly clearJobFinalizers: (name: string) => Effect.Effect<void, NotFound>
  /** Creates or updates a `Config` custom resource. */
  readonly applyConfig: (name: string, spec: unknown) => Effect.Effect<ConfigObject>
  readonly deleteConfig: (name: string) => Effect.Effect<void, NotFound>

  /** Every Job in the namespace (labelled or not), in creation order. */
  readonly jobsSnapshot: Effect.Effect<ReadonlyArray<Kube.Job>>
  readonly podsSnapshot: Effect.Effect<ReadonlyArray<Kube.Pod>>
  readonly configsSnapshot: Effect.Effect<ReadonlyArray<ConfigObject>>
  /** The newest Job of a task (task-id label) that still exists. */
  readonly currentJobOfTask: (taskId: string) => Effect.Effect<Option.Option<Kube.Job>>
  readonly events: Effect.Effect<ReadonlyArray<RecordedEvent>>
  /** Replays every notice so far, then follows live ones. */
  readonly notices: Stream.Stream<ClusterNotice>
}

/** The in-memory namespace as a service, for tests that reach its controls through the context. */
export class InMemoryCluster extends Context.Tag("executor/testkit/InMemoryCluster")<
  InMemoryCluster,
  InMemoryClusterShape
>() {}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

type Rec = Readonly<Record<string, unknown>>

const rec = (value: unknown): Rec =>
  typeof value === "object" && value !== null && !Array.isArray(value) ? (value as Rec) : {}

const asArray = (value: unknown): ReadonlyArray<unknown> => (Array.isArray(value) ? value : [])

const stringMap = (value: unknown): Record<string, string> =>
  Object.fromEntries(Object.entries(rec(value)).filter((entry): entry is [string, string] => typeof entry[1] === "string"))

interface ContainerSpec {
  readonly name: string
  readonly image?: string | undefined
}

const isContainerSpec = (value: unknown): value is ContainerSpec => {
  const r = rec(value)
  return typeof r["name"] === "string" && (r["image"] === undefined || typeof r["image"] === "string")
}

const isJob = (value: unknown): value is Kube.Job => Either.isRight(Kube.decodeJob(value))

/** RFC3339; whole seconds print like the API server (`...:05Z`), sub-second instants keep their millis. */
export const formatTimestamp = (millis: number): string => {
  const iso = DateTime.formatIso(DateTime.unsafeMake(millis))
  return iso.endsWith(".000Z") ? iso.replace(".000Z", "Z") : iso
}

const canonicalJson = (value: unknown): string =>
  JSON.stringify(value, (_key, v: unknown) =>
    typeof v === "object" && v !== null && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v
  ) ?? "null"

const dns1123Label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

/** The alphabet of Kubernetes' generated name suffixes (no vowels, no confusable digits). */
const suffixAlphabet = "bcdfghjklmnpqrstvwxz2456789"

const fnv1a = (text: string): number => {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash
}

const suffix = (seed: string): string => {
  let n = fnv1a(seed)
  let out = ""
  for (let i = 0; i < 5; i++) {
    out += suffixAlphabet[n % suffixAlphabet.length] ?? "b"
    n = Math.floor(n / suffixAlphabet.length)
  }
  return out
}

const hasTrueCondition = (conditions: ReadonlyArray<Kube.Condition> | undefined, type: string): boolean =>
  conditions?.some((c) => c.type === type && c.status === "True") ?? false

/** Finished as the TTL controller sees it: a `Complete` or `Failed` condition. */
const jobDone = (job: Kube.Job): boolean =>
  hasTrueCondition(job.status?.conditions, "Complete") || hasTrueCondition(job.status?.conditions, "Failed")

/** Finished, or on its way there (a terminal interim condition is set). */
const jobSettling = (job: Kube.Job): boolean =>
  jobDone(job) ||
  hasTrueCondition(job.status?.conditions, "FailureTarget") ||
  hasTrueCondition(job.status?.conditions, "SuccessCriteriaMet")

const podTerminal = (pod: Kube.Pod): boolean => pod.status?.phase === "Succeeded" || pod.status?.phase === "Failed"

const condition = (
  type: string,
  status: "True" | "False",
  at: string,
  reason?: string,
  message?: string
): Kube.Condition => ({
  type,
  status,
  lastTransitionTime: at,
  ...(reason === undefined ? {} : { reason }),
  ...(message === undefined ? {} : { message })
})

/** Sets a condition, keeping the existing entry (and its transition time) when the status is unchanged. */
const withCondition = (
  conditions: ReadonlyArray<Kube.Condition> | undefined,
  next: Kube.Condition
): ReadonlyArray<Kube.Condition> => {
  const existing = conditions ?? []
  const same = existing.find((c) => c.type === next.type)
  if (same !== undefined && same.status === next.status && same.reason === next.reason) return existing
  return [...existing.filter((c) => c.type !== next.type), next]
}

const defaultBackoffLimit = 6
const jobRetryBackoffMillis = (failures: number): number => Math.min(10_000 * 2 ** Math.max(0, failures - 1), 360_000)

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

interface JobEntry {
  job: Kube.Job
  readonly uid: string
  readonly taskId: string
  readonly attempt: number
  readonly behaviour: PodBehaviour.PodBehaviour | PodBehaviour.Manual
  readonly createdAt: number
  podsCreated: number
  ttlScheduled: boolean
}

interface PodEntry {
  pod: Kube.Pod
  readonly uid: string
  readonly createdAt: number
}

interface Injection {
  readonly error: ClusterError | undefined
  remaining: number
}

type Subscribers<A> = Set<Queue.Enqueue<A>>

const publish = <A>(subscribers: Subscribers<A>, value: A): void => {
  for (const queue of subscribers) queue.unsafeOffer(value)
}

/** Registers the subscriber and takes the snapshot in one synchronous step: nothing is missed or doubled. */
const replayThenFollow = <A>(subscribers: Subscribers<A>, snapshot: () => ReadonlyArray<A>): Stream.Stream<A> =>
  Stream.unwrapScoped(
    Effect.gen(function*() {
      const queue = yield* Effect.acquireRelease(Queue.unbounded<A>(), Queue.shutdown)
      const initial = yield* Effect.acquireRelease(
        Effect.sync(() => {
          subscribers.add(queue)
          return snapshot()
        }),
        () => Effect.sync(() => subscribers.delete(queue))
      )
      return Stream.concat(Stream.fromIterable(initial), Stream.fromQueue(queue))
    })
  )

const watchStream = <A>(
  subscribers: Subscribers<WatchEvent<A>>,
  snapshot: () => ReadonlyArray<A>
): Stream.Stream<WatchEvent<A>> =>
  replayThenFollow(subscribers, () => [
    ...snapshot().map((object): WatchEvent<A> => ({ _tag: "Upsert", object })),
    { _tag: "Synced" }
  ])

// ---------------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------------

/**
 * An in-memory namespace: API server (objects, watches, finalizers, background deletion), job
 * controller (pods, deadlines, backoff limit, TTL) and kubelet (`PodBehaviour`s). All timing comes
 * from the `Clock` of the context `make` runs in, so `TestClock` drives it; its fibers stop with the
 * scope.
 */
export const make = (options: Options): Effect.Effect<InMemoryClusterShape, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { names, namespace } = options
    const clock = yield* Effect.clock
    const runFork = yield* FiberSet.makeRuntime<never>()

    const now = (): number => clock.unsafeCurrentTimeMillis()
    let counter = 0
    let eventCounter = 0
    let resourceVersion = 0
    const nextUid = () => `uid-${++counter}`
    const nextRv = () => String(++resourceVersion)

    const jobs = new Map<string, JobEntry>()
    const pods = new Map<string, PodEntry>()
    const configs = new Map<string, ConfigObject>()
    const events: Array<RecordedEvent> = []
    const notices: Array<ClusterNotice> = []
    const writeLog: Array<WriteRecord> = []
    const attempts = new Map<string, number>()
    const injections = new Map<WriteOperation, Array<Injection>>()
    let apiDown = false
    let beforeWrite = options.beforeWrite
    let afterWrite = options.afterWrite

    const jobSubscribers: Subscribers<WatchEvent<Kube.Job>> = new Set()
    const podSubscribers: Subscribers<WatchEvent<Kube.Pod>> = new Set()
    const configSubscribers: Subscribers<WatchEvent<ConfigObject>> = new Set()
    const noticeSubscribers: Subscribers<ClusterNotice> = new Set()

    const background = (what: string, effect: Effect.Effect<void>): void => {
      runFork(
        Effect.catchAllCause(effect, (cause) =>
          Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError(`InMemoryCluster: ${what} failed`, cause))
      )
    }

    const sleepUntil = (at: number): Effect.Effect<void> =>
      Effect.suspend(() => {
        const delay = at - now()
        return delay > 0 ? Effect.sleep(Duration.millis(delay)) : Effect.void
      })

    /** Waits until `at`, then runs `step` synchronously (atomically with respect to every other change). */
    const at = (what: string, when: number, step: () => void): void =>
      background(what, Effect.zipRight(sleepUntil(when), Effect.sync(step)))

    const notify = (notice: ClusterNotice): void => {
      notices.push(notice)
      publish(noticeSubscribers, notice)
    }

    const recordEvent = (
      involved: { readonly name: string; readonly uid: string | undefined },
      event: Pick<RecordedEvent, "reason" | "message" | "type" | "source">
    ): void => {
      const t = now()
      events.push({
        name: `${involved.name}.${(++eventCounter).toString(16).padStart(16, "0")}`,
        involvedObject: { kind: "Job", namespace, name: involved.name, uid: involved.uid },
        ...event,
        at: t,
        timestamp: formatTimestamp(t)
      })
    }

    // --- Jobs ----------------------------------------------------------------------------------

    const jobOf = (name: string, uid: string): JobEntry | undefined => {
      const entry = jobs.get(name)
      return entry !== undefined && entry.uid === uid ? entry : undefined
    }

    /** The job controller stops driving a Job once it is being deleted. */
    const driven = (name: string, uid: string): JobEntry | undefined => {
      const entry = jobOf(name, uid)
      return entry !== undefined && !Kube.isDeleting(entry.job.metadata) ? entry : undefined
    }

    // Pod names by the name of their owner Job: a Job's pods without a scan of every pod.
    const podNamesByJob = new Map<string, Set<string>>()
    const ownerOf = (pod: Kube.Pod) => pod.metadata.ownerReferences?.find((ref) => ref.kind === "Job")
    const ownerJobName = (pod: Kube.Pod): string | undefined => ownerOf(pod)?.name

    const indexPod = (entry: PodEntry): void => {
      const owner = ownerJobName(entry.pod)
      if (owner === undefined) return
      const names = podNamesByJob.get(owner) ?? new Set<string>()
      podNamesByJob.set(owner, names.add(entry.pod.metadata.name))
    }

    const storePod = (entry: PodEntry): void => {
      pods.set(entry.pod.metadata.name, entry)
      indexPod(entry)
    }

    const dropPod = (entry: PodEntry): void => {
      const { name } = entry.pod.metadata
      pods.delete(name)
      const owner = ownerJobName(entry.pod)
      const names = owner === undefined ? undefined : podNamesByJob.get(owner)
      if (owner === undefined || names === undefined) return
      names.delete(name)
      if (names.size === 0) podNamesByJob.delete(owner)
    }

    const podsNamedForJob = (jobName: string): Array<PodEntry> =>
      Array.from(podNamesByJob.get(jobName) ?? [], (name) => pods.get(name)).filter(
        (entry): entry is PodEntry => entry !== undefined && ownerJobName(entry.pod) === jobName
      )

    const podsOwnedBy = (entry: JobEntry): Array<PodEntry> =>
      podsNamedForJob(entry.job.metadata.name).filter((p) =>
        p.pod.metadata.ownerReferences?.some((ref) => ref.kind === "Job" && (ref.uid === undefined || ref.uid === entry.uid)) ?? false
      )

    const activePods = (entry: JobEntry): Array<PodEntry> => podsOwnedBy(entry).filter((p) => !podTerminal(p.pod))

    const setJob = (entry: JobEntry, job: Kube.Job): void => {
      entry.job = { ...job, metadata: { ...job.metadata, resourceVersion: nextRv() } }
      publish(jobSubscribers, { _tag: "Upsert", object: entry.job })
      scheduleTtl(entry)
    }

    const updateJobStatus = (entry: JobEntry, update: (status: JobStatus) => JobStatus): void =>
      setJob(entry, { ...entry.job, status: update(entry.job.status ?? {}) })

    const finishedAt = (job: Kube.Job): number => {
      const conditions = job.status?.conditions ?? []
      const done = conditions.find((c) => (c.type === "Complete" || c.type === "Failed") && c.status === "True")
      return Option.getOrElse(
        Option.orElse(Time.parseTimestamp(done?.lastTransitionTime), () => Time.parseTimestamp(job.status?.completionTime)),
        now
      )
    }

    /** The TTL-after-finished controller: deletes a finished Job `ttlSecondsAfterFinished` after it finished. */
    const scheduleTtl = (entry: JobEntry): void => {
      const ttl = entry.job.spec?.ttlSecondsAfterFinished
      if (entry.ttlScheduled || ttl === undefined || !jobDone(entry.job) || Kube.isDeleting(entry.job.metadata)) return
      entry.ttlScheduled = true
      const { name } = entry.job.metadata
      at(`TTL of Job ${name}`, finishedAt(entry.job) + ttl * 1000, () => {
        const current = jobOf(name, entry.uid)
        if (current !== undefined) deleteJobNow(current)
      })
    }

    const removeJob = (entry: JobEntry): void => {
      const { name } = entry.job.metadata
      jobs.delete(name)
      const last: Kube.Job = {
        ...entry.job,
        metadata: {
          ...entry.job.metadata,
          resourceVersion: nextRv(),
          deletionTimestamp: entry.job.metadata.deletionTimestamp ?? formatTimestamp(now())
        }
      }
      publish(jobSubscribers, { _tag: "Delete", object: last })
      notify({ _tag: "JobDeleted", taskId: entry.taskId, jobName: name, jobUid: entry.uid, at: now() })
      // Background propagation: the garbage collector removes the dependents once the owner is gone.
      for (const pod of podsOwnedBy(entry)) removePod(pod)
    }

    /** DELETE with `propagationPolicy: Background`. A repeated delete of a Terminating Job changes nothing. */
    const deleteJobNow = (entry: JobEntry): void => {
      if (Kube.isDeleting(entry.job.metadata)) return
      const deleting: Kube.Job = {
        ...entry.job,
        metadata: { ...entry.job.metadata, deletionTimestamp: formatTimestamp(now()) }
      }
      if ((deleting.metadata.finalizers ?? []).length === 0) {
        entry.job = deleting
        removeJob(entry)
      } else {
        setJob(entry, deleting)
      }
    }

    const setFinalizers = (entry: JobEntry, finalizers: ReadonlyArray<string>): void => {
      const { finalizers: _previous, ...rest } = entry.job.metadata
      const metadata: Kube.ObjectMeta = finalizers.length === 0 ? rest : { ...rest, finalizers }
      if (Kube.isDeleting(metadata) && finalizers.length === 0) {
        entry.job = { ...entry.job, metadata }
        removeJob(entry)
      } else {
        setJob(entry, { ...entry.job, metadata })
      }
    }

    // --- Job controller ------------------------------------------------------------------------

    const template = (job: Kube.Job) => {
      const tpl = rec(rec(rec(job)["spec"])["template"])
      const spec = rec(tpl["spec"])
      const containers = asArray(spec["containers"]).filter(isContainerSpec)
      const secretName = containers
        .flatMap((c) => asArray(rec(c)["envFrom"]))
        .map((source) => rec(rec(source)["secretRef"])["name"])
        .find((name): name is string => typeof name === "string")
      return {
        labels: stringMap(rec(tpl["metadata"])["labels"]),
        annotations: stringMap(rec(tpl["metadata"])["annotations"]),
        spec,
        containers,
        secretName: secretName ?? "agent-secrets"
      }
    }

    const podName = (entry: JobEntry): string => {
      // generateName: the prefix is cut to 58 characters so the name stays within 63.
      const prefix = `${entry.job.metadata.name}-`.slice(0, 58)
      for (let salt = 0; ; salt++) {
        const name = prefix + suffix(`${entry.uid}/${entry.podsCreated}/${salt}`)
        if (!pods.has(name)) return name
      }
    }

    const createPod = (entry: JobEntry): void => {
      const { name: jobName } = entry.job.metadata
      if (entry.behaviour !== "manual" && entry.behaviour._tag === "NoPod") {
        recordEvent({ name: jobName, uid: entry.uid }, {
          reason: "FailedCreate",
          type: "Warning",
          source: "job-controller",
          message:
            `Error creating: pods "${jobName}-" is forbidden: exceeded quota: agent-quota, requested: pods=1, used: pods=10, limited: pods=10`
        })
        return
      }
      const tpl = template(entry.job)
      entry.podsCreated++
      const t = now()
      const object = {
        apiVersion: "v1",
        kind: "Pod",
        metadata: {
          name: podName(entry),
          namespace,
          uid: nextUid(),
          resourceVersion: nextRv(),
          creationTimestamp: formatTimestamp(t),
          labels: {
            ...tpl.labels,
            "batch.kubernetes.io/controller-uid": entry.uid,
            "batch.kubernetes.io/job-name": jobName,
            "controller-uid": entry.uid,
            "job-name": jobName
          },
          annotations: tpl.annotations,
          ownerReferences: [
            { apiVersion: "batch/v1", kind: "Job", name: jobName, uid: entry.uid, controller: true, blockOwnerDeletion: true }
          ]
        },
        spec: { ...tpl.spec, containers: tpl.containers },
        status: { phase: "Pending" }
      }
      const pod: Kube.Pod = object
      const podEntry: PodEntry = { pod, uid: object.metadata.uid, createdAt: t }
      storePod(podEntry)
      publish(podSubscribers, { _tag: "Upsert", object: pod })
      updateJobStatus(entry, (status) => ({ ...status, active: activePods(entry).length }))
      if (entry.behaviour !== "manual") runKubelet(podEntry, entry.behaviour, tpl.secretName)
    }

    const jobCondition = (type: string, reason: string, message: string): Kube.Condition =>
      condition(type, "True", formatTimestamp(now()), reason, message)

    /** The job controller's reaction to a pod that ended (or vanished before ending). */
    const podEnded = (ownerName: string | undefined, ownerUid: string | undefined, phase: "Succeeded" | "Failed") => {
      if (ownerName === undefined) return
      const entry = jobs.get(ownerName)
      if (entry === undefined || (ownerUid !== undefined && entry.uid !== ownerUid)) return
      if (Kube.isDeleting(entry.job.metadata) || jobSettling(entry.job)) return
      const active = activePods(entry).length
      if (phase === "Succeeded") {
        const message = "Reached expected number of succeeded pods"
        updateJobStatus(entry, (status) => ({
          ...status,
          active,
          succeeded: (status.succeeded ?? 0) + 1,
          completionTime: formatTimestamp(now()),
          conditions: [
            ...(status.conditions ?? []),
            jobCondition("SuccessCriteriaMet", "CompletionsReached", message),
            jobCondition("Complete", "CompletionsReached", message)
          ]
        }))
        return
      }
      const failed = (entry.job.status?.failed ?? 0) + 1
      if (failed > (entry.job.spec?.backoffLimit ?? defaultBackoffLimit)) {
        const message = "Job has reached the specified backoff limit"
        updateJobStatus(entry, (status) => ({
          ...status,
          active: 0,
          failed,
          conditions: [
            ...(status.conditions ?? []),
            jobCondition("FailureTarget", "BackoffLimitExceeded", message),
            jobCondition("Failed", "BackoffLimitExceeded", message)
          ]
        }))
        return
      }
      updateJobStatus(entry, (status) => ({ ...status, active, failed }))
      const { name } = entry.job.metadata
      at(`replacement pod of Job ${name}`, now() + jobRetryBackoffMillis(failed), () => {
        const current = driven(name, entry.uid)
        if (current !== undefined && !jobSettling(current.job)) createPod(current)
      })
    }

    const enforceDeadline = (entry: JobEntry): void => {
      const message = "Job was active longer than specified deadline"
      updateJobStatus(entry, (status) => ({
        ...status,
        conditions: [...(status.conditions ?? []), jobCondition("FailureTarget", "DeadlineExceeded", message)]
      }))
      const killed = activePods(entry)
      for (const pod of killed) setPod(pod, { ...pod.pod, status: killedStatus(pod.pod) })
      updateJobStatus(entry, (status) => ({
        ...status,
        active: 0,
        failed: (status.failed ?? 0) + killed.length,
        conditions: [...(status.conditions ?? []), jobCondition("Failed", "DeadlineExceeded", message)]
      }))
    }

    const startJobController = (entry: JobEntry): void => {
      const { name } = entry.job.metadata
      at(`pod creation of Job ${name}`, entry.createdAt + PodBehaviour.podCreateDelayMillis, () => {
        const current = driven(name, entry.uid)
        if (current !== undefined && !jobSettling(current.job)) createPod(current)
      })
      const deadline = entry.job.spec?.activeDeadlineSeconds
      if (deadline !== undefined) {
        const startedAt = Option.getOrElse(Time.parseTimestamp(entry.job.status?.startTime), () => entry.createdAt)
        at(`deadline of Job ${name}`, startedAt + deadline * 1000, () => {
          const current = driven(name, entry.uid)
          if (current !== undefined && !jobSettling(current.job)) enforceDeadline(current)
        })
      }
    }

    // --- Pods and the kubelet ------------------------------------------------------------------


    const setPod = (entry: PodEntry, pod: Kube.Pod): void => {
      const wasTerminal = podTerminal(entry.pod)
      entry.pod = { ...pod, metadata: { ...pod.metadata, resourceVersion: nextRv() } }
      publish(podSubscribers, { _tag: "Upsert", object: entry.pod })
      const phase = entry.pod.status?.phase
      if (!wasTerminal && (phase === "Succeeded" || phase === "Failed")) {
        const owner = ownerOf(entry.pod)
        podEnded(owner?.name, owner?.uid, phase)
      }
    }

    const removePod = (entry: PodEntry): void => {
      dropPod(entry)
      const last: Kube.Pod = {
        ...entry.pod,
        metadata: {
          ...entry.pod.metadata,
          resourceVersion: nextRv(),
          deletionTimestamp: entry.pod.metadata.deletionTimestamp ?? formatTimestamp(now())
        }
      }
      publish(podSubscribers, { _tag: "Delete", object: last })
      // A pod deleted before it ended counts as a failed pod (job tracking with finalizers).
      if (!podTerminal(entry.pod)) {
        const owner = ownerOf(entry.pod)
        podEnded(owner?.name, owner?.uid, "Failed")
      }
    }

    const podContainers = (pod: Kube.Pod): ReadonlyArray<ContainerSpec> => pod.spec?.containers ?? []

    /** A container status names its container and image, nothing else of the spec. */
    const containerId = (c: ContainerSpec) => ({ name: c.name, ...(c.image === undefined ? {} : { image: c.image }) })

    const scheduled = (pod: Kube.Pod, t: string) =>
      withCondition(pod.status?.conditions, condition("PodScheduled", "True", t))

    const killedStatus = (pod: Kube.Pod): PodStatus => {
      const t = formatTimestamp(now())
      return {
        ...pod.status,
        phase: "Failed",
        reason: "DeadlineExceeded",
        message: "Pod was active on the node longer than the specified deadline",
        conditions: withCondition(pod.status?.conditions, condition("Ready", "False", t, "PodFailed")),
        containerStatuses: podContainers(pod).map((c) => {
          const wasRunning =
            pod.status?.containerStatuses?.find((s) => s.name === c.name)?.state?.running !== undefined
          return {
            ...containerId(c),
            state: {
              terminated: wasRunning
                ? { exitCode: 143, reason: "Error", finishedAt: t }
                : {
                    exitCode: 137,
                    reason: "ContainerStatusUnknown",
                    message: "The container could not be located when the pod was terminated",
                    finishedAt: t
                  }
            }
          }
        })
      }
    }

    const kubeletStatus = (pod: Kube.Pod, step: PodBehaviour.KubeletStep, secretName: string): PodStatus => {
      const t = formatTimestamp(now())
      const containers = podContainers(pod)
      switch (step._tag) {
        case "Unschedulable":
          return {
            phase: "Pending",
            conditions: withCondition(
              pod.status?.conditions,
              condition("PodScheduled", "False", t, "Unschedulable", step.message)
            )
          }
        case "Waiting":
          return {
            phase: "Pending",
            conditions: scheduled(pod, t),
            containerStatuses: containers.map((c) => {
              const message = PodBehaviour.waitingMessage(step.reason, c.image ?? "", secretName)
              return {
                ...containerId(c),
                state: { waiting: message === undefined ? { reason: step.reason } : { reason: step.reason, message } }
              }
            })
          }
        case "Running":
          return {
            phase: "Running",
            conditions: withCondition(scheduled(pod, t), condition("Ready", "True", t)),
            containerStatuses: containers.map((c) => ({ ...containerId(c), state: { running: { startedAt: t } } }))
          }
        case "Terminated": {
          const succeeded = step.exitCode === 0
          const base = withCondition(
            scheduled(pod, t),
            condition("Ready", "False", t, succeeded ? "PodCompleted" : "PodFailed")
          )
          const conditions = step.podReason === "Evicted"
            ? withCondition(
              base,
              condition("DisruptionTarget", "True", t, "TerminationByKubelet", step.podMessage)
            )
            : base
          return {
            phase: succeeded ? "Succeeded" : "Failed",
            ...(step.podReason === undefined ? {} : { reason: step.podReason }),
            ...(step.podMessage === undefined ? {} : { message: step.podMessage }),
            conditions,
            containerStatuses: containers.map((c) => ({
              ...containerId(c),
              state: { terminated: { exitCode: step.exitCode, reason: step.reason, finishedAt: t } }
            }))
          }
        }
      }
    }

    const runKubelet = (entry: PodEntry, behaviour: PodBehaviour.PodBehaviour, secretName: string): void => {
      const { name } = entry.pod.metadata
      background(
        `kubelet of pod ${name}`,
        Effect.gen(function*() {
          for (const { at: offset, step } of PodBehaviour.kubeletSteps(behaviour)) {
            yield* sleepUntil(entry.createdAt + offset)
            const alive = yield* Effect.sync(() => {
              const current = pods.get(name)
              if (current === undefined || current.uid !== entry.uid || podTerminal(current.pod)) return false
              setPod(current, { ...current.pod, status: kubeletStatus(current.pod, step, secretName) })
              return true
            })
            if (!alive) return
          }
        })
      )
    }

    // --- Writes --------------------------------------------------------------------------------

    const invalid = (name: string, message: string) =>
      new ClusterError({ operation: "createJob", target: name, transient: false, message })

    const createJobNow = (
      manifest: { readonly metadata: { readonly name: string } }
    ): Effect.Effect<CreateOutcome, ClusterError> =>
      Effect.suspend(() => {
        const name = manifest.metadata.name
        if (name.length > 63 || !dns1123Label.test(name)) {
          return Effect.fail(
            invalid(
              name,
              `Job.batch "${name}" is invalid: metadata.name: Invalid value: "${name}": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character`
            )
          )
        }
        const source = rec(manifest)
        const meta = rec(source["metadata"])
        const given = meta["namespace"]
        if (given !== undefined && given !== namespace) {
          return Effect.fail(
            invalid(name, "the namespace of the provided object does not match the namespace sent on the request")
          )
        }
        if (jobs.has(name)) return Effect.succeed<CreateOutcome>("exists")
        const t = now()
        const uid = nextUid()
        const body: Record<string, unknown> = { ...structuredClone(source) }
        delete body["status"]
        const metadata: Record<string, unknown> = {
          ...rec(body["metadata"]),
          namespace,
          uid,
          resourceVersion: nextRv(),
          creationTimestamp: formatTimestamp(t)
        }
        delete metadata["deletionTimestamp"]
        const spec = rec(body["spec"])
        const candidate = {
          ...body,
          metadata,
          spec: { ...spec, backoffLimit: spec["backoffLimit"] ?? defaultBackoffLimit },
          status: { startTime: formatTimestamp(t) }
        }
        if (!isJob(candidate)) return Effect.fail(invalid(name, `Job.batch "${name}" is invalid`))
        if (template(candidate).containers.length === 0) {
          return Effect.fail(
            invalid(name, `Job.batch "${name}" is invalid: spec.template.spec.containers: Required value`)
          )
        }
        const taskId = Kube.label(candidate.metadata, names.taskIdLabel)
        const attempt = (attempts.get(taskId) ?? 0) + 1
        attempts.set(taskId, attempt)
        const entry: JobEntry = {
          job: candidate,
          uid,
          taskId,
          attempt,
          behaviour: options.podBehaviour({ taskId, jobName: name }, attempt),
          createdAt: t,
          podsCreated: 0,
          ttlScheduled: false
        }
        jobs.set(name, entry)
        publish(jobSubscribers, { _tag: "Upsert", object: candidate })
        notify({ _tag: "JobCreated", taskId, jobName: name, jobUid: uid, attempt, at: t })
        startJobController(entry)
        return Effect.succeed<CreateOutcome>("created")
      })

    const withJob = <A>(name: string, f: (entry: JobEntry) => A): Effect.Effect<A, NotFound> =>
      Effect.suspend(() => {
        const entry = jobs.get(name)
        return entry === undefined ? Effect.fail(new NotFound({ kind: "Job", name })) : Effect.succeed(f(entry))
      })

    const deleteJob = (name: string) => withJob(name, deleteJobNow)

    const annotateJob = (name: string, key: string, value: string) =>
      withJob(name, (entry) => {
        const annotations = entry.job.metadata.annotations ?? {}
        if (annotations[key] === value) return
        setJob(entry, { ...entry.job, metadata: { ...entry.job.metadata, annotations: { ...annotations, [key]: value } } })
      })

    const addJobFinalizer = (name: string, finalizer: string): Effect.Effect<void, NotFound | ClusterError> =>
      Effect.flatMap(withJob(name, (entry) => entry), (entry) => {
        const finalizers = entry.job.metadata.finalizers ?? []
        if (finalizers.includes(finalizer)) return Effect.void
        if (Kube.isDeleting(entry.job.metadata)) {
          return Effect.fail(
            new ClusterError({
              operation: "addJobFinalizer",
              target: name,
              transient: false,
              message:
                `Job.batch "${name}" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"${finalizer}"}`
            })
          )
        }
        return Effect.sync(() => setFinalizers(entry, [...finalizers, finalizer]))
      })

    const removeJobFinalizer = (name: string, finalizer: string) =>
      withJob(name, (entry) => {
        const finalizers = entry.job.metadata.finalizers ?? []
        if (!finalizers.includes(finalizer)) return
        setFinalizers(entry, finalizers.filter((f) => f !== finalizer))
      })

    const recordJobEvent = (event: JobEvent) =>
      Effect.sync(() =>
        recordEvent({ name: event.jobName, uid: event.jobUid }, {
          reason: event.reason,
          message: event.message,
          type: event.type,
          source: "executor"
        })
      )

    const outage = (operation: string, target: string) =>
      new ClusterError({ operation, target, transient: true, message: "simulated API outage: the API server is unavailable" })

    const takeInjection = (operation: WriteOperation): Injection | undefined => {
      const queue = injections.get(operation)
      const head = queue?.[0]
      if (queue === undefined || head === undefined) return undefined
      head.remaining--
      if (head.remaining <= 0) queue.shift()
      return head
    }

    /** Hooks, outage, injected failures, then the write itself; every call lands in `writes`. */
    const guarded = <A, E>(
      operation: WriteOperation,
      target: string,
      write: Effect.Effect<A, E>
    ): Effect.Effect<A, E | ClusterError> => {
      const attempt: WriteAttempt = { operation, target }
      return Effect.suspend(() => {
        const started = now()
        const before = beforeWrite
        return Effect.gen(function*() {
          if (before !== undefined) yield* before(attempt)
          if (apiDown) {
            return yield* outage(operation, target)
          }
          const injected = takeInjection(operation)
          if (injected !== undefined) {
            return yield* injected.error ??
              new ClusterError({ operation, target, transient: true, message: "injected failure" })
          }
          const result = yield* write
          const after = afterWrite
          if (after !== undefined) yield* after(attempt)
          return result
        }).pipe(
          Effect.onExit((exit) =>
            Effect.sync(() => {
              const outcome = Exit.isSuccess(exit) ? "ok" : Cause.isInterruptedOnly(exit.cause) ? "interrupted" : "failed"
              writeLog.push({ ...attempt, at: started, outcome })
            })
          )
        )
      })
    }

    const ops: ClusterOpsShape = {
      createJob: Effect.fn("ClusterOps.createJob")(function*(manifest) {
        return yield* guarded("createJob", manifest.metadata.name, createJobNow(manifest))
      }),
      deleteJob: Effect.fn("ClusterOps.deleteJob")(function*(name: string) {
        return yield* guarded("deleteJob", name, deleteJob(name))
      }),
      annotateJob: Effect.fn("ClusterOps.annotateJob")(function*(name: string, key: string, value: string) {
        return yield* guarded("annotateJob", name, annotateJob(name, key, value))
      }),
      addJobFinalizer: Effect.fn("ClusterOps.addJobFinalizer")(function*(name: string, finalizer: string) {
        return yield* guarded("addJobFinalizer", name, addJobFinalizer(name, finalizer))
      }),
      removeJobFinalizer: Effect.fn("ClusterOps.removeJobFinalizer")(function*(name: string, finalizer: string) {
        return yield* guarded("removeJobFinalizer", name, removeJobFinalizer(name, finalizer))
      }),
      recordJobEvent: Effect.fn("ClusterOps.recordJobEvent")(function*(event: JobEvent) {
        return yield* guarded("recordJobEvent", event.jobName, recordJobEvent(event))
      })
    }

    // --- Reads ---------------------------------------------------------------------------------

    const allJobs = (): ReadonlyArray<Kube.Job> => [...jobs.values()].map((e) => e.job)
    const allPods = (): ReadonlyArray<Kube.Pod> => [...pods.values()].map((e) => e.pod)
    const allConfigs = (): ReadonlyArray<ConfigObject> => [...configs.values()]

    const watch: ClusterWatchShape = {
      jobEvents: watchStream(jobSubscribers, allJobs),
      podEvents: watchStream(podSubscribers, allPods),
      configEvents: watchStream(configSubscribers, allConfigs),
      synced: Effect.void,
      job: (name) => Effect.sync(() => Option.fromNullable(jobs.get(name)?.job)),
      readJob: (name) =>
        Effect.suspend(() =>
          apiDown
            ? Effect.fail(outage("readJob", name))
            : Effect.succeed(Option.fromNullable(jobs.get(name)?.job))
        ),
      readPodsOfJob: (jobName) =>
        Effect.suspend(() =>
          apiDown
            ? Effect.fail(outage("readPodsOfJob", jobName))
            : Effect.succeed(podsNamedForJob(jobName).map((entry) => entry.pod))
        ),
      jobs: Effect.sync(() => allJobs().filter((job) => job.metadata.labels?.[names.taskIdLabel] !== undefined)),
      podsOfJob: (jobName) => Effect.sync(() => podsNamedForJob(jobName).map((entry) => entry.pod))
    }

    // --- Test controls -------------------------------------------------------------------------

    const withPod = <A>(name: string, f: (entry: PodEntry) => A): Effect.Effect<A, NotFound> =>
      Effect.suspend(() => {
        const entry = pods.get(name)
        return entry === undefined ? Effect.fail(new NotFound({ kind: "Pod", name })) : Effect.succeed(f(entry))
      })

    const putPod = (pod: Kube.Pod): Effect.Effect<Kube.Pod> =>
      Effect.sync(() => {
        const existing = pods.get(pod.metadata.name)
        if (existing !== undefined) {
          setPod(existing, {
            ...pod,
            metadata: {
              ...pod.metadata,
              uid: existing.uid,
              creationTimestamp: existing.pod.metadata.creationTimestamp ?? formatTimestamp(existing.createdAt)
            }
          })
          // a replaced pod may name another owner (the old owner's entry is filtered out on lookup)
          indexPod(existing)
          return existing.pod
        }
        const t = now()
        const uid = pod.metadata.uid ?? nextUid()
        const stored: PodEntry = {
          pod: {
            ...pod,
            metadata: {
              ...pod.metadata,
              namespace,
              uid,
              resourceVersion: nextRv(),
              creationTimestamp: pod.metadata.creationTimestamp ?? formatTimestamp(t)
            }
          },
          uid,
          createdAt: t
        }
        storePod(stored)
        publish(podSubscribers, { _tag: "Upsert", object: stored.pod })
        const owner = ownerOf(stored.pod)
        const ownerEntry = owner === undefined ? undefined : jobs.get(owner.name)
        if (ownerEntry !== undefined && (owner?.uid === undefined || owner.uid === ownerEntry.uid)) {
          updateJobStatus(ownerEntry, (status) => ({ ...status, active: activePods(ownerEntry).length }))
        }
        const phase = stored.pod.status?.phase
        if (phase === "Succeeded" || phase === "Failed") podEnded(owner?.name, owner?.uid, phase)
        return stored.pod
      })

    const configObject = (name: string, spec: unknown, previous: ConfigObject | undefined): ConfigObject => ({
      metadata: {
        name,
        namespace,
        uid: previous?.metadata.uid ?? nextUid(),
        resourceVersion: nextRv(),
        creationTimestamp: previous?.metadata.creationTimestamp ?? formatTimestamp(now())
      },
      spec: structuredClone(spec)
    })

    const shape: InMemoryClusterShape = {
      namespace,
      watch,
      ops,
      layer: Layer.succeedContext(Context.make(ClusterWatch, watch).pipe(Context.add(ClusterOps, ops))),

      setApiDown: (down) => Effect.sync(() => void (apiDown = down)),
      failNext: (operation, error, count = 1) =>
        Effect.sync(() => {
          if (count <= 0) return
          const queue = injections.get(operation) ?? []
          queue.push({ error, remaining: count })
          injections.set(operation, queue)
        }),
      setBeforeWrite: (hook) => Effect.sync(() => void (beforeWrite = hook)),
      setAfterWrite: (hook) => Effect.sync(() => void (afterWrite = hook)),
      writes: Effect.sync(() => [...writeLog]),

      createJob: createJobNow,
      putPod,
      patchPodStatus: (name, status) =>
        withPod(name, (entry) => {
          setPod(entry, { ...entry.pod, status: { ...entry.pod.status, ...status } })
          return entry.pod
        }),
      patchJobStatus: (name, status) =>
        withJob(name, (entry) => {
          setJob(entry, { ...entry.job, status: { ...entry.job.status, ...status } })
          return entry.job
        }),
      deletePod: (name) => withPod(name, removePod),
      deleteJob,
      clearJobFinalizers: (name) =>
        withJob(name, (entry) => {
          if ((entry.job.metadata.finalizers ?? []).length > 0) setFinalizers(entry, [])
        }),
      applyConfig: (name, spec) =>
        Effect.sync(() => {
          const previous = configs.get(name)
          if (previous !== undefined && canonicalJson(previous.spec) === canonicalJson(spec)) return previous
          const object = configObject(name, spec, previous)
          configs.set(name, object)
          publish(configSubscribers, { _tag: "Upsert", object })
          return object
        }),
      deleteConfig: (name) =>
        Effect.suspend(() => {
          const previous = configs.get(name)
          if (previous === undefined) return Effect.fail(new NotFound({ kind: "Config", name }))
          configs.delete(name)
          publish(configSubscribers, {
            _tag: "Delete",
            object: {
              ...previous,
              metadata: { ...previous.metadata, resourceVersion: nextRv(), deletionTimestamp: formatTimestamp(now()) }
            }
          })
          return Effect.void
        }),

      jobsSnapshot: Effect.sync(allJobs),
      podsSnapshot: Effect.sync(allPods),
      configsSnapshot: Effect.sync(allConfigs),
      currentJobOfTask: (taskId) =>
        Effect.sync(() =>
          Option.fromNullable([...jobs.values()].filter((entry) => entry.taskId === taskId).at(-1)?.job)
        ),
      events: Effect.sync(() => [...events]),
      notices: replayThenFollow(noticeSubscribers, () => [...notices])
    }
    return shape
  }).pipe(Effect.annotateLogs({ service: "InMemoryCluster" }))

/** A cluster in the layer's scope, as `InMemoryCluster` plus the `ClusterWatch` and `ClusterOps` ports. */
export const layer = (options: Options): Layer.Layer<InMemoryCluster | ClusterWatch | ClusterOps> =>
  Layer.scopedContext(
    Effect.map(make(options), (cluster) =>
      Context.make(InMemoryCluster, cluster).pipe(
        Context.add(ClusterWatch, cluster.watch),
        Context.add(ClusterOps, cluster.ops)
      ))
  )
