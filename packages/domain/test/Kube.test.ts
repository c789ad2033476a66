import { describe, expect, it } from "@effect/vitest"
import { Either, Option } from "effect"
import {
  decodeEvent,
  decodeJob,
  decodePod,
  eventTime,
  isPodNameOfJob,
  jobFailure,
  jobFinished,
  jobSucceeded
} from "../src/Kube.js"

const job = "claude-agent-4aa57614-1a2b3c4d5e"

describe("Kube views accept the nulls Kubernetes writes", () => {
  it("a Pod: null container times, null probe times, null deletionTimestamp, empty lastState", () => {
    const pod = decodePod({
      metadata: { name: `${job}-x7k2p`, creationTimestamp: "2026-06-01T12:00:01Z", deletionTimestamp: null, labels: null },
      spec: { restartPolicy: "Never", containers: [{ name: "agent", image: "127.0.0.1:5999/agent:x" }] },
      status: {
        phase: "Failed",
        reason: null,
        message: null,
        conditions: [{ type: "Ready", status: "False", lastProbeTime: null, lastTransitionTime: null, reason: "PodFailed" }],
        containerStatuses: [
          {
            name: "agent",
            image: "127.0.0.1:5999/agent:x",
            lastState: {},
            state: {
              waiting: null,
              running: null,
              terminated: { exitCode: 137, reason: "ContainerStatusUnknown", startedAt: null, finishedAt: null }
            }
          }
        ],
        initContainerStatuses: null
      }
    })
    expect(Either.isRight(pod), JSON.stringify(pod)).toBe(true)
    const decoded = Either.getOrThrow(pod)
    expect(decoded.metadata.deletionTimestamp).toBeUndefined()
    expect(decoded.spec?.restartPolicy).toBe("Never")
    expect(decoded.status?.containerStatuses?.[0]?.state?.terminated).toEqual({ exitCode: 137, reason: "ContainerStatusUnknown" })
    expect(decoded.status?.conditions?.[0]?.lastTransitionTime).toBeUndefined()
  })

  it("a Job: null completionTime and condition times", () => {
    const decoded = decodeJob({
      metadata: { name: job, finalizers: null },
      spec: { activeDeadlineSeconds: null, backoffLimit: 0 },
      status: {
        startTime: "2026-06-01T12:00:00Z",
        completionTime: null,
        active: null,
        conditions: [{ type: "FailureTarget", status: "True", reason: "DeadlineExceeded", lastProbeTime: null, lastTransitionTime: "2026-06-01T12:00:20Z" }]
      }
    })
    expect(Either.isRight(decoded), JSON.stringify(decoded)).toBe(true)
    expect(Option.map(jobFailure(Either.getOrThrow(decoded)), (c) => c.reason)).toEqual(Option.some("DeadlineExceeded"))
  })

  it("a core/v1 Event as the kubelet writes it (eventTime null, series null) and as events.k8s.io writes it", () => {
    const kubelet = decodeEvent({
      metadata: { name: `${job}-x7k2p.18a`, namespace: "agents", creationTimestamp: "2026-06-01T12:00:09Z" },
      involvedObject: { kind: "Pod", name: `${job}-x7k2p`, namespace: "agents", uid: "u1", apiVersion: "v1", resourceVersion: "42" },
      reason: "Evicted",
      message: "Pod ephemeral local storage usage exceeds the total limit of containers 16Mi.",
      type: "Warning",
      count: 1,
      firstTimestamp: "2026-06-01T12:00:09Z",
      lastTimestamp: "2026-06-01T12:00:09Z",
      eventTime: null,
      series: null,
      source: { component: "kubelet", host: "node-1" },
      reportingComponent: "kubelet",
      reportingInstance: "node-1"
    })
    expect(Either.isRight(kubelet), JSON.stringify(kubelet)).toBe(true)
    expect(eventTime(Either.getOrThrow(kubelet))).toEqual(Option.some(Date.parse("2026-06-01T12:00:09Z")))
    const modern = decodeEvent({
      metadata: { name: "e2", creationTimestamp: "2026-06-01T12:00:00Z" },
      involvedObject: { kind: "Job", name: job },
      reason: "FailedCreate",
      firstTimestamp: null,
      lastTimestamp: null,
      eventTime: "2026-06-01T12:00:03.123456Z",
      series: { count: 4, lastObservedTime: "2026-06-01T12:00:30.000001Z" }
    })
    expect(Either.isRight(modern), JSON.stringify(modern)).toBe(true)
    expect(eventTime(Either.getOrThrow(modern))).toEqual(Option.some(Date.parse("2026-06-01T12:00:30.000Z")))
  })
})

describe("Kube predicates", () => {
  const conditions = (...list: ReadonlyArray<readonly [string, string]>) =>
    list.map(([type, reason]) => ({ type, status: "True", reason }))

  it("jobSucceeded: Complete or a succeeded pod, never with a failure condition", () => {
    expect(jobSucceeded({ metadata: { name: job }, status: { conditions: conditions(["Complete", "CompletionsReached"]) } })).toBe(true)
    expect(jobSucceeded({ metadata: { name: job }, status: { succeeded: 1 } })).toBe(true)
    const deadline = { metadata: { name: job }, status: { succeeded: 1, conditions: conditions(["Failed", "DeadlineExceeded"]) } }
    expect(jobSucceeded(deadline)).toBe(false)
    expect(jobFinished(deadline)).toBe(true)
    const target = { metadata: { name: job }, status: { succeeded: 1, conditions: conditions(["FailureTarget", "DeadlineExceeded"]) } }
    expect(jobSucceeded(target)).toBe(false)
  })

  it("jobFailure prefers Failed over FailureTarget", () => {
    const both = { metadata: { name: job }, status: { conditions: conditions(["FailureTarget", "BackoffLimitExceeded"], ["Failed", "DeadlineExceeded"]) } }
    expect(Option.map(jobFailure(both), (c) => c.type)).toEqual(Option.some("Failed"))
    expect(jobFailure({ metadata: { name: job }, status: { conditions: [{ type: "FailureTarget", status: "False" }] } })).toEqual(Option.none())
  })

  it("isPodNameOfJob: the job controller's generated names (prefix cut to 58 characters, 5-character suffix)", () => {
    expect(isPodNameOfJob(`${job}-x7k2p`, job)).toBe(true)
    expect(isPodNameOfJob(`${job}-x7k2pq`, job)).toBe(false)
    expect(isPodNameOfJob(`${job}-aeiou`, job)).toBe(false)
    expect(isPodNameOfJob(`${job}x-x7k2p`, job)).toBe(false)
    const long = `a-very-long-assignee-name-for-this-agent-4aa57614-1a2b3c4d5e`
    expect(long.length).toBeGreaterThan(57)
    expect(isPodNameOfJob(`${`${long}-`.slice(0, 58)}bcdfg`, long)).toBe(true)
  })
})
