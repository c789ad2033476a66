import { uuidV5 } from "./CommandGroup.js"
import { type Command, createTask, updateFrontmatter } from "./Commands.js"

const probeNamespace = "00000000-0000-0000-0000-000000000024"

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
