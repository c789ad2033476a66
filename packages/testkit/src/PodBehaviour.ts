import { Duration } from "effect"

/**
 * What the simulated kubelet does with the pod of one Job attempt (simulation.md, "Pod behaviours").
 * Durations are `Duration.DurationInput` (a bare number is milliseconds).
 */
export type PodBehaviour =
  /**
   * Running 5 s after the pod was created, exits 0 `after` it started running (0: at once, and the
   * status never says Running: the phase goes from Pending to Succeeded).
   */
  | { readonly _tag: "Succeed"; readonly after: Duration.DurationInput }
  /** Running, then terminated `after` with `exitCode` (default 1) and `reason` (default `Error`); exit 0 succeeds. */
  | {
      readonly _tag: "Fail"
      readonly after: Duration.DurationInput
      readonly exitCode?: number
      readonly reason?: string
    }
  /** Pending forever: `ErrImagePull` at 5 s, `ImagePullBackOff` 13 s later, retried with kubelet back-off. */
  | { readonly _tag: "ImagePullFails" }
  /** Like `ImagePullFails` for `after` (counted from the first pull failure), then Running; exits 0 a minute later. */
  | { readonly _tag: "ImagePullRecovers"; readonly after: Duration.DurationInput }
  /** Pending, waiting `InvalidImageName` from 5 s on. */
  | { readonly _tag: "InvalidImage" }
  /** Pending, waiting `CreateContainerConfigError` from 5 s on (a missing Secret). */
  | { readonly _tag: "ConfigError" }
  /** Pending, `PodScheduled=False` reason `Unschedulable` as soon as the pod exists. */
  | { readonly _tag: "Unschedulable" }
  /**
   * Running, then evicted by the kubelet `after` it started running (Events `Evicted`, `Killing`).
   * `exitCode` is how its process ends: by default 137 (PID 1 ignores SIGTERM and is killed), and
   * the pod fails with status.reason `Evicted`; 0 (it exits 0 on SIGTERM): the pod ends
   * `Succeeded` with no reason and the Job `Complete`, and only the Event tells. `lost`: the
   * kubelet lost the container as it killed it (seen on the real node for a process that exits 0
   * on SIGTERM): the pod fails with reason `Evicted` all the same, its container
   * `ContainerStatusUnknown`, 137, first in `lastState`, a second later in `state`.
   */
  | { readonly _tag: "Evicted"; readonly after: Duration.DurationInput; readonly exitCode?: number; readonly lost?: boolean }
  /**
   * Running until killed. `sigtermExitCode`: the process exits with it as soon as it gets SIGTERM
   * (at the Job deadline); by default PID 1 ignores SIGTERM and dies with 137 after the grace.
   */
  | { readonly _tag: "Hang"; readonly sigtermExitCode?: number }
  /** The job controller never creates the pod; it records a `FailedCreate` Event on the Job. */
  | { readonly _tag: "NoPod" }

/** The controller creates the pod, the kubelet never touches it: the test drives its status. */
export type Manual = "manual"

/**
 * Chooses the behaviour of a Job's pod. `attempt` is 1 + the number of Jobs of the same task
 * (task-id label) created before in this cluster.
 */
export type Resolver = (job: { readonly taskId: string; readonly jobName: string }, attempt: number) => PodBehaviour | Manual

export const succeed = (after: Duration.DurationInput): PodBehaviour => ({ _tag: "Succeed", after })
export const fail = (
  after: Duration.DurationInput,
  options: { readonly exitCode?: number; readonly reason?: string } = {}
): PodBehaviour => ({ _tag: "Fail", after, ...options })
export const imagePullFails: PodBehaviour = { _tag: "ImagePullFails" }
export const imagePullRecovers = (after: Duration.DurationInput): PodBehaviour => ({ _tag: "ImagePullRecovers", after })
export const invalidImage: PodBehaviour = { _tag: "InvalidImage" }
export const configError: PodBehaviour = { _tag: "ConfigError" }
export const unschedulable: PodBehaviour = { _tag: "Unschedulable" }
export const evicted = (
  after: Duration.DurationInput,
  options: { readonly exitCode?: number; readonly lost?: boolean } = {}
): PodBehaviour => ({
  _tag: "Evicted",
  after,
  ...options
})
export const hang: PodBehaviour = { _tag: "Hang" }
/** `hang` whose process exits with `exitCode` on SIGTERM. */
export const hangUntilSigterm = (exitCode: number): PodBehaviour => ({ _tag: "Hang", sigtermExitCode: exitCode })

/** The exit code a behaviour's process answers SIGTERM with; none: it ignores it (PID 1 without a handler). */
export const sigtermExitCode = (behaviour: PodBehaviour | Manual): number | undefined =>
  behaviour !== "manual" && behaviour._tag === "Hang" ? behaviour.sigtermExitCode : undefined
export const noPod: PodBehaviour = { _tag: "NoPod" }

/** Every pod of every task behaves the same. */
export const always = (behaviour: PodBehaviour | Manual): Resolver => () => behaviour

