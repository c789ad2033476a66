// The zombie failure modes as a real node produces them: for each, the agent Config that makes
// Kubernetes write it (the agent image's behaviour comes from the Config's `env`, see
// test/infra/images/agent.sh), the verdict the executor must give, the first bad status to measure
// from, and what the recorded fixture of the testkit must be judged as.
// Shared by failure-modes.test.ts (the real `run` service) and record-fixtures.test.ts (no executor).
import type { ZombieReason } from "@executor/domain"
import type { NodeInfo } from "../support/nodeEnv.js"
import {
  conditionOf,
  containersOf,
  eventReason,
  podReasonOf,
  type Seen,
  type Step,
  terminatedOf,
  waitingReasons
} from "../support/nodeRecorder.js"

export interface ModeContext {
  readonly node: NodeInfo
  /** A PriorityClass that a ResourceQuota `pods: "0"` in the namespace is scoped to. */
  readonly quotaPriorityClass: string
  /** The name of that ResourceQuota. */
  readonly quotaName: string
}

/** Graces at their floors (docs/decisions.md#bounds), so that the suite takes seconds, not minutes. */
export const fastSpec = {
  heartbeat: "5m",
  taskTypes: ["llm"],
  zombieSweeperIntervalSeconds: 10,
  // far beyond every other grace: no deadline verdict unless a mode asks for one
  zombieJobTimeoutSeconds: 600,
  imagePullGraceSeconds: 5,
  unschedulableGraceSeconds: 30,
  podCreateGraceSeconds: 30
} as const

export const deadlineSeconds = 30

export interface Mode {
  /** The fixture's name (packages/testkit/test/fixtures/real-node/<name>.json). */
  readonly name: string
  readonly title: string
  /** The Config spec beyond `fastSpec` and the assignee. */
  readonly spec: (ctx: ModeContext) => Readonly<Record<string, unknown>>
  /** null: a success, nothing is published after the spawn. */
  readonly reason: ZombieReason | null
  /** What the detail must say (each pattern). */
  readonly detail: (ctx: ModeContext) => ReadonlyArray<RegExp>
  /** The first bad status Kubernetes wrote, as the watch saw it (latency is measured from it). */
  readonly firstBad?: (seen: Seen) => boolean
  /** The grace the verdict waits for (seconds), counted from `graceFrom`. */
  readonly grace: (spec: typeof fastSpec) => number
  /** What the grace counts from: the first bad status (default), the pod's or the Job's creation. */
  readonly graceFrom?: "pod" | "job"
  /** When the verdict is due after the Job was created (seconds), if the mode has a fixed time. */
  readonly dueAfterJob?: number
  /** The recording: how long at most, and what ends it early. */
  readonly record: {
    readonly seconds: number
    /** The Job's ttlSecondsAfterFinished in the recording. */
    readonly ttl?: number
    /**
     * Kubernetes writes one of several sequences for this mode: record this many runs, and each
     * variant seen (other than the mode's own) becomes a fixture of its own.
     */
    readonly replicas?: number
  }
  /** How the classifier must judge the recording under the default graces. */
  readonly fixture: {
    readonly summary: string
    readonly reason: ZombieReason | null
    readonly after: number
    readonly detail?: string
    /** The step judged: the first that satisfies this (default: the last step). */
    readonly judgedAt?: (step: { readonly job: Seen["job"]; readonly pods: Seen["pods"] }) => boolean
  }
}

/** A recorded sequence that differs from the mode's usual one: another fixture. */
export interface Variant {
  readonly suffix: string
  readonly summary: string
  readonly shows: (steps: ReadonlyArray<Step>) => boolean
}

/**
 * Seen on the real node: the kubelet lost the container as it killed it (a process that exits 0
 * on SIGTERM), and wrote `ContainerStatusUnknown` in `lastState`, then in `state`.
 */
export const lostContainer: Variant = {
  suffix: "lost",
  summary: "the kubelet lost the container as it killed it: the pod Failed, reason Evicted; the container waiting ContainerCreating with lastState terminated ContainerStatusUnknown exit 137 (restartCount 1), then terminated ContainerStatusUnknown; Job Failed BackoffLimitExceeded",
  shows: (steps) =>
    steps.some((step) => step.pods.some((pod) => containersOf(pod).some((c) => c.lastState?.terminated?.reason === "ContainerStatusUnknown")))
}

export const variants: ReadonlyArray<Variant> = [lostContainer]

