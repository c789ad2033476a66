import { DateTime, Option } from "effect"

/** Epoch milliseconds: the one representation of an instant inside the executor. */
export type Millis = number

/** UTC, second precision, `Z` suffix: the format of `job_started_at` and `## Failure` timestamps. */
export const formatUtcSeconds = (at: Millis): string =>
  DateTime.formatIso(DateTime.unsafeMake(Math.floor(at / 1000) * 1000)).replace(".000Z", "Z")

/** Parses an RFC3339 timestamp (fractional seconds allowed); `None` when absent or unparseable. */
const rfc3339 = /^\d{4}-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/

export const parseTimestamp = (value: string | undefined): Option.Option<Millis> =>
  value === undefined || !rfc3339.test(value)
    ? Option.none()
    : Option.filter(
        Option.map(DateTime.make(value), DateTime.toEpochMillis),
        (ms) => Number.isFinite(ms)
      )

export const seconds = (n: number): Millis => n * 1000

/** RFC3339 with milliseconds, UTC. */
export const formatIso = (at: Millis): string => DateTime.formatIso(DateTime.unsafeMake(at))
