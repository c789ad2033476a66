// What Kubernetes writes in one namespace of the real node, as a watch sees it: every Job, Pod and
// Event write, with the moment it arrived. The failure-mode suite measures from it (the first bad
// status of a run) and the fixture recorder turns it into the step sequences of the testkit.
import * as k8s from "@kubernetes/client-node"
import { sleep } from "./wait.js"

export type ObjectKind = "Job" | "Pod" | "Event"
export type RawObject = Readonly<Record<string, unknown>>

export interface Observation {
  /** Our clock (epoch ms) when the watch delivered it. */
  readonly at: number
  readonly kind: ObjectKind
  readonly type: "ADDED" | "MODIFIED" | "DELETED"
  readonly object: RawObject
}

/** A run at one moment: its Job (null once gone) and its pods, after one write to either. */
export interface Step {
  readonly at: number
  readonly job: RawObject | null
  readonly pods: ReadonlyArray<RawObject>
}

export interface Recorder {
  readonly observations: () => ReadonlyArray<Observation>
  /** Every write to the Job or its pods, with the state of all of them after it. */
  readonly steps: (jobName: string) => ReadonlyArray<Step>
  /** The newest version of each Event about the Job or one of its pods, in the order first seen. */
  readonly events: (jobName: string) => ReadonlyArray<Observation>
  /** The first moment `accept` held for the run, and what held it. */
  readonly firstSeen: (jobName: string, accept: (seen: Seen) => boolean) => Seen | undefined
  readonly stop: () => Promise<void>
}

/** One observation about a run, with the run's state right after it. */
export interface Seen extends Observation {
  readonly job: RawObject | null
  readonly pods: ReadonlyArray<RawObject>
}

interface Meta {
  readonly name?: string
  readonly uid?: string
  readonly resourceVersion?: string
  readonly creationTimestamp?: string
  readonly ownerReferences?: ReadonlyArray<{ readonly kind?: string; readonly name?: string }>
}

export const metaOf = (object: RawObject): Meta => (object["metadata"] ?? {}) as Meta
export const nameOf = (object: RawObject): string => metaOf(object).name ?? ""

const ownerJob = (pod: RawObject): string | undefined => metaOf(pod).ownerReferences?.find((r) => r.kind === "Job")?.name

/** A pod of `jobName`: its owner reference names the Job. */
const isPodOf = (pod: RawObject, jobName: string) => (ownerJob(pod) ?? "") === jobName

const involvedName = (event: RawObject) => String((event["involvedObject"] as { readonly name?: unknown } | undefined)?.name ?? "")

/** An Event about the Job itself or about a pod whose generated name is the Job's. */
export const isEventOf = (event: RawObject, jobName: string) => {
  const name = involvedName(event)
  return name === jobName || (name.startsWith(`${jobName}-`) && name.length === jobName.length + 6)
}

const paths = (namespace: string): Readonly<Record<ObjectKind, string>> => ({
  Job: `/apis/batch/v1/namespaces/${namespace}/jobs`,
  Pod: `/api/v1/namespaces/${namespace}/pods`,
  Event: `/api/v1/namespaces/${namespace}/events`
})

/**
 * Watches the Jobs, Pods and Events of `namespace` from now on (a list first, so objects that exist
 * show as ADDED). A watch the API server ends is started again from the last resourceVersion seen.
 */
