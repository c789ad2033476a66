import { Option } from "effect"
import type { Graces } from "./AgentConfig.js"
import {
  type ContainerStatus,
  createdAt,
  type Event,
  eventTime,
  isDeleting,
  isPodNameOfJob,
  type Job,
  jobFailure,
  jobSucceeded,
  type Pod,
  podCondition,
  type TerminatedState
} from "./Kube.js"
import { type Millis, parseTimestamp, seconds } from "./Time.js"
import type { ZombieReason } from "./ZombieReason.js"

/** What the classifier needs to know about a tracked run (decisions D4.1). */
export interface RunView {
  readonly jobName: string
  /** Our clock at spawn, or the Job's creation time for a run rebuilt after a restart. */
  readonly startedAt: Millis
}

/** Bad signals whose verdict waits for a grace; the time each was first seen is kept by the caller. */
export type SignalKind = "image-pull" | "config-error"
export type FirstSeen = ReadonlyMap<SignalKind, Millis>

export type Judgement =
  /** Nothing wrong yet; look again at `recheckAt` (the deadline safety net). */
  | { readonly _tag: "Healthy"; readonly recheckAt: Millis }
  /** The run ended well (or its result is on the way): settle it, never publish. */
  | { readonly _tag: "Succeeded" }
  /** A bad signal is present but its grace has not run out: zombie at `dueAt` unless it clears. */
  | {
      readonly _tag: "Suspect"
      readonly reason: ZombieReason
      readonly detail: string
      readonly since: Millis
      readonly dueAt: Millis
    }
  /** The run will never produce a result. `since` is the first bad signal (for detection latency). */
  | { readonly _tag: "Zombie"; readonly reason: ZombieReason; readonly detail: string; readonly since: Millis }

export interface ClassifyInput {
  readonly run: RunView
  /** `None` when the Job is gone from the cache. */
  readonly job: Option.Option<Job>
  /** Pods owned by the run's Job. */
  readonly pods: ReadonlyArray<Pod>
  /**
   * Events that may be about the run (the classifier picks those about its Job and pods): the
   * kubelet's `Evicted` Events, the only trace of an eviction whose process exited 0 on SIGTERM,
   * and the job controller's `FailedCreate`.
   */
  readonly events: ReadonlyArray<Event>
  readonly graces: Graces
  readonly sweeperIntervalSeconds: number
  readonly now: Millis
  readonly firstSeen: FirstSeen
}

export interface Classification {
  readonly judgement: Judgement
  /** Signals present now, with the time each was first seen (kept from `firstSeen` when known). */
  readonly firstSeen: FirstSeen
}

const imagePullReasons = new Set(["ErrImagePull", "ImagePullBackOff"])
const configErrorReasons = new Set(["CreateContainerConfigError", "CreateContainerError", "RunContainerError"])
const permanentConfigReasons = new Set(["InvalidImageName", "ErrImageNeverPull"])
const crashLoopReasons = new Set(["CrashLoopBackOff"])

/** What Kubernetes wrote goes into a detail on one line, at most this long (its head is kept). */
export const messageLimit = 500

export const clip = (text: string, max: number = messageLimit): string => {
  const line = text.replace(/\s+/g, " ").trim()
  return line.length <= max ? line : `${line.slice(0, max - 1)}…`
}

/** `a: b: c` of the parts that say something, each clipped. */
const joined = (...parts: ReadonlyArray<string | undefined>): string =>
  parts.filter((p): p is string => p !== undefined && p.trim() !== "").map((p) => clip(p)).join(": ")

const none: ReadonlyArray<ContainerStatus> = []

// Called for every pod of every run on every sweep: no copy when there are no init containers.
const containers = (pod: Pod): ReadonlyArray<ContainerStatus> => {
  const init = pod.status?.initContainerStatuses
  const main = pod.status?.containerStatuses ?? none
  return init === undefined || init.length === 0 ? main : [...init, ...main]
}

const waiting = (pod: Pod, reasons: ReadonlySet<string>) => {
  for (const c of containers(pod)) {
    const reason = c.state?.waiting?.reason
    if (reason !== undefined && reasons.has(reason)) return Option.some(c)
  }
  return Option.none()
}

