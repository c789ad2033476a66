import { describe, expect, it } from "@effect/vitest"
import { Either, Option } from "effect"
import { defaultGraces, type Graces } from "../src/AgentConfig.js"
import {
  type Classification,
  type ClassifyInput,
  classify,
  type FirstSeen,
  type Judgement,
  messageLimit,
  recheckAt,
  type SignalKind
} from "../src/Classifier.js"
import { type Condition, type ContainerStatus, decodePod, type Event, type Job, type Pod } from "../src/Kube.js"
import type { Millis } from "../src/Time.js"
import type { ZombieReason } from "../src/ZombieReason.js"

// ---- fixtures --------------------------------------------------------------------------------

/** The run was spawned (and its Job created) at T0; its pod appears one second later. */
const T0: Millis = Date.parse("2026-06-01T12:00:00Z")
const sec = (n: number): Millis => n * 1000
const iso = (at: Millis): string => new Date(at).toISOString()

const JOB = "claude-agent-4aa57614-1a2b3c4d"
const TASK = "4aa57614-8835-4992-87e9-ca483ddbeae6"
const IMAGE = "registry.example/agent-claude:v1"
const POD_CREATED = T0 + sec(1)
const TIMEOUT = defaultGraces.timeoutSeconds
const INTERVAL = 60
/** Deadline (startedAt + timeout) plus one sweeper interval: the unenforced-deadline safety net. */
const SAFETY_NET = T0 + sec(TIMEOUT) + sec(INTERVAL)

const labels = { "agent.benjamin-borbe.de/task-id": TASK, "agent.benjamin-borbe.de/assignee": "claude-agent" }

const condition = (type: string, status: string, reason?: string, message?: string, at?: Millis): Condition => ({
  type,
  status,
  ...(reason === undefined ? {} : { reason }),
  ...(message === undefined ? {} : { message }),
  ...(at === undefined ? {} : { lastTransitionTime: iso(at) })
})

const makeJob = (
  opts: {
    readonly created?: Millis
    readonly conditions?: ReadonlyArray<Condition>
    readonly deleting?: Millis
    readonly succeeded?: number
    readonly activeDeadlineSeconds?: number
  } = {}
): Job => ({
  metadata: {
    name: JOB,
    namespace: "agents",
    labels,
    creationTimestamp: iso(opts.created ?? T0),
    ...(opts.deleting === undefined ? {} : { deletionTimestamp: iso(opts.deleting) })
  },
  spec: { activeDeadlineSeconds: opts.activeDeadlineSeconds ?? TIMEOUT, backoffLimit: 0, ttlSecondsAfterFinished: 1800 },
  status: {
    conditions: opts.conditions ?? [],
    ...(opts.succeeded === undefined ? {} : { succeeded: opts.succeeded })
  }
})

const failedJob = (reason: string | undefined, message?: string, at: Millis = T0 + sec(300)): Job =>
  makeJob({ conditions: [condition("Failed", "True", reason, message, at)] })

type PodStatus = NonNullable<Pod["status"]>
type ContainerState = NonNullable<ContainerStatus["state"]>

const agentContainer = (state: ContainerState): ContainerStatus => ({ name: "agent", image: IMAGE, state })

const makePod = (status: PodStatus, opts: { readonly name?: string; readonly created?: Millis } = {}): Pod => ({
  metadata: {
    name: opts.name ?? `${JOB}-x7k2p`,
    namespace: "agents",
    labels,
    creationTimestamp: iso(opts.created ?? POD_CREATED),
    ownerReferences: [{ apiVersion: "batch/v1", kind: "Job", name: JOB, controller: true }]
  },
  status
})

const scheduled = condition("PodScheduled", "True")

const waitingPod = (reason: string, message?: string, created?: Millis): Pod =>
  makePod(
    {
      phase: "Pending",
      conditions: [scheduled],
      containerStatuses: [
        agentContainer({ waiting: { reason, ...(message === undefined ? {} : { message }) } })
      ]
    },
    created === undefined ? {} : { created }
  )

const runningPod = (name?: string): Pod =>
  makePod(
    {
      phase: "Running",
      conditions: [scheduled, condition("Ready", "True")],
      containerStatuses: [agentContainer({ running: { startedAt: iso(T0 + sec(6)) } })]
    },
    name === undefined ? {} : { name }
  )

const pendingPod = (): Pod => makePod({ phase: "Pending", conditions: [scheduled] })

const terminatedPod = (phase: string, exitCode: number, reason: string, finishedAt: Millis = T0 + sec(120)): Pod =>
  makePod({
    phase,
    conditions: [scheduled],
    containerStatuses: [agentContainer({ terminated: { exitCode, reason, finishedAt: iso(finishedAt) } })]
  })

const evictedPod = (message = "The node was low on resource: memory."): Pod =>
  makePod({
    phase: "Failed",
    reason: "Evicted",
    message,
    containerStatuses: [agentContainer({ terminated: { exitCode: 137, reason: "Error" } })]
  })

const unschedulablePod = (
  opts: { readonly name?: string; readonly created?: Millis; readonly message?: string } = {}
): Pod =>
  makePod(
    {
      phase: "Pending",
      conditions: [
        condition(
          "PodScheduled",
          "False",
          "Unschedulable",
          opts.message ?? "0/3 nodes are available: 3 Insufficient cpu."
        )
      ]
    },
    { ...(opts.name === undefined ? {} : { name: opts.name }), ...(opts.created === undefined ? {} : { created: opts.created }) }
  )

const noSignals: FirstSeen = new Map()
const seenSince = (entries: ReadonlyArray<readonly [SignalKind, Millis]>): FirstSeen => new Map(entries)

