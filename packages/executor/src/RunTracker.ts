import { Context, Effect, HashMap, Layer, Metric, Option, Ref } from "effect"
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
  readonly observe: (jobName: string, firstSeen: Classifier.FirstSeen) => Effect.Effect<void>
  /** Marks the run as being settled; false when it is gone or another detector got there first. */
  readonly beginSettling: (jobName: string) => Effect.Effect<boolean>
  readonly remove: (jobName: string) => Effect.Effect<void>
}

/** The same signals, first seen at the same times. */
export const sameSignals = (a: Classifier.FirstSeen, b: Classifier.FirstSeen): boolean => {
  if (a.size !== b.size) return false
  for (const [kind, at] of a) if (b.get(kind) !== at) return false
  return true
}

const make = Effect.gen(function* () {
  // A persistent map: an update shares structure instead of copying every run in flight.
  const runs = yield* Ref.make(HashMap.empty<string, TrackedRun>())
  const update = (f: (current: HashMap.HashMap<string, TrackedRun>) => HashMap.HashMap<string, TrackedRun>) =>
    Effect.flatMap(Ref.updateAndGet(runs, f), (next) => Metric.set(Metrics.trackedRuns, HashMap.size(next)))
  const modifyRun = (jobName: string, f: (run: TrackedRun) => TrackedRun) =>
    Ref.update(runs, (m) => {
      const run = Option.getOrUndefined(HashMap.get(m, jobName))
      if (run === undefined) return m
      const next = f(run)
      return next === run ? m : HashMap.set(m, jobName, next)
    })
  const shape: RunTrackerShape = {
    track: (run) => {
      const tracked: TrackedRun = { ...run, firstSeen: new Map(), settling: false }
      return update(HashMap.set(run.jobName, tracked))
    },
    get: (jobName) => Effect.map(Ref.get(runs), HashMap.get(jobName)),
    all: Effect.map(Ref.get(runs), (m) => [...HashMap.values(m)]),
    markSpawnPublished: (jobName) => modifyRun(jobName, (run) => ({ ...run, spawnPublished: true })),
    observe: (jobName, firstSeen) =>
      modifyRun(jobName, (run) => (sameSignals(run.firstSeen, firstSeen) ? run : { ...run, firstSeen })),
    beginSettling: (jobName) =>
      Ref.modify(runs, (m): [boolean, HashMap.HashMap<string, TrackedRun>] => {
        const run = Option.getOrUndefined(HashMap.get(m, jobName))
        if (run === undefined || run.settling) return [false, m]
        return [true, HashMap.set(m, jobName, { ...run, settling: true })]
      }),
    remove: (jobName) => update(HashMap.remove(jobName))
  }
  return shape
})

export class RunTracker extends Context.Tag("executor/RunTracker")<RunTracker, RunTrackerShape>() {
  static readonly layer = Layer.effect(RunTracker, make)
}
