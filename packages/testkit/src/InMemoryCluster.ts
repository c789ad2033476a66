import { Cause, Context, DateTime, Duration, Effect, Either, Exit, FiberSet, Layer, Option, Queue, type Scope, Stream } from "effect"
import { Kube, type Labels, Quantity, Time } from "@executor/domain"
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

/** A Kubernetes Event about a Job or a Pod. */
export interface RecordedEvent {
  readonly name: string
  readonly involvedObject: {
    readonly kind: "Job" | "Pod"
    readonly namespace: string
    readonly name: string
    readonly uid: string | undefined
  }
  readonly reason: string
  readonly message: string
  readonly type: "Normal" | "Warning"
  /** `executor` for `ClusterOps.recordJobEvent`, `job-controller` and `kubelet` for the simulated ones. */
  readonly source: string
  /** When it was first recorded. */
  readonly at: number
  readonly timestamp: string
  /** The same Event again (the recorder aggregates repeats into one object): how often, and the last time. */
  readonly count: number
  readonly lastAt: number
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
  /** Records an Event about a Job or pod as a component would (`kubelet`, `job-controller`), aggregated like theirs. */
  readonly recordEvent: (
    involved: { readonly kind: "Job" | "Pod"; readonly name: string },
    event: Pick<RecordedEvent, "reason" | "message" | "type" | "source">
  ) => Effect.Effect<void>
  /** Creates or updates a `Config` custom resource. */
  readonly applyConfig: (name: string, spec: unknown) => Effect.Effect<ConfigObject>
  readonly deleteConfig: (name: string) => Effect.Effect<void, NotFound>

  /** Every Job in the namespace (labelled or not), in creation order. */
  readonly jobsSnapshot: Effect.Effect<ReadonlyArray<Kube.Job>>
  readonly podsSnapshot: Effect.Effect<ReadonlyArray<Kube.Pod>>
  readonly configsSnapshot: Effect.Effect<ReadonlyArray<ConfigObject>>
  /** The newest Job of a task (task-id label) that still exists. */
  readonly currentJobOfTask: (taskId: string) => Effect.Effect<Option.Option<Kube.Job>>
  /** Every Event of the last hour (the API server's `--event-ttl`), in the order first recorded. */
  readonly events: Effect.Effect<ReadonlyArray<RecordedEvent>>
  /** True once the kubelet signalled the pod (a deadline kill, an eviction): its agent did not finish its work. */
  readonly wasSignalled: (podUid: string) => Effect.Effect<boolean>
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

/** What the API server says about container resources it refuses: a bad quantity, a request above its limit. */
const resourceProblem = (containers: ReadonlyArray<ContainerSpec>): string | undefined => {
  for (const [i, container] of containers.entries()) {
    const resources = rec(rec(container)["resources"])
    const requests = stringMap(resources["requests"])
    const limits = stringMap(resources["limits"])
    const field = `spec.template.spec.containers[${i}].resources`
    for (const [side, list] of [["requests", requests], ["limits", limits]] as const) {
      for (const [resource, value] of Object.entries(list)) {
        if (Option.isNone(Quantity.parse(value))) {
          return `${field}.${side}[${resource}]: Invalid value: "${value}": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'`
        }
      }
    }
    for (const [resource, request] of Object.entries(requests)) {
      const limit = limits[resource]
      if (limit !== undefined && Option.getOrElse(Quantity.compare(request, limit), () => 0) > 0) {
        return `${field}.requests: Invalid value: "${request}": must be less than or equal to ${resource} limit of ${limit}`
      }
    }
  }
  return undefined
}

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

/** The field selectors the API server supports for core/v1 Events (those an Event here can match). */
const eventFields: Readonly<Record<string, (event: RecordedEvent) => string | undefined>> = {
  "involvedObject.kind": (e) => e.involvedObject.kind,
  "involvedObject.name": (e) => e.involvedObject.name,
  "involvedObject.namespace": (e) => e.involvedObject.namespace,
  "involvedObject.uid": (e) => e.involvedObject.uid,
  reason: (e) => e.reason,
  type: (e) => e.type,
  source: (e) => (e.source === "executor" ? "agent-task-executor" : e.source)
}

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

const foreground = "foregroundDeletion"

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
/** The API server keeps Events this long (`--event-ttl`, default 1 h). */
const eventTtlMillis = 3_600_000
/**
 * client-go's event correlator: past this many Events about one object with the same reason, source
 * and type but different messages (none of them more than `similarWindowMillis` after the one
 * before), the next ones are one Event with the message `(combined from similar events): <newest
 * message>`, bumped each time.
 */
const similarEventsLimit = 10
const similarWindowMillis = 600_000
const combinedPrefix = "(combined from similar events): "
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
  /** Set when the kubelet got the pod's deletion (SIGTERM sent): its own timeline stops. */
  signalled: boolean
  /** Counted as failed by the job controller when it was deleted (before it ended). */
  countedFailed?: boolean
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
    /** The correlator's record per object, reason, source and type: the messages seen, the last time. */
    const similarEvents = new Map<string, { messages: Set<string>; lastAt: number }>()
    const notices: Array<ClusterNotice> = []
    const writeLog: Array<WriteRecord> = []
    const attempts = new Map<string, number>()
    // uids of the pods the kubelet signalled (deadline kills, evictions), kept after the pods go
    const signalled = new Set<string>()
    const injections = new Map<WriteOperation, Array<Injection>>()
    let apiDown = false
    let beforeWrite = options.beforeWrite
    let afterWrite = options.afterWrite