const input = (over: Partial<ClassifyInput> & { readonly now: Millis }): ClassifyInput => ({
  run: { jobName: JOB, startedAt: T0 },
  job: Option.some(makeJob()),
  pods: [],
  events: [],
  graces: defaultGraces,
  sweeperIntervalSeconds: INTERVAL,
  firstSeen: noSignals,
  ...over
})

const withGraces = (over: Partial<Graces>): Graces => ({ ...defaultGraces, ...over })

const judge = (over: Partial<ClassifyInput> & { readonly now: Millis }): Judgement => classify(input(over)).judgement

type Zombie = Extract<Judgement, { readonly _tag: "Zombie" }>
type Suspect = Extract<Judgement, { readonly _tag: "Suspect" }>
type Healthy = Extract<Judgement, { readonly _tag: "Healthy" }>

const expectZombie = (judgement: Judgement, reason: ZombieReason): Zombie => {
  expect(judgement, JSON.stringify(judgement)).toMatchObject({ _tag: "Zombie", reason })
  return judgement as Zombie
}
const expectSuspect = (judgement: Judgement, reason: ZombieReason): Suspect => {
  expect(judgement, JSON.stringify(judgement)).toMatchObject({ _tag: "Suspect", reason })
  return judgement as Suspect
}
const expectHealthy = (judgement: Judgement): Healthy => {
  expect(judgement, JSON.stringify(judgement)).toMatchObject({ _tag: "Healthy" })
  return judgement as Healthy
}
const signals = (classification: Classification): Record<string, Millis> =>
  Object.fromEntries(classification.firstSeen)

// ---- Job conditions (executor.md §5.4, as fixed by decisions D4.5) ----------------------------

describe("Classifier: Job conditions", () => {
  it("a Complete Job is Succeeded (never a verdict), whatever its pods show", () => {
    const complete = makeJob({ conditions: [condition("Complete", "True", undefined, undefined, T0 + sec(300))] })
    expect(judge({ job: Option.some(complete), pods: [runningPod()], now: T0 + sec(301) })).toEqual({
      _tag: "Succeeded"
    })
    expect(judge({ job: Option.some(complete), pods: [], now: SAFETY_NET + sec(3600) })).toEqual({ _tag: "Succeeded" })
  })

  it("a Job with a succeeded pod counter is Succeeded even before the Complete condition lands", () => {
    expect(judge({ job: Option.some(makeJob({ succeeded: 1 })), now: T0 + sec(60) })).toEqual({ _tag: "Succeeded" })
  })

  it("Failed with reason DeadlineExceeded ⇒ deadline_exceeded, since the condition's transition time", () => {
    const failedAt = T0 + sec(TIMEOUT)
    const killedPod = makePod({
      phase: "Failed",
      reason: "DeadlineExceeded",
      containerStatuses: [agentContainer({ terminated: { exitCode: 137, reason: "Error", finishedAt: iso(failedAt) } })]
    })
    const zombie = expectZombie(
      judge({
        job: Option.some(failedJob("DeadlineExceeded", "Job was active longer than specified deadline", failedAt)),
        pods: [killedPod],
        now: failedAt + sec(2)
      }),
      "deadline_exceeded"
    )
    expect(zombie.since).toBe(failedAt)
  })

  it("Failed with reason DeadlineExceeded and no pod left ⇒ deadline_exceeded", () => {
    expectZombie(
      judge({ job: Option.some(failedJob("DeadlineExceeded")), pods: [], now: T0 + sec(400) }),
      "deadline_exceeded"
    )
  })

  it("Failed BackoffLimitExceeded takes the reason from the pod: OOMKilled exit 137 ⇒ pod_crash_no_stdout", () => {
    const zombie = expectZombie(
      judge({
        job: Option.some(failedJob("BackoffLimitExceeded", "Job has reached the specified backoff limit")),
        pods: [terminatedPod("Failed", 137, "OOMKilled")],
        now: T0 + sec(301)
      }),
      "pod_crash_no_stdout"
    )
    expect(zombie.detail).toContain("OOMKilled, exit 137")
  })

  it("Failed BackoffLimitExceeded with an evicted pod ⇒ pod_evicted", () => {
    const zombie = expectZombie(
      judge({ job: Option.some(failedJob("BackoffLimitExceeded")), pods: [evictedPod()], now: T0 + sec(301) }),
      "pod_evicted"
    )
    expect(zombie.detail).toContain("The node was low on resource: memory.")
  })

  it("Failed BackoffLimitExceeded with a plain crash ⇒ pod_crash_no_stdout naming reason and exit code", () => {
    const zombie = expectZombie(
      judge({
        job: Option.some(failedJob("BackoffLimitExceeded")),
        pods: [terminatedPod("Failed", 1, "Error")],
        now: T0 + sec(301)
      }),
      "pod_crash_no_stdout"
    )
    expect(zombie.detail).toContain("Error, exit 1")
  })

  it("BackoffLimitExceeded is never mapped to deadline_exceeded (§8.8)", () => {
    for (const pods of [[], [terminatedPod("Failed", 2, "Error")], [terminatedPod("Failed", 137, "OOMKilled")]]) {
      const judgement = judge({ job: Option.some(failedJob("BackoffLimitExceeded")), pods, now: T0 + sec(301) })
      expect(judgement).toMatchObject({ _tag: "Zombie" })
      expect(judgement).not.toMatchObject({ reason: "deadline_exceeded" })
    }
  })

  it("Failed with an empty reason and message, or a message only, and no pod ⇒ pod_crash_no_stdout (items 71, 77)", () => {
    expectZombie(judge({ job: Option.some(failedJob(undefined)), now: T0 + sec(301) }), "pod_crash_no_stdout")
    expectZombie(judge({ job: Option.some(failedJob("", "")), now: T0 + sec(301) }), "pod_crash_no_stdout")
    expectZombie(
      judge({ job: Option.some(failedJob(undefined, "something went wrong")), now: T0 + sec(301) }),
      "pod_crash_no_stdout"
    )
  })

  it("a Failed condition that is not True is not a failure", () => {
    const notFailed = makeJob({ conditions: [condition("Failed", "False", "DeadlineExceeded")] })
    expectHealthy(judge({ job: Option.some(notFailed), pods: [runningPod()], now: T0 + sec(60) }))
  })

  it("the Job gone from the cache (Option.none()) ⇒ executor_watch_lost at once", () => {
    for (const pods of [[], [runningPod()], [pendingPod()]]) {
      const now = T0 + sec(30)
      const zombie = expectZombie(judge({ job: Option.none(), pods, now }), "executor_watch_lost")
      expect(zombie.since).toBe(now)
      expect(zombie.detail).toContain(JOB)
    }
  })

  it("a Job being deleted (deletionTimestamp) without a result ⇒ executor_watch_lost since the deletion", () => {
    const deletedAt = T0 + sec(200)
    for (const pods of [[], [runningPod()], [pendingPod()]]) {
      const zombie = expectZombie(
        judge({ job: Option.some(makeJob({ deleting: deletedAt })), pods, now: deletedAt + sec(5) }),
        "executor_watch_lost"
      )
      expect(zombie.since).toBe(deletedAt)
    }
  })

  it("a Job being deleted after it completed is Succeeded, not a verdict", () => {
    const job = makeJob({ deleting: T0 + sec(400), conditions: [condition("Complete", "True")] })
    expect(judge({ job: Option.some(job), now: T0 + sec(401) })).toEqual({ _tag: "Succeeded" })
  })
})