export const startRecorder = async (kc: k8s.KubeConfig, namespace: string): Promise<Recorder> => {
  const all: Array<Observation> = []
  const aborts: Array<AbortController> = []
  let stopped = false

  const follow = async (kind: ObjectKind, path: string) => {
    let resourceVersion: string | undefined
    const watch = new k8s.Watch(kc)
    const onEvent = (type: string, object: RawObject) => {
      if (type === "BOOKMARK") return
      // 410 Gone (the resourceVersion is too old): list again
      if (type === "ERROR") return void (resourceVersion = undefined)
      resourceVersion = metaOf(object).resourceVersion ?? resourceVersion
      all.push({ at: Date.now(), kind, type: type as Observation["type"], object })
    }
    const open = async (): Promise<void> => {
      for (let attempt = 1; !stopped; attempt++) {
        try {
          const abort = await watch.watch(path, resourceVersion === undefined ? {} : { resourceVersion }, onEvent, () => {
            if (!stopped) void sleep(200).then(open)
          })
          aborts.push(abort)
          return
        } catch (error) {
          if (attempt >= 20) throw error
          await sleep(500)
        }
      }
    }
    await open()
  }
  await Promise.all((Object.entries(paths(namespace)) as Array<[ObjectKind, string]>).map(([kind, path]) => follow(kind, path)))

  const replay = (jobName: string): ReadonlyArray<Seen> => {
    let job: RawObject | null = null
    const pods = new Map<string, RawObject>()
    const out: Array<Seen> = []
    for (const observation of all) {
      const { kind, object, type } = observation
      if (kind === "Job" && nameOf(object) === jobName) job = type === "DELETED" ? null : object
      else if (kind === "Pod" && isPodOf(object, jobName)) {
        if (type === "DELETED") pods.delete(nameOf(object))
        else pods.set(nameOf(object), object)
      } else if (!(kind === "Event" && isEventOf(object, jobName))) continue
      out.push({ ...observation, job, pods: [...pods.values()] })
    }
    return out
  }

  return {
    observations: () => [...all],
    steps: (jobName) =>
      replay(jobName)
        .filter((seen) => seen.kind !== "Event")
        .map(({ at, job, pods }) => ({ at, job, pods })),
    events: (jobName) => {
      const byUid = new Map<string, Observation>()
      for (const observation of all) {
        if (observation.kind !== "Event" || !isEventOf(observation.object, jobName)) continue
        const uid = metaOf(observation.object).uid ?? nameOf(observation.object)
        const first = byUid.get(uid)
        byUid.delete(uid)
        byUid.set(uid, { ...observation, at: first?.at ?? observation.at })
      }
      return [...byUid.values()].sort((a, b) => a.at - b.at)
    },
    firstSeen: (jobName, accept) => replay(jobName).find(accept),
    stop: async () => {
      stopped = true
      for (const abort of aborts) abort.abort()
    }
  }
}

// ---------------------------------------------------------------------------------------------
// reading raw objects
// ---------------------------------------------------------------------------------------------

interface RawCondition {
  readonly type?: string
  readonly status?: string
  readonly reason?: string
  readonly message?: string
  readonly lastTransitionTime?: string | null
}

interface RawContainerState {
  readonly waiting?: { readonly reason?: string; readonly message?: string }
  readonly running?: { readonly startedAt?: string | null }
  readonly terminated?: { readonly reason?: string; readonly exitCode?: number; readonly finishedAt?: string | null }
}

interface RawContainerStatus {
  readonly name?: string
  readonly state?: RawContainerState
  readonly lastState?: RawContainerState
}

const statusOf = (object: RawObject | null | undefined) =>
  (object?.["status"] ?? {}) as {
    readonly phase?: string
    readonly reason?: string
    readonly conditions?: ReadonlyArray<RawCondition>
    readonly containerStatuses?: ReadonlyArray<RawContainerStatus>
  }

export const conditionOf = (object: RawObject | null | undefined, type: string) =>
  statusOf(object).conditions?.find((c) => c.type === type && c.status === (type === "PodScheduled" ? "False" : "True"))

export const containersOf = (pod: RawObject) => statusOf(pod).containerStatuses ?? []
export const phaseOf = (pod: RawObject) => statusOf(pod).phase
export const podReasonOf = (pod: RawObject) => statusOf(pod).reason
export const waitingReasons = (pod: RawObject) => containersOf(pod).flatMap((c) => c.state?.waiting?.reason ?? [])
export const terminatedOf = (pod: RawObject) => containersOf(pod).flatMap((c) => c.state?.terminated ?? [])
export const eventReason = (event: RawObject) => String(event["reason"] ?? "")