const anyPod = (seen: Seen, accept: (pod: Seen["pods"][number]) => boolean) => seen.pods.some(accept)
const waiting = (...reasons: ReadonlyArray<string>) => (seen: Seen) =>
  seen.kind === "Pod" && anyPod(seen, (pod) => waitingReasons(pod).some((r) => reasons.includes(r)))
const crashed = (seen: Seen) =>
  seen.kind === "Pod" && anyPod(seen, (pod) => terminatedOf(pod).some((t) => (t.exitCode ?? 0) !== 0))
const jobCondition = (type: string) => (seen: Seen) => seen.kind === "Job" && conditionOf(seen.job, type) !== undefined
const evicted = (seen: Seen) =>
  (seen.kind === "Event" && eventReason(seen.object) === "Evicted") ||
  (seen.kind === "Pod" && anyPod(seen, (pod) => podReasonOf(pod) === "Evicted"))
const createFailed = (seen: Seen) => seen.kind === "Event" && eventReason(seen.object) === "FailedCreate"
const unscheduled = (seen: Seen) =>
  seen.kind === "Pod" && anyPod(seen, (pod) => conditionOf(pod, "PodScheduled")?.reason === "Unschedulable")
const complete = (step: { readonly job: Seen["job"] }) => conditionOf(step.job, "Complete") !== undefined
const failureTarget = (step: { readonly job: Seen["job"] }) => conditionOf(step.job, "FailureTarget") !== undefined

const sleepForever = { AGENT_SLEEP: "forever" }
const ephemeral16Mi = { resources: { limits: { "ephemeral-storage": "16Mi" } } }
const evictedMessage = "Pod ephemeral local storage usage exceeds the total limit of containers 16Mi."
const atOnce = () => 0

/** An ephemeral-storage eviction of a process that answers SIGTERM with `onSigterm` (agent.sh). */
function eviction(name: string, title: string, onSigterm: string, replicas: number, summary: string): Mode {
  return {
    name,
    title,
    spec: () => ({ ...ephemeral16Mi, env: { AGENT_WRITE_MIB: "64", ...sleepForever, AGENT_ON_SIGTERM: onSigterm } }),
    reason: "pod_evicted",
    detail: () => [/^pod \S+ evicted: /, new RegExp(escape(evictedMessage))],
    firstBad: evicted,
    grace: atOnce,
    record: { seconds: 60, replicas },
    fixture: { summary, reason: "pod_evicted", after: 0, detail: evictedMessage }
  }
}

/** A run killed at `activeDeadlineSeconds`, its process answering SIGTERM with `onSigterm`. */
function deadlineKill(name: string, title: string, onSigterm: string, record: Mode["record"], summary: string): Mode {
  return {
    name,
    title,
    spec: () => ({ zombieJobTimeoutSeconds: deadlineSeconds, env: { ...sleepForever, AGENT_ON_SIGTERM: onSigterm } }),
    reason: "deadline_exceeded",
    detail: () => [new RegExp(`^Job exceeded activeDeadlineSeconds=${deadlineSeconds}$`)],
    firstBad: jobCondition("FailureTarget"),
    grace: atOnce,
    dueAfterJob: deadlineSeconds,
    record,
    fixture: { summary, reason: "deadline_exceeded", after: 0, detail: `Job exceeded activeDeadlineSeconds=${deadlineSeconds}`, judgedAt: failureTarget }
  }
}

export const invalidImage = "Bad:Image::x"
export const missingSecret = "agent-secret-that-does-not-exist"

