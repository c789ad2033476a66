import { Option } from "effect"
import { type Millis, parseTimestamp } from "./Time.js"

/** The task frontmatter as it arrives: an arbitrary YAML-compatible map. */
export type Frontmatter = Readonly<Record<string, unknown>>

const statusAliases: Readonly<Record<string, string>> = {
  todo: "next",
  current: "in_progress",
  done: "completed",
  deferred: "hold"
}
const phaseAliases: Readonly<Record<string, string>> = { in_progress: "execution" }

export const canonicalStatuses = ["next", "in_progress", "backlog", "completed", "hold", "aborted"] as const
export const canonicalPhases = ["todo", "planning", "execution", "ai_review", "human_review", "done"] as const
export const defaultTriggerPhases: ReadonlyArray<string> = ["planning", "execution", "ai_review"]
export const defaultTriggerStatuses: ReadonlyArray<string> = ["in_progress"]
export const terminalPhases: ReadonlyArray<string> = ["human_review", "done"]
/** Phases the reference knew; anything else counts as enum drift (`unknown_phase`). */
export const knownPhases: ReadonlyArray<string> = [
  "todo",
  "planning",
  "execution",
  "in_progress",
  "ai_review",
  "human_review",
  "done"
]

const stringField = (fm: Frontmatter, key: string): string => {
  const value = fm[key]
  return typeof value === "string" ? value : ""
}

/** Numbers accept integers and floats (truncated); anything else, numeric strings included, is the default. */
const intField = (fm: Frontmatter, key: string, fallback: number): number => {
  const value = fm[key]
  return typeof value === "number" && Number.isFinite(value) ? Math.trunc(value) : fallback
}

const alias = (aliases: Readonly<Record<string, string>>, value: string): string =>
  Object.hasOwn(aliases, value) ? (aliases[value] ?? value) : value

export const normaliseStatus = (status: string): string => alias(statusAliases, status)
export const normalisePhase = (phase: string): string => alias(phaseAliases, phase)

export const status = (fm: Frontmatter): string => normaliseStatus(stringField(fm, "status"))
/** `None` when missing, not a string, or empty. */
export const phase = (fm: Frontmatter): Option.Option<string> => {
  const raw = stringField(fm, "phase")
  return raw === "" ? Option.none() : Option.some(normalisePhase(raw))
}
export const assignee = (fm: Frontmatter): string => stringField(fm, "assignee")
export const taskType = (fm: Frontmatter): string => stringField(fm, "task_type")
export const stage = (fm: Frontmatter): string => stringField(fm, "stage") || "prod"
export const triggerCount = (fm: Frontmatter): number => intField(fm, "trigger_count", 0)
export const maxTriggers = (fm: Frontmatter): number => intField(fm, "max_triggers", 3)
export const currentJob = (fm: Frontmatter): string => stringField(fm, "current_job")

export type StartedAt =
  | { readonly _tag: "Absent" }
  | { readonly _tag: "Invalid"; readonly raw: string }
  | { readonly _tag: "At"; readonly at: Millis }

export const jobStartedAt = (fm: Frontmatter): StartedAt => {
  const raw = stringField(fm, "job_started_at")
  if (raw === "") return { _tag: "Absent" }
  return Option.match(parseTimestamp(raw), {
    onNone: () => ({ _tag: "Invalid", raw }),
    onSome: (at) => ({ _tag: "At", at })
  })
}