/**
 * The scenario form: a list per task id (attempt 1, attempt 2, ...; the last one repeats) and a
 * `default` list for tasks not listed.
 */
export const plan = (options: {
  readonly default: ReadonlyArray<PodBehaviour | Manual>
  readonly byTask?: Readonly<Record<string, ReadonlyArray<PodBehaviour | Manual>>>
}): Resolver =>
(job, attempt) => {
  const own = options.byTask?.[job.taskId]
  const list = own !== undefined && own.length > 0 ? own : options.default
  return list[Math.min(Math.max(attempt, 1), list.length) - 1] ?? "manual"
}

// ---------------------------------------------------------------------------------------------
// Fixed latencies (simulation.md, "Time and latencies")
// ---------------------------------------------------------------------------------------------

/** The job controller creates a Job's pod this long after the Job. */
export const podCreateDelayMillis = 1_000
/**
 * The kubelet's first status of a pod on the node: its container waits `ContainerCreating` (the real
 * node: 0.2-0.4 s after the pod was created).
 */
export const containerCreatingMillis = 300
/** A pod that runs is Running this long after it was created; image pulls fail first at the same time. */
export const podStartDelayMillis = 5_000
/**
 * The first failed pull shows `ErrImagePull` this long before the status says `ImagePullBackOff`
 * (the real node: ErrImagePull at 0.6-1.6 s, ImagePullBackOff in the status only at 14-16 s).
 */
export const firstErrImagePullVisibleMillis = 13_000
/**
 * How long a later pull retry shows `ErrImagePull` before the kubelet reports `ImagePullBackOff`
 * again (until its next sync of the pod; the real node: 12 s).
 */
export const errImagePullVisibleMillis = 12_000
/**
 * A container that ended is in the status this long before the pod phase follows, whatever its exit
 * code (the real node: 1-1.2 s; OOMKilled with phase Running, a process that exits at once with
 * phase Pending).
 */
export const phaseLagMillis = 1_000
/**
 * A container that never started, its pod deleted: the kubelet shows it `ContainerCreating` again
 * at once, and `ContainerStatusUnknown` this long after the deletion (the real node: 0.5-1 s).
 */
export const unknownContainerMillis = 1_000
/** `terminationGracePeriodSeconds` when the pod sets none: a process that ignores SIGTERM is killed this long after it. */
export const defaultTerminationGraceMillis = 30_000
/** The job controller's back-off between failed pod creations: 1 s doubling, capped at 60 s. */
export const podCreateRetryMillis = (n: number): number => Math.min(1_000 * 2 ** Math.max(0, n - 1), 60_000)
/** A recovered image pull: the container exits 0 this long after it started running. */
export const recoveredRunMillis = 60_000

/** Kubelet image-pull back-off before retry `n` (1-based): 10 s doubling, capped at 300 s. */
export const imagePullBackoffMillis = (n: number): number => Math.min(10_000 * 2 ** Math.max(0, n - 1), 300_000)

// ---------------------------------------------------------------------------------------------
// The kubelet timeline of a behaviour
// ---------------------------------------------------------------------------------------------

/** A pod status the kubelet reports; the cluster turns it into a full `status`. */
export type KubeletStep =
  | { readonly _tag: "Unschedulable"; readonly message: string }
  | { readonly _tag: "Waiting"; readonly reason: string }
  | { readonly _tag: "Running" }
  /** The container ended, and the status says so while the phase still says what it said (Running, or Pending). */
  | { readonly _tag: "ContainerEnded"; readonly exitCode: number; readonly reason: string }
  | {
      readonly _tag: "Terminated"
      readonly exitCode: number
      readonly reason: string
      /** status.reason / status.message of the pod (e.g. `Evicted`). */
      readonly podReason?: string
      readonly podMessage?: string
      /** Events the kubelet records about the pod just before (e.g. `Evicted`, `Killing`). */
      readonly events?: ReadonlyArray<KubeletEvent>
      /** The kubelet lost the container as it killed it: `ContainerStatusUnknown` (see `Evicted`). */
      readonly lost?: boolean
    }

export interface KubeletEvent {
  readonly reason: string
  readonly message: string
  readonly type: "Normal" | "Warning"
}

export interface TimedStep {
  /** Milliseconds after the pod's creation. */
  readonly at: number
  readonly step: KubeletStep
}

export const unschedulableMessage =
  "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
/** The kubelet's message (with its trailing space). */
export const evictedMessage = "Pod ephemeral local storage usage exceeds the total limit of containers 16Mi. "
export const unknownContainerMessage = "The container could not be located when the pod was terminated"
export const lostContainerMessage = "The container could not be located when the pod was deleted.  The container used to be Running"

const pullFailure = (image: string) =>
  `failed to pull and unpack image "${image}": failed to resolve reference "${image}": ${image}: not found`