export const modes: ReadonlyArray<Mode> = [
  {
    name: "image-pull-unreachable",
    title: "an image on a port where nothing listens: ErrImagePull, then ImagePullBackOff, past the grace: image_pull_backoff",
    spec: ({ node }) => ({ image: node.images.unreachable }),
    reason: "image_pull_backoff",
    detail: ({ node }) => [/^(ErrImagePull|ImagePullBackOff) \(image /, new RegExp(`image ${escape(node.images.unreachable)}\\)`), /failed to pull|Back-off pulling/],
    firstBad: waiting("ErrImagePull", "ImagePullBackOff"),
    grace: (spec) => spec.imagePullGraceSeconds,
    record: { seconds: 45 },
    fixture: {
      summary: "an image on 127.0.0.1:5999 (nothing listens): ErrImagePull, then ImagePullBackOff, retried; Pod Pending for good, Job active, no condition",
      reason: "image_pull_backoff",
      after: 60,
      detail: "(image 127.0.0.1:5999/x:1)"
    }
  },
  {
    name: "invalid-image",
    title: "an invalid image name: InvalidImageName, pod_config_error at once",
    spec: () => ({ image: invalidImage }),
    reason: "pod_config_error",
    detail: () => [/^InvalidImageName \(image Bad:Image::x\)/, /invalid reference format/],
    firstBad: waiting("InvalidImageName"),
    grace: atOnce,
    record: { seconds: 12 },
    fixture: {
      summary: "an invalid image name: waiting InvalidImageName (Failed to apply default image tag ...: invalid reference format); Pod Pending for good",
      reason: "pod_config_error",
      after: 0,
      detail: "InvalidImageName (image Bad:Image::x)"
    }
  },
  {
    name: "missing-secret",
    title: "a Config secretName that does not exist: CreateContainerConfigError past the grace: pod_config_error",
    spec: () => ({ secretName: missingSecret }),
    reason: "pod_config_error",
    detail: () => [/^CreateContainerConfigError \(image /, new RegExp(`secret "${missingSecret}" not found`)],
    firstBad: waiting("CreateContainerConfigError"),
    grace: (spec) => spec.imagePullGraceSeconds,
    record: { seconds: 15 },
    fixture: {
      summary: "a missing Secret (envFrom): waiting CreateContainerConfigError, secret not found; Pod Pending for good",
      reason: "pod_config_error",
      after: 60,
      detail: `secret "${missingSecret}" not found`
    }
  },
  {
    name: "oom",
    title: "64 MiB held under a 16Mi memory limit: OOMKilled: pod_crash_no_stdout \"OOMKilled, exit 137\"",
    spec: () => ({ env: { AGENT_ALLOC_MIB: "64", ...sleepForever }, resources: { limits: { memory: "16Mi" } } }),
    reason: "pod_crash_no_stdout",
    detail: () => [/^OOMKilled, exit 137$/],
    firstBad: crashed,
    grace: atOnce,
    record: { seconds: 40 },
    fixture: {
      summary: "memory limit 16Mi, 64 MiB held by PID 1: terminated OOMKilled exit 137, then the pod Failed; Job FailureTarget, then Failed, BackoffLimitExceeded",
      reason: "pod_crash_no_stdout",
      after: 0,
      detail: "OOMKilled, exit 137"
    }
  },
  {
    name: "exit-1",
    title: "a process that exits 1: pod_crash_no_stdout \"Error, exit 1\"",
    spec: () => ({ env: { AGENT_STDERR: "agent: giving up", AGENT_EXIT: "1" } }),
    reason: "pod_crash_no_stdout",
    detail: () => [/^Error, exit 1$/],
    firstBad: crashed,
    grace: atOnce,
    record: { seconds: 40 },
    fixture: {
      summary: "exit 1: terminated Error exit 1, pod Failed (no status.reason); Job FailureTarget, then Failed, BackoffLimitExceeded",
      reason: "pod_crash_no_stdout",
      after: 0,
      detail: "Error, exit 1"
    }
  },
  deadlineKill(
    "deadline-exit-0",
    `activeDeadlineSeconds ${deadlineSeconds}, the process exits 0 on SIGTERM: deadline_exceeded at the deadline`,
    "0",
    { seconds: 60, replicas: 3 },
    `activeDeadlineSeconds ${deadlineSeconds}, the process exits 0 on SIGTERM: the job controller deletes the pod, FailureTarget DeadlineExceeded (the pod counted failed), the pod ends Succeeded (Completed, exit 0), the Job Failed DeadlineExceeded`
  ),
  deadlineKill(
    "deadline-ignores-sigterm",
    `activeDeadlineSeconds ${deadlineSeconds}, PID 1 ignores SIGTERM: deadline_exceeded at the deadline, not a grace later`,
    "ignore",
    { seconds: 90 },
    `activeDeadlineSeconds ${deadlineSeconds}, PID 1 ignores SIGTERM: the job controller deletes the pod, FailureTarget DeadlineExceeded, the pod killed after the 30 s termination grace (Error, exit 137), then the Job Failed DeadlineExceeded`
  ),
  {
    name: "unschedulable",
    title: "a cpu request of 64 on a 2-CPU node: Unschedulable past the grace: pod_not_scheduled",
    spec: () => ({ resources: { requests: { cpu: "64" } } }),
    reason: "pod_not_scheduled",
    detail: () => [/^pod \S+ not scheduled: 0\/1 nodes are available: 1 Insufficient cpu\./],
    firstBad: unscheduled,
    grace: (spec) => spec.unschedulableGraceSeconds,
    graceFrom: "pod",
    record: { seconds: 12 },
    fixture: {
      summary: "cpu request 64 on a 2-CPU node: PodScheduled=False reason Unschedulable (0/1 nodes are available: 1 Insufficient cpu.); event FailedScheduling",
      reason: "pod_not_scheduled",
      after: 120,
      detail: "not scheduled: 0/1 nodes are available: 1 Insufficient cpu."
    }
  },
  {
    name: "quota-no-pod",
    title: "a ResourceQuota pods: \"0\" for the agent's pods: no pod ever, FailedCreate: job_pod_create_failed with the quota message",
    spec: ({ quotaPriorityClass }) => ({ priorityClassName: quotaPriorityClass }),
    reason: "job_pod_create_failed",
    detail: ({ quotaName }) => [
      /^Job \S+ created no pod within 30s: Error creating: pods "\S+" is forbidden: /,
      new RegExp(`exceeded quota: ${quotaName}, requested: pods=1, used: pods=0, limited: pods=0`)
    ],
    firstBad: createFailed,
    grace: (spec) => spec.podCreateGraceSeconds,
    graceFrom: "job",
    record: { seconds: 20 },
    fixture: {
      summary: "a ResourceQuota pods: \"0\" (scoped to the pods' PriorityClass): no pod ever; the job controller's FailedCreate Warning (exceeded quota), repeated with back-off",
      reason: "job_pod_create_failed",
      after: 120,
      detail: "exceeded quota: agent-quota, requested: pods=1, used: pods=0, limited: pods=0"
    }
  },
  eviction(
    "evicted-ignores-sigterm",
    "an ephemeral-storage limit exceeded, PID 1 ignores SIGTERM: pod Failed/Evicted: pod_evicted",
    "ignore",
    2,
    "ephemeral-storage limit 16Mi exceeded, PID 1 ignores SIGTERM: kubelet Event Evicted, pod Failed reason Evicted; Job Failed BackoffLimitExceeded; no DisruptionTarget condition"
  ),
  eviction(
    "evicted-exit-0",
    "an ephemeral-storage limit exceeded, the process exits 0 on SIGTERM: pod Succeeded, Job Complete, only the Evicted Event tells (or, when the kubelet loses the container, pod Failed/Evicted): pod_evicted",
    "0",
    4,
    "ephemeral-storage limit 16Mi exceeded, the process exits 0 on SIGTERM: kubelet Event Evicted; pod Succeeded (no reason), Job Complete"
  ),
  {
    name: "exit-0-ttl",
    title: "a success with a small JOB_TTL_SECONDS_AFTER_FINISHED: nothing after the spawn, the Job goes",
    spec: () => ({ env: { AGENT_STDOUT: "agent: done" } }),
    reason: null,
    detail: () => [],
    grace: atOnce,
    record: { seconds: 40, ttl: 5 },
    fixture: {
      summary: "exit 0, ttlSecondsAfterFinished 5: pod Succeeded; Job SuccessCriteriaMet, then Complete CompletionsReached; the TTL controller deletes the Job (Terminating while our finalizer holds it)",
      reason: null,
      after: 0,
      judgedAt: complete
    }
  },
  {
    name: "pull-stuck-past-deadline",
    title: `an image pull that never succeeds, deleted at activeDeadlineSeconds ${deadlineSeconds} (pull grace beyond it): deadline_exceeded`,
    spec: ({ node }) => ({ image: node.images.unreachable, imagePullGraceSeconds: 120, zombieJobTimeoutSeconds: deadlineSeconds }),
    reason: "deadline_exceeded",
    detail: () => [new RegExp(`^Job exceeded activeDeadlineSeconds=${deadlineSeconds}$`)],
    firstBad: jobCondition("FailureTarget"),
    grace: atOnce,
    dueAfterJob: deadlineSeconds,
    record: { seconds: 60 },
    fixture: {
      summary: `a container that never started (image pull failing), its pod deleted at activeDeadlineSeconds ${deadlineSeconds}: FailureTarget DeadlineExceeded, then the Job Failed`,
      reason: "deadline_exceeded",
      after: 0,
      detail: `Job exceeded activeDeadlineSeconds=${deadlineSeconds}`
    }
  }
]

/** A regular expression that matches `text` literally. */
export function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")
}