// ---- pod table (executor.md §5.5, decisions D4.5/D4.6) -----------------------------------------

describe("Classifier: image pull failures", () => {
  for (const reason of ["ErrImagePull", "ImagePullBackOff"]) {
    it(`${reason} first seen now ⇒ Suspect image_pull_backoff, due one imagePull grace later`, () => {
      const now = POD_CREATED + sec(5)
      const result = classify(input({ pods: [waitingPod(reason, "Back-off pulling image")], now }))
      const suspect = expectSuspect(result.judgement, "image_pull_backoff")
      expect(suspect.since).toBe(now)
      expect(suspect.dueAt).toBe(now + sec(60))
      expect(signals(result)).toEqual({ "image-pull": now })
    })

    it(`${reason}: Suspect one ms before the grace, Zombie at exactly the grace and after, since kept`, () => {
      const firstAt = POD_CREATED + sec(5)
      const firstSeen = seenSince([["image-pull", firstAt]])
      const pods = [waitingPod(reason)]
      const before = classify(input({ pods, firstSeen, now: firstAt + sec(60) - 1 }))
      expect(expectSuspect(before.judgement, "image_pull_backoff")).toMatchObject({
        since: firstAt,
        dueAt: firstAt + sec(60)
      })
      expect(signals(before)).toEqual({ "image-pull": firstAt })

      const atGrace = classify(input({ pods, firstSeen, now: firstAt + sec(60) }))
      expect(expectZombie(atGrace.judgement, "image_pull_backoff").since).toBe(firstAt)

      const after = classify(input({ pods, firstSeen, now: firstAt + sec(600) }))
      expect(expectZombie(after.judgement, "image_pull_backoff").since).toBe(firstAt)
    })
  }

  it("the detail names the image and the kubelet's message", () => {
    const judgement = judge({
      pods: [waitingPod("ImagePullBackOff", `Back-off pulling image "${IMAGE}"`)],
      now: POD_CREATED + sec(10)
    })
    const suspect = expectSuspect(judgement, "image_pull_backoff")
    expect(suspect.detail).toContain("ImagePullBackOff")
    expect(suspect.detail).toContain(IMAGE)
  })

  it("ErrImagePull alternating with ImagePullBackOff is one signal: its first-seen time is carried", () => {
    const firstAt = POD_CREATED + sec(5)
    const first = classify(input({ pods: [waitingPod("ErrImagePull")], now: firstAt }))
    const second = classify(
      input({ pods: [waitingPod("ImagePullBackOff")], firstSeen: first.firstSeen, now: firstAt + sec(15) })
    )
    expect(signals(second)).toEqual({ "image-pull": firstAt })
    const third = classify(
      input({ pods: [waitingPod("ErrImagePull")], firstSeen: second.firstSeen, now: firstAt + sec(60) })
    )
    expect(expectZombie(third.judgement, "image_pull_backoff").since).toBe(firstAt)
  })

  it("a signal that has cleared is dropped from the returned firstSeen", () => {
    const firstSeen = seenSince([
      ["image-pull", T0 + sec(5)],
      ["config-error", T0 + sec(7)]
    ])
    const stillPulling = classify(input({ pods: [waitingPod("ImagePullBackOff")], firstSeen, now: T0 + sec(20) }))
    expect(signals(stillPulling)).toEqual({ "image-pull": T0 + sec(5) })

    const cleared = classify(input({ pods: [pendingPod()], firstSeen, now: T0 + sec(20) }))
    expectHealthy(cleared.judgement)
    expect(signals(cleared)).toEqual({})
  })

  it("an image pull that recovers (pod Running) is Healthy and forgets the signal", () => {
    const firstSeen = seenSince([["image-pull", POD_CREATED + sec(5)]])
    const result = classify(input({ pods: [runningPod()], firstSeen, now: POD_CREATED + sec(50) }))
    expect(expectHealthy(result.judgement).recheckAt).toBe(SAFETY_NET)
    expect(signals(result)).toEqual({})
  })

  it("the caller's firstSeen map is not mutated", () => {
    const firstSeen = new Map<SignalKind, Millis>([["config-error", T0]])
    classify(input({ pods: [waitingPod("ErrImagePull")], firstSeen, now: T0 + sec(10) }))
    expect(Object.fromEntries(firstSeen)).toEqual({ "config-error": T0 })
  })

  it("imagePullGraceSeconds 0 ⇒ Zombie at once", () => {
    const now = POD_CREATED + sec(5)
    const zombie = expectZombie(
      judge({ pods: [waitingPod("ErrImagePull")], graces: withGraces({ imagePullGraceSeconds: 0 }), now }),
      "image_pull_backoff"
    )
    expect(zombie.since).toBe(now)
  })

  it("a custom imagePull grace is honoured", () => {
    const firstSeen = seenSince([["image-pull", T0 + sec(5)]])
    const graces = withGraces({ imagePullGraceSeconds: 300 })
    const pods = [waitingPod("ImagePullBackOff")]
    expectSuspect(judge({ pods, graces, firstSeen, now: T0 + sec(305) - 1 }), "image_pull_backoff")
    expectZombie(judge({ pods, graces, firstSeen, now: T0 + sec(305) }), "image_pull_backoff")
  })
})