    const jobSubscribers: Subscribers<WatchEvent<Kube.Job>> = new Set()
    const podSubscribers: Subscribers<WatchEvent<Kube.Pod>> = new Set()
    const configSubscribers: Subscribers<WatchEvent<ConfigObject>> = new Set()
    const evictionSubscribers: Subscribers<WatchEvent<Kube.Event>> = new Set()
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

    const isEviction = (event: RecordedEvent) => event.involvedObject.kind === "Pod" && event.reason === "Evicted"

    const kubeEvent = (event: RecordedEvent, resourceVersion: string): Kube.Event => {
      const component = event.source === "executor" ? "agent-task-executor" : event.source
      return {
        metadata: { name: event.name, namespace, resourceVersion, creationTimestamp: event.timestamp },
        involvedObject: { ...event.involvedObject },
        reason: event.reason,
        message: event.message,
        type: event.type,
        count: event.count,
        firstTimestamp: event.timestamp,
        lastTimestamp: formatTimestamp(event.lastAt),
        source: { component },
        reportingComponent: component
      }
    }

    /**
     * Records an Event like client-go's recorder: a repeat (same object, reason, message and
     * source) bumps the count and last time of the first one; past `similarEventsLimit` similar
     * ones (another message) within 10 minutes they are combined into one. The executor's own
     * Events are separate objects, as the real adapter writes them. Events older than the TTL are
     * dropped.
     */
    const recordEvent = (
      involved: { readonly kind?: "Job" | "Pod"; readonly name: string; readonly uid: string | undefined },
      given: Pick<RecordedEvent, "reason" | "message" | "type" | "source">
    ): void => {
      const t = now()
      while (events[0] !== undefined && events[0].lastAt < t - eventTtlMillis) events.shift()
      const kind = involved.kind ?? "Job"
      const similar = (e: RecordedEvent) =>
        e.involvedObject.kind === kind && e.involvedObject.name === involved.name && e.involvedObject.uid === involved.uid &&
        e.reason === given.reason && e.source === given.source && e.type === given.type
      const key = JSON.stringify([kind, involved.name, involved.uid, given.reason, given.source, given.type])
      const previousRecord = similarEvents.get(key)
      const record = previousRecord !== undefined && t - previousRecord.lastAt <= similarWindowMillis
        ? previousRecord
        : { messages: new Set<string>(), lastAt: t }
      record.lastAt = t
      similarEvents.set(key, record)
      const combined = given.source !== "executor" && !record.messages.has(given.message) && record.messages.size >= similarEventsLimit
      if (!combined) record.messages.add(given.message)
      const event = combined ? { ...given, message: `${combinedPrefix}${given.message}` } : given
      const index = given.source === "executor"
        ? -1
        : events.findIndex((e) => similar(e) && (combined ? e.message.startsWith(combinedPrefix) : e.message === event.message))
      const previous = events[index]
      const recorded: RecordedEvent = previous !== undefined
        ? { ...previous, message: event.message, count: previous.count + 1, lastAt: t }
        : {
          name: `${involved.name}.${(++eventCounter).toString(16).padStart(16, "0")}`,
          involvedObject: { kind, namespace, name: involved.name, uid: involved.uid },
          ...event,
          at: t,
          timestamp: formatTimestamp(t),
          count: 1,
          lastAt: t
        }
      if (previous !== undefined) events[index] = recorded
      else events.push(recorded)
      if (isEviction(recorded)) publish(evictionSubscribers, { _tag: "Upsert", object: kubeEvent(recorded, nextRv()) })
    }

