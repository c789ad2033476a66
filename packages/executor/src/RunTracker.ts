import { Context, Effect, Layer, Metric, Option, Ref } from "effect"
import type { Classifier, Time } from "@executor/domain"
import * as Metrics from "./Metrics.js"

/** One run in flight, tracked by its Job name (decisions D4.1), never by the pre-spawn event. */
export interface TrackedRun {
  readonly taskId: string
  readonly jobName: string
  readonly assignee: string
  readonly startedAt: Time.Millis
  /** The Job's own `activeDeadlineSeconds`: what the cluster enforces for this run. */
  readonly timeoutSeconds: number
  /** 1 for the first spawn of a task; unknown for a run rebuilt after a restart. */
  readonly attempt: Option.Option<number>
  readonly firstSeen: Classifier.FirstSeen
  /** A detector has reserved this run's verdict; the others leave it alone. */
  readonly settling: boolean
  /**
   * This process published the run's spawn (increment and notification). A run rebuilt after a
   * restart is not: its spawn may have been lost in the crash, and a redelivered event publishes it.
   */
  readonly spawnPublished: boolean
}

export interface RunTrackerShape {
  readonly track: (run: Omit<TrackedRun, "firstSeen" | "settling">) => Effect.Effect<void>
  /** Records that the spawn of a run already tracked has now been published. */
  readonly markSpawnPublished: (jobName: string) => Effect.Effect<void>
  readonly get: (jobName: string) => Effect.Effect<Option.Option<TrackedRun>>
  readonly all: Effect.Effect<ReadonlyArray<TrackedRun>>
  /** The newest run of a task, if one is in flight. */
  readonly forTask: (taskId: string) => Effect.Effect<Option.Option<TrackedRun>>
  readonly observe: (jobName: string, firstSeen: Classifier.FirstSeen) => Effect.Effect<void>
  /** Marks the run as being settled; false when it is gone or another detector got there first. */
  readonly beginSettling: (jobName: string) => Effect.Effect<boolean>
  readonly remove: (jobName: string) => Effect.Effect<void>
}

const make = Effect.gen(function* () {
  const runs = yield* Ref.make<ReadonlyMap<string, TrackedRun>>(new Map())
  const update = (f: (current: Map<string, TrackedRun>) => void) =>
    Effect.flatMap(
      Ref.updateAndGet(runs, (current) => {
        const next = new Map(current)
        f(next)
        return next
      }),
      (next) => Metric.set(Metrics.trackedRuns, next.size)
    )
  const shape: RunTrackerShape = {
    track: (run) => update((m) => m.set(run.jobName, { ...run, firstSeen: new Map(), settling: false })),
    get: (jobName) => Effect.map(Ref.get(runs), (m) => Option.fromNullable(m.get(jobName))),
    all: Effect.map(Ref.get(runs), (m) => [...m.values()]),
    forTask: (taskId) =>
      Effect.map(Ref.get(runs), (m) =>
        Option.fromNullable(
          [...m.values()]
            .filter((run) => run.taskId === taskId)
            .reduce<TrackedRun | undefined>((newest, run) => (newest === undefined || run.startedAt >= newest.startedAt ? run : newest), undefined)
        )
      ),
    markSpawnPublished: (jobName) =>
      Ref.update(runs, (m) => {
        const run = m.get(jobName)
        return run === undefined ? m : new Map(m).set(jobName, { ...run, spawnPublished: true })
      }),
    observe: (jobName, firstSeen) =>
      Ref.update(runs, (m) => {
        const run = m.get(jobName)
        return run === undefined ? m : new Map(m).set(jobName, { ...run, firstSeen })
      }),
    beginSettling: (jobName) =>
      Ref.modify(runs, (m): [boolean, ReadonlyMap<string, TrackedRun>] => {
        const run = m.get(jobName)
        if (run === undefined || run.settling) return [false, m]
        return [true, new Map(m).set(jobName, { ...run, settling: true })]
      }),
    remove: (jobName) => update((m) => m.delete(jobName))
  }
  return shape
})

export class RunTracker extends Context.Tag("executor/RunTracker")<RunTracker, RunTrackerShape>() {
  static readonly layer = Layer.effect(RunTracker, make)
}