describe("Classifier: container config errors", () => {
  for (const reason of ["InvalidImageName", "ErrImageNeverPull"]) {
    it(`${reason} ⇒ pod_config_error at once (it cannot clear)`, () => {
      const now = POD_CREATED + sec(2)
      const zombie = expectZombie(
        judge({ pods: [waitingPod(reason, `Failed to apply default image tag "bad image"`)], now }),
        "pod_config_error"
      )
      expect(zombie.since).toBe(now)
      expect(zombie.detail).toContain(reason)
    })
  }

  for (const reason of ["CreateContainerConfigError", "CreateContainerError", "RunContainerError"]) {
    it(`${reason} ⇒ Suspect pod_config_error within the imagePull grace, Zombie at exactly the grace`, () => {
      const firstAt = POD_CREATED + sec(3)
      const pods = [waitingPod(reason, `secret "agent-secrets" not found`)]
      const first = classify(input({ pods, now: firstAt }))
      expect(expectSuspect(first.judgement, "pod_config_error")).toMatchObject({
        since: firstAt,
        dueAt: firstAt + sec(60)
      })
      expect(signals(first)).toEqual({ "config-error": firstAt })

      const firstSeen = first.firstSeen
      expectSuspect(judge({ pods, firstSeen, now: firstAt + sec(60) - 1 }), "pod_config_error")
      const zombie = expectZombie(judge({ pods, firstSeen, now: firstAt + sec(60) }), "pod_config_error")
      expect(zombie.since).toBe(firstAt)
      expect(zombie.detail).toContain(reason)
      expect(zombie.detail).toContain(`secret "agent-secrets" not found`)
    })
  }

  it("a config error with imagePullGraceSeconds 0 ⇒ Zombie at once", () => {
    expectZombie(
      judge({
        pods: [waitingPod("CreateContainerConfigError")],
        graces: withGraces({ imagePullGraceSeconds: 0 }),
        now: POD_CREATED + sec(3)
      }),
      "pod_config_error"
    )
  })

  it("a config error that clears (pod Running) is Healthy", () => {
    const result = classify(
      input({
        pods: [runningPod()],
        firstSeen: seenSince([["config-error", POD_CREATED]]),
        now: POD_CREATED + sec(30)
      })
    )
    expectHealthy(result.judgement)
    expect(signals(result)).toEqual({})
  })
})

describe("Classifier: terminal pod states", () => {
  it("status.reason Evicted ⇒ pod_evicted at once, before the Job notices", () => {
    const now = T0 + sec(600)
    const zombie = expectZombie(judge({ pods: [evictedPod()], now }), "pod_evicted")
    expect(zombie.since).toBe(now)
    expect(zombie.detail).toContain("The node was low on resource: memory.")
  })

  it("CrashLoopBackOff ⇒ pod_crash_no_stdout", () => {
    const pod = makePod({
      phase: "Running",
      containerStatuses: [agentContainer({ waiting: { reason: "CrashLoopBackOff", message: "back-off 5m0s" } })]
    })
    expectZombie(judge({ pods: [pod], now: T0 + sec(100) }), "pod_crash_no_stdout")
  })

  it("Failed with a non-zero exit ⇒ pod_crash_no_stdout since the container finished", () => {
    const finishedAt = T0 + sec(90)
    const zombie = expectZombie(
      judge({ pods: [terminatedPod("Failed", 1, "Error", finishedAt)], now: finishedAt + sec(1) }),
      "pod_crash_no_stdout"
    )
    expect(zombie.since).toBe(finishedAt)
    expect(zombie.detail).toContain("exit 1")
  })

  it("Failed with exit 137 OOMKilled ⇒ pod_crash_no_stdout with detail 'OOMKilled, exit 137'", () => {
    const zombie = expectZombie(
      judge({ pods: [terminatedPod("Failed", 137, "OOMKilled")], now: T0 + sec(121) }),
      "pod_crash_no_stdout"
    )
    expect(zombie.detail).toContain("OOMKilled, exit 137")
  })

  const noVerdict: ReadonlyArray<readonly [string, Pod]> = [
    ["Failed with exit 0", terminatedPod("Failed", 0, "Completed")],
    ["Succeeded", terminatedPod("Succeeded", 0, "Completed")],
    ["Running", runningPod()],
    ["Pending without a waiting reason", pendingPod()],
    ["Pending, waiting ContainerCreating", waitingPod("ContainerCreating")],
    ["Pending without any status detail", makePod({})]
  ]
  for (const [what, pod] of noVerdict) {
    it(`${what} ⇒ no verdict (Healthy until the deadline safety net)`, () => {
      const result = classify(input({ pods: [pod], now: T0 + sec(600) }))
      expect(expectHealthy(result.judgement).recheckAt).toBe(SAFETY_NET)
      expect(signals(result)).toEqual({})
    })
  }
})

