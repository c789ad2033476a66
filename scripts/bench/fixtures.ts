// Jobs and pods as the API server returns them (wire JSON), shaped like the executor's: the task-id
// and assignee labels, the finalizer, one container, a Running pod owned by its Job.
import { Labels } from "@executor/domain"

export const names = Labels.names()
const hex = (n: number, width: number) => n.toString(16).padStart(width, "0")
export const taskIdOf = (i: number) => `${hex(i, 8)}-0000-4000-8000-${hex(i * 7919, 12)}`
export const jobNameOf = (i: number) => `agent-bench-${hex(i, 8)}-a1`
export const podNameOf = (i: number) => `${jobNameOf(i)}-${"bcdfg".charAt(i % 5)}x${hex(i % 4096, 3).replace(/[0-9]/g, (d) => "hjklmnpqrs".charAt(Number(d)))}`
const uidOf = (kind: string, i: number) => `${kind === "job" ? "a" : "b"}${hex(i, 7)}-0000-4000-8000-000000000000`
/** Creation and start times: the start of this process, so that no run is near its deadline. */
const at = new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace(".000Z", "Z")

const container = (i: number) => ({
  name: "agent",
  image: "127.0.0.1:5001/agent:1",
  env: [
    { name: "TASK_ID", value: taskIdOf(i) },
    { name: "BRANCH", value: "dev" },
    { name: "TASK_CONTENT", value: `# Task ${i}\n\nDo the thing the task says, then report.` }
  ],
  resources: { requests: { cpu: "100m", memory: "128Mi" }, limits: { cpu: "1", memory: "512Mi" } }
})

export const jobWire = (namespace: string, i: number, resourceVersion = String(1000 + i)) => ({
  apiVersion: "batch/v1",
  kind: "Job",
  metadata: {
    name: jobNameOf(i),
    namespace,
    uid: uidOf("job", i),
    resourceVersion,
    creationTimestamp: at,
    labels: { [names.taskIdLabel]: taskIdOf(i), [names.assigneeLabel]: "bench-agent" },
    annotations: { [`${names.apiGroup}/attempt`]: "1" },
    finalizers: [names.finalizer]
  },
  spec: {
    activeDeadlineSeconds: 3600,
    backoffLimit: 0,
    ttlSecondsAfterFinished: 600,
    template: {
      metadata: { labels: { [names.taskIdLabel]: taskIdOf(i), [names.assigneeLabel]: "bench-agent" } },
      spec: {
        restartPolicy: "Never",
        containers: [container(i)]
      }
    }
  },
  status: { active: 1, startTime: at, ready: 1, terminating: 0 }
})

export const podWire = (namespace: string, i: number, resourceVersion = String(500000 + i)) => ({
  apiVersion: "v1",
  kind: "Pod",
  metadata: {
    name: podNameOf(i),
    generateName: `${jobNameOf(i)}-`,
    namespace,
    uid: uidOf("pod", i),
    resourceVersion,
    creationTimestamp: at,
    labels: {
      [names.taskIdLabel]: taskIdOf(i),
      [names.assigneeLabel]: "bench-agent",
      "batch.kubernetes.io/job-name": jobNameOf(i),
      "job-name": jobNameOf(i),
      "batch.kubernetes.io/controller-uid": uidOf("job", i),
      "controller-uid": uidOf("job", i)
    },
    ownerReferences: [
      { apiVersion: "batch/v1", kind: "Job", name: jobNameOf(i), uid: uidOf("job", i), controller: true, blockOwnerDeletion: true }
    ]
  },
  spec: {
    restartPolicy: "Never",
    nodeName: "agent-executor-node",
    containers: [container(i)]
  },
  status: {
    phase: "Running",
    startTime: at,
    conditions: [
      { type: "PodScheduled", status: "True", lastTransitionTime: at },
      { type: "Initialized", status: "True", lastTransitionTime: at },
      { type: "ContainersReady", status: "True", lastTransitionTime: at },
      { type: "Ready", status: "True", lastTransitionTime: at }
    ],
    containerStatuses: [
      {
        name: "agent",
        image: "127.0.0.1:5001/agent:1",
        imageID: "127.0.0.1:5001/agent@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        containerID: `containerd://${hex(i, 64)}`,
        ready: true,
        started: true,
        restartCount: 0,
        state: { running: { startedAt: at } }
      }
    ]
  }
})
