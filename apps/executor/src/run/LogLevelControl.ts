import { Context, Duration, Effect, FiberMap, Layer, Logger, LogLevel, MutableRef, Option } from "effect"

/** Log verbosity that `/setloglevel/{level}` changes for five minutes, then reverts (executor.md §3.3). */
export interface LogLevelControlShape {
  readonly set: (level: LogLevel.LogLevel) => Effect.Effect<void>
}

export class LogLevelControl extends Context.Tag("executor/LogLevelControl")<LogLevelControl, LogLevelControlShape>() {}

export const revertAfter = Duration.minutes(5)

/** Names, or the reference's numeric verbosity (`-v=N`: 3 and above is debug). */
export const parseLevel = (raw: string): Option.Option<LogLevel.LogLevel> => {
  const lower = raw.toLowerCase()
  if (/^\d+$/.test(lower)) return Option.some(Number(lower) >= 3 ? LogLevel.Debug : LogLevel.Info)
  const named: Record<string, LogLevel.LogLevel> = {
    trace: LogLevel.Trace,
    debug: LogLevel.Debug,
    info: LogLevel.Info,
    warn: LogLevel.Warning,
    warning: LogLevel.Warning,
    error: LogLevel.Error
  }
  return Option.fromNullable(named[lower])
}

/** JSON-line logs filtered by the current level; the `event` annotation carries the REF tokens. */
export const layer = (initial: LogLevel.LogLevel) =>
  Layer.unwrapScoped(
    Effect.gen(function* () {
      const current = MutableRef.make(initial)
      const reverts = yield* FiberMap.make<"revert">()
      const logger = Logger.filterLogLevel(Logger.withConsoleLog(Logger.jsonLogger), (level) =>
        LogLevel.greaterThanEqual(level, MutableRef.get(current))
      )
      const control: LogLevelControlShape = {
        set: (level) =>
          Effect.gen(function* () {
            MutableRef.set(current, level)
            yield* FiberMap.run(
              reverts,
              "revert",
              Effect.zipRight(Effect.sleep(revertAfter), Effect.sync(() => MutableRef.set(current, initial)))
            )
          })
      }
      return Layer.merge(
        Layer.succeed(LogLevelControl, control),
        Layer.merge(Logger.replace(Logger.defaultLogger, logger), Logger.minimumLogLevel(LogLevel.All))
      )
    })
  )

