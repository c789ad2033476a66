import { Option } from "effect"
import type { AgentConfig } from "./AgentConfig.js"
import * as Frontmatter from "./Frontmatter.js"
import type { TaskEvent } from "./TaskEvent.js"
import { type Millis, seconds } from "./Time.js"

/** The `result` label values of `agent_executor_task_events_total` (executor.md §4.3). */
export const eventResults = [
  "spawned",
  "skipped_status",
  "skipped_phase",
  "skipped_assignee",
  "skipped_unknown_assignee",
  "skipped_active_job",
  "skipped_stage",
  "skipped_trigger_cap",
  "error",
  "type_mismatch",
  "spawn_suppressed_terminal_phase",
  "unknown_phase",
  "respawn_grace_window",
  "respawn_after_grace_window",
  "deferred_concurrency_cap"
] as const
export type EventResult = (typeof eventResults)[number]

export type Preflight =
  | { readonly _tag: "Skip"; readonly result: EventResult; readonly unknownPhase: boolean }
  | {
      readonly _tag: "TypeMismatch"
      readonly config: AgentConfig
      readonly taskType: string
      readonly accepted: ReadonlyArray<string>
      readonly unknownPhase: boolean
    }
  | { readonly _tag: "Proceed"; readonly config: AgentConfig; readonly unknownPhase: boolean }

const skip = (result: EventResult, unknownPhase = false): Preflight => ({ _tag: "Skip", result, unknownPhase })

const allowed = (configured: ReadonlyArray<string>, defaults: ReadonlyArray<string>) =>
  configured.length > 0 ? configured : defaults

/**
 * The gates that need no cluster state, in the order of decisions D4.9: status, phase, stage,
 * assignee, Config lookup, task type, trigger cap. The allow-lists come from the assignee's Config
 * when there is one (defaults otherwise), so a completed, parked or other-stage task is never
 * touched, whatever its type. Both sides of the phase comparison are normalised (REF §8.14).
 */
export const preflight = (event: TaskEvent, config: Option.Option<AgentConfig>, branch: string): Preflight => {
  const fm = event.frontmatter
  const statuses = Option.match(config, { onNone: () => [], onSome: (c) => c.triggerStatuses })
  if (!allowed(statuses, Frontmatter.defaultTriggerStatuses).includes(Frontmatter.status(fm))) {
    return skip("skipped_status")
  }
  const phase = Frontmatter.phase(fm)
  if (Option.isSome(phase) && Frontmatter.terminalPhases.includes(phase.value)) {
    return skip("spawn_suppressed_terminal_phase")
  }
  const unknownPhase = Option.isSome(phase) && !Frontmatter.knownPhases.includes(phase.value)
  const phases = Option.match(config, { onNone: () => [], onSome: (c) => c.triggerPhases }).map(
    Frontmatter.normalisePhase
  )
  if (Option.isNone(phase) || !allowed(phases, Frontmatter.defaultTriggerPhases).includes(phase.value)) {
    return skip("skipped_phase", unknownPhase)
  }
  if (Frontmatter.stage(fm) !== branch) return skip("skipped_stage", unknownPhase)
  if (Frontmatter.assignee(fm) === "") return skip("skipped_assignee", unknownPhase)
  if (Option.isNone(config)) return skip("skipped_unknown_assignee", unknownPhase)
  const agent = config.value
  const taskType = Frontmatter.taskType(fm)
  if (agent.taskTypes.length > 0 && !agent.taskTypes.includes(taskType)) {
    return { _tag: "TypeMismatch", config: agent, taskType, accepted: agent.taskTypes, unknownPhase }
  }
  if (Frontmatter.triggerCount(fm) >= Frontmatter.maxTriggers(fm)) return skip("skipped_trigger_cap", unknownPhase)
  return { _tag: "Proceed", config: agent, unknownPhase }
}

export const respawnGraceSeconds = 300

/**
 * A task whose `current_job` started less than the grace ago may still get that run's result; a
 * respawn waits until `retryAfter`. An absent or unparseable start counts as elapsed.
 */
export const graceWindow = (event: TaskEvent, now: Millis): Option.Option<{ readonly retryAfter: Millis }> => {
  const fm = event.frontmatter
  if (Frontmatter.currentJob(fm) === "") return Option.none()
  const started = Frontmatter.jobStartedAt(fm)
  if (started._tag !== "At") return Option.none()
  const retryAfter = started.at + seconds(respawnGraceSeconds)
  return now < retryAfter ? Option.some({ retryAfter }) : Option.none()
}
