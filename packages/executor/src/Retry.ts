import { Duration, Schedule } from "effect"

/** Capped, jittered exponential back-off for transient API and broker errors (decisions D4.10). */
export const transientBackoff = (cap: Duration.DurationInput = "30 seconds") =>
  Schedule.exponential("500 millis", 2).pipe(
    Schedule.union(Schedule.spaced(cap)),
    Schedule.jittered
  )
