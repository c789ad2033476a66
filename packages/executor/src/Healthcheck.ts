import { Clock, Context, Cron, Duration, Effect, Either, Layer, Metric, Schedule, Schema } from "effect"
import { CommandGroup, Probe, Time } from "@executor/domain"
import { AgentRegistry } from "./AgentRegistry.js"
import { CommandPublisher, type PublishError } from "./CommandPublisher.js"
import { ExecutorSettings } from "./ExecutorSettings.js"
import * as Metrics from "./Metrics.js"
import { transientBackoff } from "./Retry.js"

export const defaultCronExpression = "0 0 8 * * 1"

/** The probe of a tick that is not (wholly) in the log is sent by an executor that starts this soon after it. */
export const probeCompletionWindow = Duration.hours(1)

/**
 * A probe's records are looked for from this long before its tick: records carry the time the
 * executor sent them, but a topic that stamps the broker's time would put them earlier by the skew.
 */
export const probeLookBack = Duration.minutes(5)

export class InvalidCron extends Schema.TaggedError<InvalidCron>()("InvalidCron", {
  expression: Schema.String,
  message: Schema.String
}) {}

/** Six fields, seconds first, evaluated in UTC. */
export const parseCron = (expression: string) =>
  Either.mapLeft(
    Cron.parse(expression, "UTC"),
    (error) => new InvalidCron({ expression, message: `invalid cron expression "${expression}": ${error.message}` })
  )

/** The cron's tick at or before `now` (second precision). */
export const lastTick = (cron: Cron.Cron, now: Time.Millis): Time.Millis => {
  const second = Math.floor(now / 1000) * 1000
  return Cron.match(cron, new Date(second)) ? second : Cron.prev(cron, new Date(second)).getTime()
}

export type ProbeOutcome = "ran" | "already-running"

export interface HealthcheckShape {
  /** Publishes one probe task per agent (a manual trigger); a second call while one runs does nothing (single flight). */
  readonly trigger: Effect.Effect<ProbeOutcome>
  /**
   * The probe of the cron tick `at`: per agent one group identified by the tick. The groups of the
   * tick already in the log (sent by this or an earlier executor that died half-way) are read back
   * first and not sent again, so a tick is probed exactly once however often this runs for it.
   * Waits while another probe runs.
   */
  readonly tick: (at: Time.Millis) => Effect.Effect<void>
}

const make = Effect.gen(function* () {
  const registry = yield* AgentRegistry
  const publisher = yield* CommandPublisher
  const { branch } = yield* ExecutorSettings
  const inFlight = yield* Effect.makeSemaphore(1)

  const groupOf = (assignee: string, run: string) =>
    CommandGroup.make(
      CommandGroup.probeId(assignee, branch, run),
      Probe.probeTaskId(assignee, branch),
      Probe.probeCommands(assignee, branch)
    )

  /** Every failed attempt is logged and counted; a broker outage is waited out (nothing is lost), never fatal (REF §8.16). */
  const retrying = <A>(assignee: string, effect: Effect.Effect<A, PublishError>) =>
    effect.pipe(
      Effect.tapError((error) =>
        Effect.zipRight(
          Metric.increment(Metrics.probeFailures),
          Effect.logError(`healthcheck probe failed: ${error.message}`).pipe(Effect.annotateLogs({ assignee }))
        )
      ),
      Effect.retry({ schedule: transientBackoff(), while: (error) => error.kind === "unavailable" })
    )

  const publishNow = (assignee: string, group: CommandGroup.CommandGroup) =>
    retrying(assignee, Effect.flatMap(publisher.place(group), (placement) => publisher.publish(group, placement))).pipe(
      Effect.ignore
    )

  const probeAll = (run: string) =>
    Effect.gen(function* () {
      const agents = yield* registry.all
      for (const agent of agents) yield* publishNow(agent.spec.assignee, groupOf(agent.spec.assignee, run))
      yield* Effect.logInfo(`healthcheck probe published for ${agents.length} agents`)
    })

  const trigger = Effect.flatMap(Clock.currentTimeMillis, (now) =>
    inFlight
      .withPermitsIfAvailable(1)(probeAll(`manual/${Time.formatIso(now)}`))
      .pipe(Effect.map((ran) => (ran._tag === "Some" ? "ran" : "already-running") as ProbeOutcome))
  )

  const tick = (at: Time.Millis) =>
    Effect.gen(function* () {
      yield* registry.synced
      const run = Time.formatIso(at)
      const since = at - Duration.toMillis(probeLookBack)
      const agents = yield* registry.all
      const placed = yield* Effect.forEach(agents, (agent) => {
        const group = groupOf(agent.spec.assignee, run)
        return retrying(agent.spec.assignee, Effect.map(publisher.place(group, since), (placement) => [group, placement] as const))
      })
      const inLog = placed.length === 0 ? new Set<string>() : yield* retrying("(all)", publisher.published(placed))
      for (const [group, placement] of placed) {
        if (inLog.has(group.id)) continue
        yield* retrying(group.taskId, publisher.publish(group, placement)).pipe(Effect.ignore)
      }
      if (inLog.size > 0 && inLog.size < placed.length) {
        yield* Effect.logInfo(`healthcheck probe of ${run} completed: ${placed.length - inLog.size} of ${placed.length} agents were missing`)
      } else if (inLog.size === 0) {
        yield* Effect.logInfo(`healthcheck probe of ${run} published for ${placed.length} agents`)
      }
    }).pipe(Effect.ignore, inFlight.withPermits(1))

  return { trigger, tick } satisfies HealthcheckShape
})

export class Healthcheck extends Context.Tag("executor/Healthcheck")<Healthcheck, HealthcheckShape>() {
  static readonly layer = Layer.effect(Healthcheck, make)
}

/**
 * Runs the probe on its cron schedule. On start, the last tick (at most `probeCompletionWindow`
 * ago) is made good first: whatever of its probe is not in the log (the executor was down at the
 * tick, or died half-way through it) is sent.
 */
export const HealthcheckCronLive = (cron: Cron.Cron) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const healthcheck = yield* Healthcheck
      const now = yield* Clock.currentTimeMillis
      const last = lastTick(cron, now)
      const catchUp = now - last <= Duration.toMillis(probeCompletionWindow) ? healthcheck.tick(last) : Effect.void
      const onTick = Effect.flatMap(Clock.currentTimeMillis, (at) => healthcheck.tick(lastTick(cron, at)))
      yield* Effect.zipRight(catchUp, onTick.pipe(Effect.schedule(Schedule.cron(cron)))).pipe(Effect.forkScoped)
    })
  )
