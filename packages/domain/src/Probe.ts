import { createHash } from "node:crypto"
import { type Command, createTask, updateFrontmatter } from "./Commands.js"

const probeNamespace = "00000000-0000-0000-0000-000000000024"

/** RFC 4122 version 5 (SHA-1) UUID of `name` in `namespace`. */
export const uuidV5 = (namespace: string, name: string): string => {
  const hash = createHash("sha1")
    .update(Buffer.from(namespace.replace(/-/g, ""), "hex"))
    .update(Buffer.from(name, "utf8"))
    .digest()
  const bytes = hash.subarray(0, 16)
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x50
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80
  const hex = bytes.toString("hex")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

/** The probe task of one agent on one stage: the same id on every run, a different one per stage. */
export const probeTaskId = (assignee: string, branch: string): string => uuidV5(probeNamespace, `${assignee}-${branch}`)

/** Creates (or re-opens) the probe task and wipes the run state of an earlier probe (executor.md §5.9). */
export const probeCommands = (assignee: string, branch: string): ReadonlyArray<Command> => {
  const taskIdentifier = probeTaskId(assignee, branch)
  return [
    createTask({
      taskIdentifier,
      title: `probe-${assignee}-${branch}`,
      frontmatter: { task_type: "healthcheck", status: "in_progress", phase: "in_progress", assignee, stage: branch },
      body: "reply 'ok'"
    }),
    updateFrontmatter({
      taskIdentifier,
      updates: {
        status: "in_progress",
        phase: "in_progress",
        trigger_count: 0,
        retry_count: 0,
        current_job: "",
        job_started_at: "",
        spawn_notification: false
      }
    })
  ]
}