describe("Classifier: unschedulable pods (PodScheduled=False)", () => {
  it("Suspect before unschedulableGraceSeconds after pod creation, Zombie at exactly the grace", () => {
    const pods = [unschedulablePod()]
    const due = POD_CREATED + sec(120)
    expect(expectSuspect(judge({ pods, now: POD_CREATED + sec(10) }), "pod_not_scheduled")).toMatchObject({
      since: POD_CREATED,
      dueAt: due
    })
    expectSuspect(judge({ pods, now: due - 1 }), "pod_not_scheduled")
    const zombie = expectZombie(judge({ pods, now: due }), "pod_not_scheduled")
    expect(zombie.since).toBe(POD_CREATED)
    expect(zombie.detail).toContain("0/3 nodes are available: 3 Insufficient cpu.")
    expectZombie(judge({ pods, now: due + sec(1000) }), "pod_not_scheduled")
  })

  it("is judged on its own grace, long before the Job deadline (§8.9)", () => {
    const due = POD_CREATED + sec(120)
    expect(due).toBeLessThan(T0 + sec(TIMEOUT))
    expectZombie(judge({ pods: [unschedulablePod()], now: due }), "pod_not_scheduled")
  })

  it("a custom unschedulable grace is honoured", () => {
    const graces = withGraces({ unschedulableGraceSeconds: 300 })
    const pods = [unschedulablePod()]
    expectSuspect(judge({ pods, graces, now: POD_CREATED + sec(299) }), "pod_not_scheduled")
    expectSuspect(judge({ pods, graces, now: POD_CREATED + sec(300) - 1 }), "pod_not_scheduled")
    expectZombie(judge({ pods, graces, now: POD_CREATED + sec(300) }), "pod_not_scheduled")
  })

  it("the grace counts from the pod's creation, not from the first observation", () => {
    const created = T0 + sec(30)
    expectZombie(
      judge({ pods: [unschedulablePod({ created })], firstSeen: noSignals, now: created + sec(120) }),
      "pod_not_scheduled"
    )
  })

  it("PodScheduled=True, or no conditions at all, is no verdict", () => {
    const scheduledPending = makePod({ phase: "Pending", conditions: [scheduled] })
    const bare = makePod({ phase: "Pending" })
    for (const pod of [scheduledPending, bare]) {
      expectHealthy(judge({ pods: [pod], now: POD_CREATED + sec(600) }))
    }
  })

  it("pods [Running, Pending-unschedulable past grace] ⇒ not a zombie, in either order (item 101)", () => {
    const stuck = unschedulablePod({ name: `${JOB}-stuck` })
    const running = runningPod(`${JOB}-run`)
    for (const pods of [
      [running, stuck],
      [stuck, running]
    ]) {
      expectHealthy(judge({ pods, now: POD_CREATED + sec(600) }))
    }
  })
})

describe("Classifier: a Job without a pod", () => {
  it("Suspect job_pod_create_failed before podCreateGraceSeconds after Job creation, Zombie at exactly", () => {
    const due = T0 + sec(120)
    expect(expectSuspect(judge({ pods: [], now: T0 + sec(1) }), "job_pod_create_failed")).toMatchObject({
      since: T0,
      dueAt: due
    })
    expectSuspect(judge({ pods: [], now: due - 1 }), "job_pod_create_failed")
    const zombie = expectZombie(judge({ pods: [], now: due }), "job_pod_create_failed")
    expect(zombie.since).toBe(T0)
    expect(zombie.detail).toContain(JOB)
  })

  it("counts from the Job's creation time, not from the run's start", () => {
    const created = T0 + sec(40)
    const job = Option.some(makeJob({ created }))
    expectSuspect(judge({ job, pods: [], now: T0 + sec(120) }), "job_pod_create_failed")
    expectZombie(judge({ job, pods: [], now: created + sec(120) }), "job_pod_create_failed")
  })

  it("a custom podCreate grace is honoured", () => {
    const graces = withGraces({ podCreateGraceSeconds: 30 })
    expectSuspect(judge({ graces, pods: [], now: T0 + sec(30) - 1 }), "job_pod_create_failed")
    expectZombie(judge({ graces, pods: [], now: T0 + sec(30) }), "job_pod_create_failed")
  })

  it("once a pod exists the no-pod suspicion is gone", () => {
    expectHealthy(judge({ pods: [pendingPod()], now: T0 + sec(500) }))
  })
})

describe("Classifier: the deadline safety net (D4.7)", () => {
  it("a Running pod is Healthy one ms before deadline + one sweeper interval", () => {
    expect(expectHealthy(judge({ pods: [runningPod()], now: SAFETY_NET - 1 })).recheckAt).toBe(SAFETY_NET)
  })

  it("a Running pod at the deadline itself is still Healthy (the Job controller enforces it first)", () => {
    expectHealthy(judge({ pods: [runningPod()], now: T0 + sec(TIMEOUT) }))
  })

  it("a Running pod at exactly deadline + one interval, and after, ⇒ deadline_exceeded since the deadline", () => {
    for (const now of [SAFETY_NET, SAFETY_NET + sec(3600)]) {
      const zombie = expectZombie(judge({ pods: [runningPod()], now }), "deadline_exceeded")
      expect(zombie.since).toBe(T0 + sec(TIMEOUT))
    }
  })

  it("uses the run's timeout and the given sweeper interval", () => {
    const graces = withGraces({ timeoutSeconds: 30 })
    const net = T0 + sec(30) + sec(10)
    expectHealthy(judge({ graces, sweeperIntervalSeconds: 10, pods: [runningPod()], now: net - 1 }))
    expectZombie(judge({ graces, sweeperIntervalSeconds: 10, pods: [runningPod()], now: net }), "deadline_exceeded")
  })

  it("a Suspect is due no later than the safety net; past it the verdict is deadline_exceeded", () => {
    const graces = withGraces({ timeoutSeconds: 30, imagePullGraceSeconds: 3600 })
    const net = T0 + sec(30) + sec(INTERVAL)
    const firstSeen = seenSince([["image-pull", POD_CREATED]])
    const pods = [waitingPod("ImagePullBackOff")]
    expect(expectSuspect(judge({ graces, firstSeen, pods, now: T0 + sec(40) }), "image_pull_backoff").dueAt).toBe(net)
    expectZombie(judge({ graces, firstSeen, pods, now: net }), "deadline_exceeded")
  })
})

