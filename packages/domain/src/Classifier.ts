import { Option } from "effect"
import type { Graces } from "./AgentConfig.js"
import {
  type ContainerStatus,
  createdAt,
  isDeleting,
  type Job,
  jobFailedCondition,
  jobSucceeded,
  type Pod,
  podCondition
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

const containers = (pod: Pod): ReadonlyArray<ContainerStatus> => [
  ...(pod.status?.initContainerStatuses ?? []),
  ...(pod.status?.containerStatuses ?? [])
]

const waiting = (pod: Pod, reasons: ReadonlySet<string>) =>
  Option.fromNullable(
    containers(pod).find((c) => c.state?.waiting?.reason !== undefined && reasons.has(c.state.waiting.reason))
  )

const describeWaiting = (container: ContainerStatus): string => {
  const reason = container.state?.waiting?.reason ?? "Waiting"
  const message = container.state?.waiting?.message
  const image = container.image !== undefined && container.image !== "" ? ` (image ${container.image})` : ""
  return message !== undefined && message !== "" ? `${reason}${image}: ${message}` : `${reason}${image}`
}

const zombie = (reason: ZombieReason, detail: string, since: Millis): Judgement => ({
  _tag: "Zombie",
  reason,
  detail,
  since
})

/** Pod evidence that can never clear: the run is a zombie as soon as it is seen. */
const definitivePodVerdict = (pod: Pod, now: Millis): Option.Option<Judgement> => {
  const status = pod.status
  const name = pod.metadata.name
  if (status?.reason === "Evicted") {
    return Option.some(zombie("pod_evicted", `pod ${name} evicted: ${status.message ?? "Evicted"}`, now))
  }
  if (status?.reason === "DeadlineExceeded") {
    return Option.some(zombie("deadline_exceeded", `pod ${name} killed at the Job deadline`, now))
  }
  const permanent = waiting(pod, permanentConfigReasons)
  if (Option.isSome(permanent)) {
    return Option.some(zombie("pod_config_error", describeWaiting(permanent.value), now))
  }
  const crashLoop = waiting(pod, new Set(["CrashLoopBackOff"]))
  if (Option.isSome(crashLoop)) {
    return Option.some(zombie("pod_crash_no_stdout", describeWaiting(crashLoop.value), now))
  }
  if (status?.phase === "Failed") {
    const crashed = containers(pod).find((c) => (c.state?.terminated?.exitCode ?? 0) !== 0)
    if (crashed !== undefined) {
      const terminated = crashed.state?.terminated
      const since = Option.getOrElse(parseTimestamp(terminated?.finishedAt), () => now)
      return Option.some(
        zombie("pod_crash_no_stdout", `${terminated?.reason ?? "Error"}, exit ${terminated?.exitCode}`, Math.min(since, now))
      )
    }
    const exitedCleanly = containers(pod).some((c) => c.state?.terminated?.exitCode === 0)
    if (!exitedCleanly) {
      const why = [status.reason, status.message].filter((s) => s !== undefined && s !== "").join(": ")
      return Option.some(zombie("pod_crash_no_stdout", `pod ${name} failed${why === "" ? "" : `: ${why}`}`, now))
    }
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
  if (jobSucceeded(job)) return done({ _tag: "Succeeded" })

  const definitive = pods.flatMap((pod) => Option.toArray(definitivePodVerdict(pod, now)))
  const failed = jobFailedCondition(job)
  if (Option.isSome(failed)) {
    const condition = failed.value
    const since = Math.min(Option.getOrElse(parseTimestamp(condition.lastTransitionTime), () => now), now)
    if (condition.reason === "DeadlineExceeded") {
      const limit = job.spec?.activeDeadlineSeconds ?? graces.timeoutSeconds
      return done(zombie("deadline_exceeded", `Job exceeded activeDeadlineSeconds=${limit}`, since))
    }
    const fromPod = definitive[0]
    if (fromPod !== undefined) return done(fromPod)
    const why = [condition.reason, condition.message].filter((s) => s !== undefined && s !== "").join(": ")
    return done(zombie("pod_crash_no_stdout", `Job failed${why === "" ? "" : `: ${why}`}`, since))
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
        detail: `pod ${pod.metadata.name} not scheduled: ${message}`,
        since,
        dueAt: since + seconds(graces.unschedulableGraceSeconds)
      })
    }
  }
  if (pods.length === 0) {
    const since = Option.getOrElse(createdAt(job.metadata), () => run.startedAt)
    suspicions.push({
      reason: "job_pod_create_failed",
      detail: `Job ${run.jobName} created no pod within ${graces.podCreateGraceSeconds}s`,
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