    const liveEvents = (): ReadonlyArray<RecordedEvent> => events.filter((e) => e.lastAt >= now() - eventTtlMillis)

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

    /** Pods that have not ended and are not being deleted (the job controller's `active`). */
    const activePods = (entry: JobEntry): Array<PodEntry> =>
      podsOwnedBy(entry).filter((p) => !podTerminal(p.pod) && !Kube.isDeleting(p.pod.metadata))
    const unfinishedPods = (entry: JobEntry): Array<PodEntry> => podsOwnedBy(entry).filter((p) => !podTerminal(p.pod))

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
        if (current !== undefined) deleteJobInForeground(current)
      })
    }

    /**
     * The TTL controller's DELETE (`propagationPolicy: Foreground`): the Job gets the finalizer
     * `foregroundDeletion`, the garbage collector deletes its pods, then drops that finalizer; other
     * finalizers still hold the Job.
     */
    const deleteJobInForeground = (entry: JobEntry): void => {
      if (Kube.isDeleting(entry.job.metadata)) return
      const finalizers = entry.job.metadata.finalizers ?? []
      setJob(entry, {
        ...entry.job,
        metadata: { ...entry.job.metadata, deletionTimestamp: formatTimestamp(now()), finalizers: [...finalizers, foreground] }
      })
      for (const pod of podsOwnedBy(entry)) {
        setPod(pod, { ...pod.pod, metadata: { ...pod.pod.metadata, deletionTimestamp: formatTimestamp(now()) } })
        removePod(pod)
      }
      setFinalizers(entry, (entry.job.metadata.finalizers ?? []).filter((f) => f !== foreground))
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

    /**
     * A pod the admission refuses (a quota): an Event naming the name the API server generated for
     * it (so each try is an Event of its own), and another try after the controller's back-off.
     */
    const failPodCreation = (entry: JobEntry, attempt: number): void => {
      const { name: jobName } = entry.job.metadata
      const refused = `${jobName}-`.slice(0, 58) + suffix(`${entry.uid}/refused/${attempt}`)
      recordEvent({ name: jobName, uid: entry.uid }, {
        reason: "FailedCreate",
        type: "Warning",
        source: "job-controller",
        message:
          `Error creating: pods "${refused}" is forbidden: exceeded quota: agent-quota, requested: pods=1, used: pods=0, limited: pods=0`
      })
      at(`pod creation retry of Job ${jobName}`, now() + PodBehaviour.podCreateRetryMillis(attempt), () => {
        const current = driven(jobName, entry.uid)
        if (current !== undefined && !jobSettling(current.job)) failPodCreation(current, attempt + 1)
      })
    }

    const createPod = (entry: JobEntry): void => {
      const { name: jobName } = entry.job.metadata
      if (entry.behaviour !== "manual" && entry.behaviour._tag === "NoPod") return failPodCreation(entry, 1)
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
      const podEntry: PodEntry = { pod, uid: object.metadata.uid, createdAt: t, signalled: false }
      storePod(podEntry)
      publish(podSubscribers, { _tag: "Upsert", object: pod })
      updateJobStatus(entry, (status) => ({ ...status, active: activePods(entry).length }))
      if (entry.behaviour !== "manual") runKubelet(podEntry, entry.behaviour, tpl.secretName)
    }

    const jobCondition = (type: string, reason: string, message: string): Kube.Condition =>
      condition(type, "True", formatTimestamp(now()), reason, message)

    const trueCondition = (job: Kube.Job, type: string) =>
      job.status?.conditions?.find((c) => c.type === type && c.status === "True")

    /**
     * The job controller's reaction to a pod that ended (or vanished before ending). It decides
     * first (`SuccessCriteriaMet`, `FailureTarget`) and finishes in a second write (`Complete`,
     * `Failed`), and once `FailureTarget` is set it waits for the Job's other pods to end.
     */
    const podEnded = (
      ownerName: string | undefined,
      ownerUid: string | undefined,
      phase: "Succeeded" | "Failed",
      countedAtDeletion = false
    ) => {
      if (ownerName === undefined) return
      const entry = jobs.get(ownerName)
      if (entry === undefined || (ownerUid !== undefined && entry.uid !== ownerUid)) return
      if (Kube.isDeleting(entry.job.metadata) || jobDone(entry.job)) return
      const active = activePods(entry).length
      const counted = (status: JobStatus): JobStatus =>
        countedAtDeletion
          ? { ...status, active }
          : phase === "Succeeded"
          ? { ...status, active, succeeded: (status.succeeded ?? 0) + 1 }
          : { ...status, active, failed: (status.failed ?? 0) + 1 }
      const target = trueCondition(entry.job, "FailureTarget")
      if (target !== undefined) {
        updateJobStatus(entry, counted)
        if (unfinishedPods(entry).length === 0) failJob(entry, target.reason ?? "", target.message ?? "")
        return
      }
      if (hasTrueCondition(entry.job.status?.conditions, "SuccessCriteriaMet")) return
      if (phase === "Succeeded") {
        const message = "Reached expected number of succeeded pods"
        updateJobStatus(entry, (status) => ({
          ...counted(status),
          conditions: [...(status.conditions ?? []), jobCondition("SuccessCriteriaMet", "CompletionsReached", message)]
        }))
        updateJobStatus(entry, (status) => ({
          ...status,
          completionTime: formatTimestamp(now()),
          conditions: [...(status.conditions ?? []), jobCondition("Complete", "CompletionsReached", message)]
        }))
        return
      }
      const failed = (entry.job.status?.failed ?? 0) + (countedAtDeletion ? 0 : 1)
      if (failed > (entry.job.spec?.backoffLimit ?? defaultBackoffLimit)) {
        const message = "Job has reached the specified backoff limit"
        updateJobStatus(entry, (status) => ({
          ...counted(status),
          conditions: [...(status.conditions ?? []), jobCondition("FailureTarget", "BackoffLimitExceeded", message)]
        }))
        for (const pod of activePods(entry)) terminatePod(pod, PodBehaviour.sigtermExitCode(entry.behaviour))
        if (unfinishedPods(entry).length === 0) failJob(entry, "BackoffLimitExceeded", message)
        return
      }
      updateJobStatus(entry, counted)
      const { name } = entry.job.metadata
      at(`replacement pod of Job ${name}`, now() + jobRetryBackoffMillis(failed), () => {
        const current = driven(name, entry.uid)
        if (current !== undefined && !jobSettling(current.job)) createPod(current)
      })
    }

    const failJob = (entry: JobEntry, reason: string, message: string): void =>
      updateJobStatus(entry, (status) => ({
        ...status,
        active: 0,
        conditions: [...(status.conditions ?? []), jobCondition("Failed", reason, message)]
      }))

    /**
     * At `activeDeadlineSeconds` the job controller writes `FailureTarget` and deletes the Job's
     * pods; `Failed` follows once they have ended (a process that ignores SIGTERM takes the whole
     * termination grace).
     */
    const enforceDeadline = (entry: JobEntry): void => {
      const message = "Job was active longer than specified deadline"
      updateJobStatus(entry, (status) => ({
        ...status,
        conditions: [...(status.conditions ?? []), jobCondition("FailureTarget", "DeadlineExceeded", message)]
      }))
      const killed = activePods(entry)
      if (killed.length === 0) return failJob(entry, "DeadlineExceeded", message)
      for (const pod of killed) terminatePod(pod, PodBehaviour.sigtermExitCode(entry.behaviour))
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
        podEnded(owner?.name, owner?.uid, phase, entry.countedFailed === true)
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
        podEnded(owner?.name, owner?.uid, "Failed", entry.countedFailed === true)
      }
    }

    const podContainers = (pod: Kube.Pod): ReadonlyArray<ContainerSpec> => pod.spec?.containers ?? []

    /** A container status names its container and image, nothing else of the spec. */
    const containerId = (c: ContainerSpec) => ({ name: c.name, ...(c.image === undefined ? {} : { image: c.image }) })

    const scheduled = (pod: Kube.Pod, t: string) =>
      withCondition(pod.status?.conditions, condition("PodScheduled", "True", t))

    const endedContainers = (pod: Kube.Pod, exitCode: number, t: string) =>
      podContainers(pod).map((c) => {
        const state = pod.status?.containerStatuses?.find((s) => s.name === c.name)?.state
        return {
          ...containerId(c),
          state: {
            // a container that never started has no times: the real kubelet writes them as null
            terminated: state?.terminated ?? (state?.running !== undefined
              ? { exitCode, reason: exitCode === 0 ? "Completed" : "Error", finishedAt: t }
              : { exitCode: 137, reason: "ContainerStatusUnknown", message: PodBehaviour.unknownContainerMessage })
          }
        }
      })

    const killedStatus = (pod: Kube.Pod, exitCode: number): PodStatus => {
      const t = formatTimestamp(now())
      const containers = endedContainers(pod, exitCode, t)
      const succeeded = containers.every((c) => c.state.terminated.exitCode === 0)
      return {
        ...pod.status,
        phase: succeeded ? "Succeeded" : "Failed",
        conditions: withCondition(pod.status?.conditions, condition("Ready", "False", t, succeeded ? "PodCompleted" : "PodFailed")),
        containerStatuses: containers
      }
    }

    /** The job controller counts a pod it deletes before the pod ended as failed at once (job tracking). */
    const countAsFailed = (entry: PodEntry): void => {
      const owner = ownerOf(entry.pod)
      const job = owner === undefined ? undefined : jobs.get(owner.name)
      if (job === undefined || (owner?.uid !== undefined && job.uid !== owner.uid) || jobDone(job.job)) return
      entry.countedFailed = true
      updateJobStatus(job, (status) => ({ ...status, active: activePods(job).length, failed: (status.failed ?? 0) + 1 }))
    }

    /**
     * A graceful pod deletion by the job controller as the kubelet carries it out: SIGTERM; a
     * process that answers it ends at once with its exit code, one that ignores it (PID 1 without a
     * handler) dies with 137 after `terminationGracePeriodSeconds`; a container that never started
     * shows `ContainerCreating` again and ends `ContainerStatusUnknown` a moment later; a pod on no
     * node goes at once. The pod object goes once it ended.
     */
    const terminatePod = (entry: PodEntry, sigtermExitCode: number | undefined): void => {
      if (entry.signalled || podTerminal(entry.pod)) return
      entry.signalled = true
      signalled.add(entry.uid)
      const t = formatTimestamp(now())
      setPod(entry, { ...entry.pod, metadata: { ...entry.pod.metadata, deletionTimestamp: t } })
      countAsFailed(entry)
      const onNode = entry.pod.status?.conditions?.some((c) => c.type === "PodScheduled" && c.status === "True") ?? false
      if (!onNode) return removePod(entry)
      const statuses = entry.pod.status?.containerStatuses ?? []
      const running = statuses.some((c) => c.state?.running !== undefined)
      const end = (exitCode: number) => {
        const current = pods.get(entry.pod.metadata.name)
        if (current === undefined || current.uid !== entry.uid || podTerminal(current.pod)) return
        setPod(current, { ...current.pod, status: killedStatus(current.pod, exitCode) })
        removePod(current)
      }
      if (!running && statuses.length > 0 && statuses.every((c) => c.state?.terminated !== undefined)) return end(137)
      if (!running) {
        setPod(entry, {
          ...entry.pod,
          status: {
            ...entry.pod.status,
            containerStatuses: podContainers(entry.pod).map((c) => ({ ...containerId(c), state: { waiting: { reason: "ContainerCreating" } } }))
          }
        })
        return at(`pod ${entry.pod.metadata.name} lost its container`, now() + PodBehaviour.unknownContainerMillis, () => end(137))
      }
      recordEvent({ kind: "Pod", name: entry.pod.metadata.name, uid: entry.uid }, {
        reason: "Killing",
        message: "Stopping container agent",
        type: "Normal",
        source: "kubelet"
      })
      if (sigtermExitCode !== undefined) return end(sigtermExitCode)
      const grace = rec(entry.pod.spec)["terminationGracePeriodSeconds"]
      const graceMillis = typeof grace === "number" ? grace * 1000 : PodBehaviour.defaultTerminationGraceMillis
      at(`termination grace of pod ${entry.pod.metadata.name}`, now() + graceMillis, () => end(137))
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
        case "ContainerEnded":
          return {
            phase: pod.status?.phase ?? "Pending",
            conditions: withCondition(
              scheduled(pod, t),
              condition("Ready", "False", t, step.exitCode === 0 ? "PodCompleted" : "PodFailed")
            ),
            containerStatuses: containers.map((c) => ({
              ...containerId(c),
              state: { terminated: { exitCode: step.exitCode, reason: step.reason, finishedAt: t } }
            }))
          }
        case "Terminated": {
          const succeeded = step.exitCode === 0
          // no DisruptionTarget condition for an eviction: the real kubelet wrote none
          const conditions = withCondition(
            scheduled(pod, t),
            condition("Ready", "False", t, succeeded ? "PodCompleted" : "PodFailed")
          )
          const lost = { exitCode: 137, reason: "ContainerStatusUnknown", message: PodBehaviour.lostContainerMessage }
          return {
            phase: succeeded ? "Succeeded" : "Failed",
            ...(step.podReason === undefined ? {} : { reason: step.podReason }),
            ...(step.podMessage === undefined ? {} : { message: step.podMessage }),
            conditions,
            containerStatuses: containers.map((c) => {
              // a container that ended already keeps its state (and finishedAt) as the phase follows
              const ended = pod.status?.containerStatuses?.find((s) => s.name === c.name)?.state?.terminated
              return step.lost === true
                ? { ...containerId(c), state: { waiting: { reason: "ContainerCreating" } }, lastState: { terminated: lost } }
                : { ...containerId(c), state: { terminated: ended ?? { exitCode: step.exitCode, reason: step.reason, finishedAt: t } } }
            })
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
              if (current === undefined || current.uid !== entry.uid || current.signalled || podTerminal(current.pod)) return false
              if (step._tag === "Terminated" && step.events !== undefined) {
                // an eviction: the kubelet says so, then signals the container
                current.signalled = true
                signalled.add(current.uid)
                for (const event of step.events) {
                  recordEvent({ kind: "Pod", name, uid: current.uid }, { ...event, source: "kubelet" })
                }
              }
              setPod(current, { ...current.pod, status: kubeletStatus(current.pod, step, secretName) })
              if (step._tag === "Terminated" && step.lost === true) {
                at(`pod ${name} lost its container`, now() + PodBehaviour.unknownContainerMillis, () => {
                  const lostPod = pods.get(name)
                  if (lostPod === undefined || lostPod.uid !== entry.uid) return
                  setPod(lostPod, {
                    ...lostPod.pod,
                    status: {
                      ...lostPod.pod.status,
                      containerStatuses: (lostPod.pod.status?.containerStatuses ?? []).map((c) => ({
                        ...c,
                        state: { terminated: { exitCode: 137, reason: "ContainerStatusUnknown", message: PodBehaviour.unknownContainerMessage } }
                      }))
                    }
                  })
                })
              }
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
        const resources = resourceProblem(template(candidate).containers)
        if (resources !== undefined) return Effect.fail(invalid(name, `Job.batch "${name}" is invalid: ${resources}`))
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
    const evictionsNow = (): ReadonlyArray<Kube.Event> =>
      liveEvents().filter(isEviction).map((event) => kubeEvent(event, String(resourceVersion)))

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
      podsOfJob: (jobName) => Effect.sync(() => podsNamedForJob(jobName).map((entry) => entry.pod)),
      evictionEvents: watchStream(evictionSubscribers, evictionsNow),
      evictions: Effect.sync(evictionsNow),
      readEvents: (fieldSelector) =>
        Effect.suspend(() => {
          if (apiDown) return Effect.fail(outage("readEvents", fieldSelector))
          const terms = fieldSelector.split(",").filter((term) => term !== "").map((term) => term.split("="))
          const unknown = terms.find(([field]) => field === undefined || !(field in eventFields))
          if (unknown !== undefined || terms.some((term) => term.length !== 2)) {
            return Effect.fail(
              new ClusterError({
                operation: "readEvents",
                target: fieldSelector,
                transient: false,
                message: `"${unknown?.[0] ?? fieldSelector}" is not a known field selector: only "${Object.keys(eventFields).join('", "')}"`
              })
            )
          }
          return Effect.succeed(
            liveEvents()
              .filter((event) => terms.every(([field = "", value]) => eventFields[field]?.(event) === value))
              .map((event) => kubeEvent(event, String(resourceVersion)))
          )
        })
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
          createdAt: t,
          signalled: false
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
      recordEvent: (involved, event) =>
        Effect.sync(() =>
          recordEvent(
            { ...involved, uid: involved.kind === "Pod" ? pods.get(involved.name)?.uid : jobs.get(involved.name)?.uid },
            event
          )
        ),
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
      events: Effect.sync(liveEvents),
      wasSignalled: (podUid) => Effect.sync(() => signalled.has(podUid)),
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