describe("Classifier: purity", () => {
  it("the same input gives the same classification", () => {
    const same = input({
      pods: [waitingPod("ImagePullBackOff")],
      firstSeen: seenSince([["image-pull", POD_CREATED]]),
      now: POD_CREATED + sec(30)
    })
    const a = classify(same)
    const b = classify(same)
    expect(a.judgement).toEqual(b.judgement)
    expect(signals(a)).toEqual(signals(b))
  })
})

// ---- recheckAt ----------------------------------------------------------------------------------

describe("Classifier: recheckAt", () => {
  it("Healthy ⇒ its recheckAt; Suspect ⇒ its dueAt; Zombie and Succeeded ⇒ none", () => {
    expect(recheckAt({ _tag: "Healthy", recheckAt: 42 })).toEqual(Option.some(42))
    expect(
      recheckAt({ _tag: "Suspect", reason: "image_pull_backoff", detail: "d", since: 1, dueAt: 61_000 })
    ).toEqual(Option.some(61_000))
    expect(recheckAt({ _tag: "Zombie", reason: "pod_evicted", detail: "d", since: 1 })).toEqual(Option.none())
    expect(recheckAt({ _tag: "Succeeded" })).toEqual(Option.none())
  })

  it("agrees with what classify returns", () => {
    expect(recheckAt(judge({ pods: [runningPod()], now: T0 + sec(10) }))).toEqual(Option.some(SAFETY_NET))
    expect(recheckAt(judge({ pods: [], now: T0 + sec(10) }))).toEqual(Option.some(T0 + sec(120)))
    expect(recheckAt(judge({ pods: [evictedPod()], now: T0 + sec(10) }))).toEqual(Option.none())
  })
})

// ---- what a real node writes (../shared/spec/real-cluster.md) -----------------------------------

const neverRestarts = (pod: Pod): Pod => ({ ...pod, spec: { restartPolicy: "Never", containers: [{ name: "agent", image: IMAGE }] } })

const podEvent = (
  reason: string,
  message: string,
  opts: { readonly pod?: string; readonly uid?: string; readonly at?: Millis; readonly kind?: string } = {}
): Event => ({
  metadata: { name: `${opts.pod ?? `${JOB}-x7k2p`}.${reason}`, namespace: "agents", creationTimestamp: iso(opts.at ?? T0) },
  involvedObject: {
    kind: opts.kind ?? "Pod",
    name: opts.pod ?? `${JOB}-x7k2p`,
    namespace: "agents",
    ...(opts.uid === undefined ? {} : { uid: opts.uid })
  },
  reason,
  message,
  type: "Warning",
  ...(opts.at === undefined ? {} : { lastTimestamp: iso(opts.at) }),
  source: { component: "kubelet" }
})

const storageMessage = "Pod ephemeral local storage usage exceeds the total limit of containers 16Mi."
const complete = (at: Millis) =>
  makeJob({
    conditions: [
      condition("SuccessCriteriaMet", "True", "CompletionsReached", undefined, at),
      condition("Complete", "True", "CompletionsReached", undefined, at)
    ],
    succeeded: 1
  })

describe("Classifier: the Job's FailureTarget comes before its Failed condition", () => {
  const deadlineAt = T0 + sec(TIMEOUT)
  const failureTarget = (reason: string, at: Millis) =>
    makeJob({ conditions: [condition("FailureTarget", "True", reason, "Job was active longer than specified deadline", at)] })

  it("FailureTarget DeadlineExceeded while the killed pod still runs ⇒ deadline_exceeded at once, not a crash 30 s later", () => {
    const terminating: Pod = { ...neverRestarts(runningPod()), metadata: { ...runningPod().metadata, deletionTimestamp: iso(deadlineAt) } }
    const zombie = expectZombie(
      judge({ job: Option.some(failureTarget("DeadlineExceeded", deadlineAt)), pods: [terminating], now: deadlineAt + 100 }),
      "deadline_exceeded"
    )
    expect(zombie.since).toBe(deadlineAt)
    expect(zombie.detail).toBe(`Job exceeded activeDeadlineSeconds=${TIMEOUT}`)
    // 30 s later the pod has died with 137: still the deadline, whichever condition the Job shows
    const killed = neverRestarts(terminatedPod("Failed", 137, "Error", deadlineAt + sec(30)))
    for (const job of [failureTarget("DeadlineExceeded", deadlineAt), failedJob("DeadlineExceeded", undefined, deadlineAt + sec(30))]) {
      expectZombie(judge({ job: Option.some(job), pods: [killed], now: deadlineAt + sec(31) }), "deadline_exceeded")
    }
  })

  it("a deadline kill whose process exits 0 on SIGTERM (pod Succeeded, Job Failed DeadlineExceeded, succeeded 1) is never a success", () => {
    const job: Job = {
      ...failedJob("DeadlineExceeded", "Job was active longer than specified deadline", deadlineAt + sec(1)),
      status: {
        conditions: [
          condition("FailureTarget", "True", "DeadlineExceeded", undefined, deadlineAt),
          condition("Failed", "True", "DeadlineExceeded", undefined, deadlineAt + sec(1))
        ],
        succeeded: 1
      }
    }
    const exited = neverRestarts(terminatedPod("Succeeded", 0, "Completed", deadlineAt + sec(1)))
    expectZombie(judge({ job: Option.some(job), pods: [exited], now: deadlineAt + sec(2) }), "deadline_exceeded")
    expectZombie(
      judge({ job: Option.some(failureTarget("DeadlineExceeded", deadlineAt)), pods: [exited], now: deadlineAt + sec(1) }),
      "deadline_exceeded"
    )
  })

  it("FailureTarget BackoffLimitExceeded takes its reason from the pod: OOMKilled while the phase still says Running", () => {
    const oom = neverRestarts(
      makePod({
        phase: "Running",
        conditions: [scheduled],
        containerStatuses: [agentContainer({ terminated: { exitCode: 137, reason: "OOMKilled", finishedAt: iso(T0 + sec(3)) } })]
      })
    )
    const zombie = expectZombie(
      judge({ job: Option.some(failureTarget("BackoffLimitExceeded", T0 + sec(4))), pods: [oom], now: T0 + sec(4) }),
      "pod_crash_no_stdout"
    )
    expect(zombie.detail).toBe("OOMKilled, exit 137")
    expect(zombie.since).toBe(T0 + sec(3))
    // the container's end is final under restartPolicy Never: judged before the phase or the Job follow
    expect(expectZombie(judge({ pods: [oom], now: T0 + sec(3) }), "pod_crash_no_stdout").detail).toBe("OOMKilled, exit 137")
  })

  it("FailureTarget BackoffLimitExceeded with no pod evidence ⇒ pod_crash_no_stdout naming the Job's reason", () => {
    const zombie = expectZombie(
      judge({ job: Option.some(failureTarget("BackoffLimitExceeded", T0 + sec(4))), pods: [], now: T0 + sec(5) }),
      "pod_crash_no_stdout"
    )
    expect(zombie.detail).toContain("BackoffLimitExceeded")
  })
})