const describeWaiting = (container: ContainerStatus): string => {
  const reason = container.state?.waiting?.reason ?? "Waiting"
  const image = container.image !== undefined && container.image !== "" ? ` (image ${container.image})` : ""
  return joined(`${reason}${image}`, container.state?.waiting?.message)
}

/**
 * How a container ended: its current state, else its previous one when it is not running (the
 * kubelet keeps `ContainerStatusUnknown` of a container it lost in `lastState`).
 */
const terminatedOf = (container: ContainerStatus): TerminatedState | undefined =>
  container.state?.terminated ?? (container.state?.running === undefined ? container.lastState?.terminated : undefined)

const zombie = (reason: ZombieReason, detail: string, since: Millis): Judgement => ({
  _tag: "Zombie",
  reason,
  detail,
  since
})

const sinceEvent = (event: Event, now: Millis): Millis => Math.min(Option.getOrElse(eventTime(event), () => now), now)

const newest = (events: ReadonlyArray<Event>): Event | undefined =>
  events.reduce<Event | undefined>(
    (best, e) =>
      best === undefined || Option.getOrElse(eventTime(e), () => 0) >= Option.getOrElse(eventTime(best), () => 0) ? e : best,
    undefined
  )

/**
 * The kubelet's `Evicted` Events about the pods of the run: a pod still listed (matched by name,
 * and uid when both are known), or one already gone whose generated name is the Job's.
 */
const evictionsOfRun = (jobName: string, pods: ReadonlyArray<Pod>, events: ReadonlyArray<Event>) =>
  events.filter((event) => {
    if (event.reason !== "Evicted" || event.involvedObject.kind !== "Pod") return false
    const name = event.involvedObject.name ?? ""
    const listed = pods.find((pod) => pod.metadata.name === name)
    if (listed === undefined) return isPodNameOfJob(name, jobName)
    const uid = event.involvedObject.uid
    return uid === undefined || listed.metadata.uid === undefined || uid === listed.metadata.uid
  })

const evictionsOfPod = (pod: Pod, evictions: ReadonlyArray<Event>) =>
  evictions.filter((event) => event.involvedObject.name === pod.metadata.name)

const evictedVerdict = (podName: string, message: string | undefined, since: Millis): Judgement =>
  zombie("pod_evicted", `pod ${podName} evicted${message === undefined || message.trim() === "" ? "" : `: ${clip(message)}`}`, since)

/** The job controller's newest `FailedCreate` about the Job (a quota or admission denial). */
const createFailure = (job: Job, events: ReadonlyArray<Event>): string | undefined =>
  newest(
    events.filter(
      (e) =>
        e.reason === "FailedCreate" &&
        e.involvedObject.kind === "Job" &&
        e.involvedObject.name === job.metadata.name &&
        (e.involvedObject.uid === undefined || job.metadata.uid === undefined || e.involvedObject.uid === job.metadata.uid)
    )
  )?.message

/** Pod evidence that can never clear: the run is a zombie as soon as it is seen. */
const definitivePodVerdict = (pod: Pod, evictions: ReadonlyArray<Event>, now: Millis): Option.Option<Judgement> => {
  const status = pod.status
  const name = pod.metadata.name
  if (status?.reason === "Evicted") {
    return Option.some(evictedVerdict(name, status.message ?? newest(evictionsOfPod(pod, evictions))?.message, now))
  }
  const evicted = newest(evictionsOfPod(pod, evictions))
  if (evicted !== undefined) return Option.some(evictedVerdict(name, evicted.message, sinceEvent(evicted, now)))
  if (status?.reason === "DeadlineExceeded") {
    return Option.some(zombie("deadline_exceeded", `pod ${name} killed at the Job deadline`, now))
  }
  const permanent = waiting(pod, permanentConfigReasons)
  if (Option.isSome(permanent)) {
    return Option.some(zombie("pod_config_error", describeWaiting(permanent.value), now))
  }
  const crashLoop = waiting(pod, crashLoopReasons)
  if (Option.isSome(crashLoop)) {
    return Option.some(zombie("pod_crash_no_stdout", describeWaiting(crashLoop.value), now))
  }
  // A container that ended non-zero in a pod that never restarts: the kubelet writes it while the
  // phase still says Running (OOMKilled), and the phase follows.
  const ended = status?.phase === "Failed"
    ? containers(pod).map(terminatedOf)
    : pod.spec?.restartPolicy === "Never" && status?.phase !== "Succeeded"
      ? containers(pod).map((c) => c.state?.terminated)
      : []
  const crashed = ended.find((t): t is TerminatedState => t !== undefined && t.exitCode !== 0)
  if (crashed !== undefined) {
    const since = Option.getOrElse(parseTimestamp(crashed.finishedAt), () => now)
    return Option.some(
      zombie("pod_crash_no_stdout", joined(`${crashed.reason ?? "Error"}, exit ${crashed.exitCode}`, crashed.message), Math.min(since, now))
    )
  }
  if (status?.phase === "Failed" && !ended.some((t) => t?.exitCode === 0)) {
    return Option.some(zombie("pod_crash_no_stdout", joined(`pod ${name} failed`, status.reason, status.message), now))
  }
  return Option.none()
}

