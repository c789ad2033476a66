import { type Command, incrementFrontmatter, updateFrontmatter } from "./Commands.js"
import { formatUtcSeconds, type Millis } from "./Time.js"
import type { ZombieReason } from "./ZombieReason.js"

export const failureHeading = "## Failure"

/** Lines of a `## Failure` section; tooling greps the Reason line, so its token is verbatim. */
const failureSection = (lines: ReadonlyArray<readonly [string, string]>): string =>
  `${failureHeading}\n\n${lines.map(([key, value]) => `- **${key}:** ${value.replace(/\s*\n\s*/g, " ")}`).join("\n")}\n`

export interface ZombieVerdict {
  readonly taskId: string
  readonly jobName: string
  readonly reason: ZombieReason
  readonly detail: string
  readonly at: Millis
}

/**
 * A zombie run, retry-aware (decisions D5): clear `current_job` with a `## Failure` section, then
 * bump `trigger_count`. Never phase, status, assignee or previous_assignee: the controller's cap
 * decides when the task goes to the operator inbox.
 */
export const zombieFailure = (verdict: ZombieVerdict): ReadonlyArray<Command> => [
  updateFrontmatter({
    taskIdentifier: verdict.taskId,
    updates: { current_job: "" },
    body: {
      heading: failureHeading,
      section: failureSection([
        ["Timestamp", formatUtcSeconds(verdict.at)],
        ["Job", verdict.jobName],
        ["Reason", verdict.reason],
        ["Detail", verdict.detail]
      ])
    }
  }),
  incrementFrontmatter({ taskIdentifier: verdict.taskId, field: "trigger_count", delta: 1 })
]

export interface TypeMismatch {
  readonly taskId: string
  readonly priorAssignee: string
  readonly taskType: string
  readonly accepted: ReadonlyArray<string>
  readonly at: Millis
}

export const typeMismatchDetail = (m: Pick<TypeMismatch, "priorAssignee" | "taskType" | "accepted">): string => {
  const set = `[${m.accepted.join(" ")}]`
  return m.taskType === ""
    ? `task has no task_type; agent "${m.priorAssignee}" accepts ${set}`
    : `task_type "${m.taskType}" not in effective set ${set} of agent "${m.priorAssignee}"`
}

/** A semantic failure escalates at once: the task goes to the operator inbox, trigger_count untouched. */
export const typeMismatchFailure = (m: TypeMismatch): Command =>
  updateFrontmatter({
    taskIdentifier: m.taskId,
    updates: {
      assignee: "",
      current_job: "",
      ...(m.priorAssignee === "" ? {} : { previous_assignee: m.priorAssignee })
    },
    body: {
      heading: failureHeading,
      section: failureSection([
        ["Timestamp", formatUtcSeconds(m.at)],
        ["Assignee", m.priorAssignee],
        ["Reason", "type_mismatch"],
        ["Detail", typeMismatchDetail(m)]
      ])
    }
  })

/** Each spawn: the increment, then the spawn notification; published in one transaction (D6.1). */
/** The increment every spawn costs (the first command of `spawnCommands`). */
export const spawnIncrement = (taskId: string): Command =>
  incrementFrontmatter({ taskIdentifier: taskId, field: "trigger_count", delta: 1 })

export const spawnCommands = (spawn: { readonly taskId: string; readonly jobName: string; readonly at: Millis }) => [
  spawnIncrement(spawn.taskId),
  updateFrontmatter({
    taskIdentifier: spawn.taskId,
    updates: { current_job: spawn.jobName, job_started_at: formatUtcSeconds(spawn.at), spawn_notification: true }
  })
]

/**
 * A spawn that can never succeed as configured (the Job spec is invalid for the API server):
 * escalated at once like a semantic failure, so the task does not burn its retries on it.
 */
export const spawnRejected = (r: {
  readonly taskId: string
  readonly priorAssignee: string
  readonly detail: string
  readonly at: Millis
}): Command =>
  updateFrontmatter({
    taskIdentifier: r.taskId,
    updates: {
      assignee: "",
      current_job: "",
      ...(r.priorAssignee === "" ? {} : { previous_assignee: r.priorAssignee })
    },
    body: {
      heading: failureHeading,
      section: failureSection([
        ["Timestamp", formatUtcSeconds(r.at)],
        ["Assignee", r.priorAssignee],
        ["Reason", "pod_config_error"],
        ["Detail", r.detail]
      ])
    }
  })
