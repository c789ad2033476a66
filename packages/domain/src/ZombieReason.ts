import { Schema } from "effect"

/**
 * Why a run will never produce a result. The first seven strings are the reference executor's
 * and appear verbatim in `## Failure` bodies that operator tooling greps: never rename them.
 */
export const ZombieReason = Schema.Literal(
  "image_pull_backoff",
  "pod_evicted",
  "deadline_exceeded",
  "pod_not_scheduled",
  "pod_crash_no_stdout",
  "executor_watch_lost",
  "type_mismatch",
  "pod_config_error",
  "job_pod_create_failed"
)
export type ZombieReason = typeof ZombieReason.Type

export const zombieReasons: ReadonlyArray<ZombieReason> = ZombieReason.literals