describe("Classifier: evictions (the kubelet's Evicted Event)", () => {
  const pod = `${JOB}-x7k2p`
  const evictedAt = T0 + sec(9)

  it("an eviction whose process exited 0 (pod Succeeded, Job Complete) ⇒ pod_evicted with the Event's message", () => {
    const exited = terminatedPod("Succeeded", 0, "Completed", evictedAt + sec(1))
    const events = [podEvent("Evicted", storageMessage, { at: evictedAt }), podEvent("Killing", "Stopping container agent", { at: evictedAt })]
    const zombie = expectZombie(judge({ job: Option.some(complete(evictedAt + sec(2))), pods: [exited], events, now: evictedAt + sec(2) }), "pod_evicted")
    expect(zombie.detail).toBe(`pod ${pod} evicted: ${storageMessage}`)
    expect(zombie.since).toBe(evictedAt)
    // without the Event it is a good run
    expect(judge({ job: Option.some(complete(evictedAt + sec(2))), pods: [exited], now: evictedAt + sec(2) })).toEqual({ _tag: "Succeeded" })
  })

  it("the Evicted Event before the pod ends ⇒ pod_evicted at once", () => {
    const zombie = expectZombie(
      judge({ pods: [neverRestarts(runningPod())], events: [podEvent("Evicted", storageMessage, { at: evictedAt })], now: evictedAt }),
      "pod_evicted"
    )
    expect(zombie.detail).toContain(storageMessage)
  })

  it("Events about other objects do not count: another Job's pod, a pod of the same name with another uid, other reasons, a Job", () => {
    const exited: Pod = { ...terminatedPod("Succeeded", 0, "Completed"), metadata: { ...terminatedPod("Succeeded", 0, "Completed").metadata, uid: "uid-pod" } }
    const noise = [
      podEvent("Evicted", storageMessage, { pod: "claude-agent-4aa57614-9f9f9f9f9f-x7k2p" }),
      podEvent("Evicted", storageMessage, { pod, uid: "uid-older" }),
      podEvent("Killing", "Stopping container agent", { pod }),
      podEvent("Evicted", storageMessage, { pod: JOB, kind: "Job" })
    ]
    expect(judge({ job: Option.some(complete(T0 + sec(60))), pods: [exited], events: noise, now: T0 + sec(61) })).toEqual({
      _tag: "Succeeded"
    })
    expect(
      judge({ job: Option.some(complete(T0 + sec(60))), pods: [exited], events: [podEvent("Evicted", storageMessage, { pod, uid: "uid-pod" })], now: T0 + sec(61) })
    ).toMatchObject({ _tag: "Zombie", reason: "pod_evicted" })
  })

  it("a Complete Job whose evicted pod is already gone ⇒ pod_evicted (its generated name ties the Event to the Job)", () => {
    expectZombie(
      judge({ job: Option.some(complete(T0 + sec(60))), pods: [], events: [podEvent("Evicted", storageMessage, { pod: `${JOB}-b2c4d` })], now: T0 + sec(61) }),
      "pod_evicted"
    )
  })

  it("an evicted pod replaced by one that succeeded (backoffLimit above 0) did its work: Succeeded", () => {
    const first: Pod = { ...evictedPod(storageMessage), metadata: { ...evictedPod().metadata, name: `${JOB}-aaaaa` } }
    const second: Pod = { ...terminatedPod("Succeeded", 0, "Completed"), metadata: { ...terminatedPod("Succeeded", 0, "Completed").metadata, name: `${JOB}-bbbbb` } }
    const events = [podEvent("Evicted", storageMessage, { pod: `${JOB}-aaaaa` })]
    expect(judge({ job: Option.some(complete(T0 + sec(60))), pods: [first, second], events, now: T0 + sec(61) })).toEqual({ _tag: "Succeeded" })
  })

  it("an eviction whose PID 1 ignores SIGTERM (pod Failed, reason Evicted, exit 137; Job BackoffLimitExceeded) ⇒ pod_evicted", () => {
    const zombie = expectZombie(
      judge({ job: Option.some(failedJob("BackoffLimitExceeded")), pods: [evictedPod(storageMessage)], now: T0 + sec(301) }),
      "pod_evicted"
    )
    expect(zombie.detail).toBe(`pod ${pod} evicted: ${storageMessage}`)
  })
})

