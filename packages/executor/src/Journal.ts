import { Context, Effect, Layer } from "effect"
import type { ZombieReason } from "@executor/domain"

export type VerdictSource = "pod" | "job" | "sweeper" | "recovery" | "dispatch"

/** Decisions worth a line of their own: the simulation writes them out, `run` logs them. */
export type JournalEntry =
  | {
      readonly _tag: "Verdict"
      readonly taskId: string
      readonly jobName: string | undefined
      readonly reason: ZombieReason
      readonly detail: string
      readonly source: VerdictSource
    }
  | { readonly _tag: "Spawned"; readonly taskId: string; readonly jobName: string }

export interface JournalShape {
  readonly record: (entry: JournalEntry) => Effect.Effect<void>
}

export class Journal extends Context.Tag("executor/Journal")<Journal, JournalShape>() {
  static readonly layerLog = Layer.succeed(Journal, {
    record: (entry) =>
      entry._tag === "Verdict"
        ? Effect.logWarning("zombie verdict").pipe(
            Effect.annotateLogs({
              event: "zombie_verdict",
              task: entry.taskId,
              job: entry.jobName ?? "",
              reason: entry.reason,
              source: entry.source
            })
          )
        : Effect.logInfo("job spawned").pipe(
            Effect.annotateLogs({ event: "job_spawned", task: entry.taskId, job: entry.jobName })
          )
  })
}