/** A pod that runs or has exited 0 is the only heartbeat a run has. */
const isProgressing = (pod: Pod): boolean => {
  const phase = pod.status?.phase
  if (phase === "Running" || phase === "Succeeded") return true
  return phase === "Failed" && containers(pod).some((c) => c.state?.terminated?.exitCode === 0)
}

interface Suspicion {
  readonly reason: ZombieReason
  readonly detail: string
  readonly since: Millis
  readonly dueAt: Millis
}

/**
 * Decides whether a run is a zombie now, may become one later, or is fine. Pure: the same input
 * always gives the same answer, so every detector (pod watcher, job watcher, sweeper, recovery)
 * agrees on the reason.
 */
export const classify = (input: ClassifyInput): Classification => {
  const { graces, now, pods, run } = input
  const deadlineAt = run.startedAt + seconds(graces.timeoutSeconds)
  const unenforcedDeadlineAt = deadlineAt + seconds(input.sweeperIntervalSeconds)
  const seen = new Map<SignalKind, Millis>()
  const done = (judgement: Judgement): Classification => ({ judgement, firstSeen: seen })

  if (Option.isNone(input.job)) {
    return done(zombie("executor_watch_lost", `Job ${run.jobName} is gone and its run produced no result`, now))
  }
  const job = input.job.value
  const evictions = evictionsOfRun(run.jobName, pods, input.events)
  const definitive = pods.flatMap((pod) => Option.toArray(definitivePodVerdict(pod, evictions, now)))
  const listed = new Set(pods.map((pod) => pod.metadata.name))
  // an evicted pod already gone (a Terminating Job's pods can be collected first)
  const goneEvicted = newest(evictions.filter((e) => !listed.has(e.involvedObject.name ?? "")))
  if (goneEvicted !== undefined) {
    definitive.push(evictedVerdict(goneEvicted.involvedObject.name ?? "", goneEvicted.message, sinceEvent(goneEvicted, now)))
  }

  const failure = jobFailure(job)
  if (Option.isSome(failure)) {
    const condition = failure.value
    const since = Math.min(Option.getOrElse(parseTimestamp(condition.lastTransitionTime), () => now), now)
    if (condition.reason === "DeadlineExceeded") {
      const limit = job.spec?.activeDeadlineSeconds ?? graces.timeoutSeconds
      return done(zombie("deadline_exceeded", `Job exceeded activeDeadlineSeconds=${limit}`, since))
    }
    const fromPod = definitive[0]
    if (fromPod !== undefined) return done(fromPod)
    return done(zombie("pod_crash_no_stdout", joined("Job failed", condition.reason, condition.message), since))
  }

  if (jobSucceeded(job)) {
    // Status alone cannot tell an eviction whose process exited 0 on SIGTERM (pod Succeeded, Job
    // Complete) from a good run: only the kubelet's Event does. A pod that failed and was replaced
    // by one that succeeded (backoffLimit above 0) did its work.
    const succeededPods = pods.filter((pod) => pod.status?.phase === "Succeeded")
    const evictedWinner = succeededPods.length === 0
      ? goneEvicted
      : succeededPods.flatMap((pod) => evictionsOfPod(pod, evictions))[0]
    if (evictedWinner === undefined) return done({ _tag: "Succeeded" })
    return done(evictedVerdict(evictedWinner.involvedObject.name ?? "", evictedWinner.message, sinceEvent(evictedWinner, now)))
  }

  if (isDeleting(job.metadata)) {
    const fromPod = definitive[0]
    if (fromPod !== undefined) return done(fromPod)
    const since = Math.min(Option.getOrElse(parseTimestamp(job.metadata.deletionTimestamp), () => now), now)
    return done(zombie("executor_watch_lost", `Job ${run.jobName} was deleted before its run produced a result`, since))
  }

  const fromPod = definitive[0]
  if (fromPod !== undefined) return done(fromPod)

  if (pods.some(isProgressing)) {
    if (pods.some((pod) => pod.status?.phase === "Running") && now >= unenforcedDeadlineAt) {
      return done(
        zombie(
          "deadline_exceeded",
          `pod still running ${Math.round((now - deadlineAt) / 1000)}s past its ${graces.timeoutSeconds}s deadline`,
          deadlineAt
        )
      )
    }
    return done({ _tag: "Healthy", recheckAt: unenforcedDeadlineAt })
  }

  const suspicions: Array<Suspicion> = []
  const remember = (kind: SignalKind): Millis => {
    const since = input.firstSeen.get(kind) ?? now
    seen.set(kind, since)
    return since
  }
  for (const pod of pods) {
    const pull = waiting(pod, imagePullReasons)
    if (Option.isSome(pull)) {
      const since = remember("image-pull")
      suspicions.push({
        reason: "image_pull_backoff",
        detail: describeWaiting(pull.value),
        since,
        dueAt: since + seconds(graces.imagePullGraceSeconds)
      })
    }
    const config = waiting(pod, configErrorReasons)
    if (Option.isSome(config)) {
      const since = remember("config-error")
      suspicions.push({
        reason: "pod_config_error",
        detail: describeWaiting(config.value),
        since,
        dueAt: since + seconds(graces.imagePullGraceSeconds)
      })
    }
    const scheduled = podCondition(pod, "PodScheduled")
    if ((pod.status?.phase ?? "Pending") === "Pending" && Option.isSome(scheduled) && scheduled.value.status === "False") {
      const since = Option.getOrElse(createdAt(pod.metadata), () => run.startedAt)
      const message = scheduled.value.message ?? scheduled.value.reason ?? "Unschedulable"
      suspicions.push({
        reason: "pod_not_scheduled",
        detail: `pod ${pod.metadata.name} not scheduled: ${clip(message)}`,
        since,
        dueAt: since + seconds(graces.unschedulableGraceSeconds)
      })
    }
  }
  if (pods.length === 0) {
    const since = Option.getOrElse(createdAt(job.metadata), () => run.startedAt)
    suspicions.push({
      reason: "job_pod_create_failed",
      detail: joined(`Job ${run.jobName} created no pod within ${graces.podCreateGraceSeconds}s`, createFailure(job, input.events)),
      since,
      dueAt: since + seconds(graces.podCreateGraceSeconds)
    })
  }

  const first = suspicions.reduce<Suspicion | undefined>(
    (best, s) => (best === undefined || s.dueAt < best.dueAt ? s : best),
    undefined
  )
  if (first !== undefined && now >= first.dueAt) return done(zombie(first.reason, first.detail, first.since))
  if (now >= unenforcedDeadlineAt) {
    return done(
      zombie("deadline_exceeded", `no pod progressed within the ${graces.timeoutSeconds}s deadline`, deadlineAt)
    )
  }
  if (first !== undefined) return done({ _tag: "Suspect", ...first, dueAt: Math.min(first.dueAt, unenforcedDeadlineAt) })
  return done({ _tag: "Healthy", recheckAt: unenforcedDeadlineAt })
}

/** When a judgement should be looked at again without any new event. */
export const recheckAt = (judgement: Judgement): Option.Option<Millis> => {
  switch (judgement._tag) {
    case "Healthy":
      return Option.some(judgement.recheckAt)
    case "Suspect":
      return Option.some(judgement.dueAt)
    default:
      return Option.none()
  }
}