/** The `waiting.message` the kubelet shows for `reason` on a container running `image`. */
export const waitingMessage = (reason: string, image: string, secretName: string): string | undefined => {
  switch (reason) {
    case "ErrImagePull":
      return pullFailure(image)
    case "ImagePullBackOff":
      return `Back-off pulling image "${image}": ErrImagePull: ${pullFailure(image)}`
    case "InvalidImageName":
      return `Failed to apply default image tag "${image}": couldn't parse image name "${image}": invalid reference format`
    case "CreateContainerConfigError":
      return `secret "${secretName}" not found`
    default:
      return undefined
  }
}

const millis = (input: Duration.DurationInput): number => Math.max(0, Duration.toMillis(Duration.decode(input)))

/**
 * `ErrImagePull` at 5 s; the status says `ImagePullBackOff` 13 s later; then a retry after 10 s,
 * 20 s, 40 s, ... up to 300 s of back-off, each showing `ErrImagePull` for a second (until `until`,
 * if given).
 */
function* imagePullTrouble(until: number | undefined): Generator<TimedStep> {
  const before = (at: number) => until === undefined || at < until
  let pullAt = podStartDelayMillis
  for (let retry = 1; before(pullAt); retry++) {
    yield { at: pullAt, step: { _tag: "Waiting", reason: "ErrImagePull" } }
    const backOffAt = pullAt + (retry === 1 ? firstErrImagePullVisibleMillis : errImagePullVisibleMillis)
    if (!before(backOffAt)) return
    yield { at: backOffAt, step: { _tag: "Waiting", reason: "ImagePullBackOff" } }
    pullAt = backOffAt + imagePullBackoffMillis(retry)
  }
}

/**
 * Running from `startAt` (a process that ends at once is never reported Running: the phase stays
 * Pending), the container ended `runMillis` later, the phase following `phaseLagMillis` after that.
 */
function* runThenExit(startAt: number, runMillis: number, exitCode: number, reason: string): Generator<TimedStep> {
  const endedAt = startAt + runMillis
  const finalReason = exitCode === 0 ? "Completed" : reason
  if (runMillis > 0) yield { at: startAt, step: { _tag: "Running" } }
  yield { at: endedAt, step: { _tag: "ContainerEnded", exitCode, reason: finalReason } }
  yield { at: endedAt + phaseLagMillis, step: { _tag: "Terminated", exitCode, reason: finalReason } }
}

/**
 * The status changes the kubelet makes for a behaviour, in time order (possibly endless). A pod on
 * the node shows `ContainerCreating` first; every running behaviour is Running at 5 s; durations of
 * `Succeed`, `Fail` and `Evicted` count from then.
 */
export function* kubeletSteps(behaviour: PodBehaviour): Generator<TimedStep> {
  const running: TimedStep = { at: podStartDelayMillis, step: { _tag: "Running" } }
  if (behaviour._tag !== "Unschedulable" && behaviour._tag !== "NoPod") {
    yield { at: containerCreatingMillis, step: { _tag: "Waiting", reason: "ContainerCreating" } }
  }
  switch (behaviour._tag) {
    case "Succeed":
      yield* runThenExit(podStartDelayMillis, millis(behaviour.after), 0, "Completed")
      return
    case "Fail":
      yield* runThenExit(podStartDelayMillis, millis(behaviour.after), behaviour.exitCode ?? 1, behaviour.reason ?? "Error")
      return
    case "ImagePullFails":
      yield* imagePullTrouble(undefined)
      return
    case "ImagePullRecovers": {
      const runningAt = podStartDelayMillis + millis(behaviour.after)
      yield* imagePullTrouble(runningAt)
      yield* runThenExit(runningAt, recoveredRunMillis, 0, "Completed")
      return
    }
    case "InvalidImage":
      yield { at: podStartDelayMillis, step: { _tag: "Waiting", reason: "InvalidImageName" } }
      return
    case "ConfigError":
      yield { at: podStartDelayMillis, step: { _tag: "Waiting", reason: "CreateContainerConfigError" } }
      return
    case "Unschedulable":
      yield { at: 0, step: { _tag: "Unschedulable", message: unschedulableMessage } }
      return
    case "Evicted": {
      yield running
      const exitCode = behaviour.exitCode ?? 137
      const events: ReadonlyArray<KubeletEvent> = [
        { reason: "Evicted", message: evictedMessage, type: "Warning" },
        { reason: "Killing", message: "Stopping container agent", type: "Normal" }
      ]
      yield {
        at: podStartDelayMillis + millis(behaviour.after),
        step: behaviour.lost === true
          ? { _tag: "Terminated", exitCode: 137, reason: "ContainerStatusUnknown", podReason: "Evicted", podMessage: evictedMessage, events, lost: true }
          : exitCode === 0
          ? { _tag: "Terminated", exitCode, reason: "Completed", events }
          : { _tag: "Terminated", exitCode, reason: "Error", podReason: "Evicted", podMessage: evictedMessage, events }
      }
      return
    }
    case "Hang":
      yield running
      return
    case "NoPod":
      return
  }
}