describe("Classifier: containers the kubelet lost, and earlier states", () => {
  it("ContainerStatusUnknown with null times (decoded from what the kubelet writes) ⇒ a crash, exit 137, naming it", () => {
    const wire = {
      metadata: { name: `${JOB}-x7k2p`, namespace: "agents", creationTimestamp: iso(POD_CREATED), deletionTimestamp: null },
      spec: { restartPolicy: "Never", containers: [{ name: "agent", image: IMAGE }] },
      status: {
        phase: "Failed",
        conditions: [{ type: "PodScheduled", status: "True", lastProbeTime: null, lastTransitionTime: iso(POD_CREATED) }],
        containerStatuses: [
          {
            name: "agent",
            image: IMAGE,
            imageID: "",
            ready: false,
            restartCount: 0,
            started: false,
            lastState: {},
            state: {
              terminated: {
                exitCode: 137,
                reason: "ContainerStatusUnknown",
                message: "The container could not be located when the pod was terminated",
                startedAt: null,
                finishedAt: null
              }
            }
          }
        ]
      }
    }
    const decoded = decodePod(wire)
    expect(Either.isRight(decoded), JSON.stringify(decoded)).toBe(true)
    const pod = Either.getOrThrow(decoded)
    const zombie = expectZombie(judge({ pods: [pod], now: T0 + sec(90) }), "pod_crash_no_stdout")
    expect(zombie.detail).toBe("ContainerStatusUnknown, exit 137: The container could not be located when the pod was terminated")
    expect(zombie.since).toBe(T0 + sec(90))
  })

  it("a failed pod whose container is waiting again takes the exit code and reason from lastState", () => {
    const pod = makePod({
      phase: "Failed",
      containerStatuses: [
        {
          ...agentContainer({ waiting: { reason: "ContainerCreating" } }),
          lastState: { terminated: { exitCode: 137, reason: "ContainerStatusUnknown", message: "The container used to be Running" } }
        }
      ]
    })
    expect(expectZombie(judge({ pods: [pod], now: T0 + sec(90) }), "pod_crash_no_stdout").detail).toBe(
      "ContainerStatusUnknown, exit 137: The container used to be Running"
    )
  })

  it("a running container's lastState is not its end", () => {
    const pod = neverRestarts(
      makePod({
        phase: "Running",
        containerStatuses: [{ ...agentContainer({ running: { startedAt: iso(T0 + sec(6)) } }), lastState: { terminated: { exitCode: 1, reason: "Error" } } }]
      })
    )
    expectHealthy(judge({ pods: [pod], now: T0 + sec(90) }))
  })
})

describe("Classifier: details carry what Kubernetes wrote", () => {
  const quota = (n: number) =>
    `Error creating: pods "${JOB}-" is forbidden: exceeded quota: agent-quota, requested: pods=1, used: pods=${n}, limited: pods=10`
  const failedCreate = (message: string, at: Millis, name = JOB): Event => ({
    ...podEvent("FailedCreate", message, { pod: name, kind: "Job", at }),
    source: { component: "job-controller" }
  })

  it("job_pod_create_failed carries the newest FailedCreate message of the Job", () => {
    const events = [failedCreate(quota(10), T0 + sec(1)), failedCreate(quota(11), T0 + sec(60)), failedCreate(quota(99), T0 + sec(90), "other-job")]
    const zombie = expectZombie(judge({ pods: [], events, now: T0 + sec(120) }), "job_pod_create_failed")
    expect(zombie.detail).toBe(`Job ${JOB} created no pod within 120s: ${quota(11)}`)
    expect(expectZombie(judge({ pods: [], now: T0 + sec(120) }), "job_pod_create_failed").detail).toBe(`Job ${JOB} created no pod within 120s`)
  })

  it("a crash names the terminated message after reason and exit code", () => {
    const pod = makePod({
      phase: "Failed",
      containerStatuses: [agentContainer({ terminated: { exitCode: 2, reason: "Error", message: "panic: no token\n  at main.go:12" } })]
    })
    expect(expectZombie(judge({ pods: [pod], now: T0 + sec(90) }), "pod_crash_no_stdout").detail).toBe("Error, exit 2: panic: no token at main.go:12")
  })

  it("long messages are cut to a sane length, on one line", () => {
    const long = `0/500 nodes are available: ${"1 node(s) had untolerated taint {dedicated: gpu}, ".repeat(40)}`
    const zombie = expectZombie(judge({ pods: [unschedulablePod({ message: long })], now: POD_CREATED + sec(120) }), "pod_not_scheduled")
    expect(zombie.detail.length).toBeLessThanOrEqual(`pod ${JOB}-x7k2p not scheduled: `.length + messageLimit)
    expect(zombie.detail.endsWith("…")).toBe(true)
    expect(zombie.detail).not.toContain("\n")
    const pull = `Back-off pulling image "${IMAGE}": ErrImagePull: ${"failed to pull and unpack image; ".repeat(30)}`
    const suspect = expectSuspect(judge({ pods: [waitingPod("ImagePullBackOff", pull)], now: POD_CREATED + sec(10) }), "image_pull_backoff")
    expect(suspect.detail.startsWith(`ImagePullBackOff (image ${IMAGE}): Back-off pulling image "${IMAGE}": ErrImagePull`)).toBe(true)
    expect(suspect.detail.length).toBeLessThanOrEqual(`ImagePullBackOff (image ${IMAGE}): `.length + messageLimit)
  })
})
