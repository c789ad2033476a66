import { Context, Cron, Effect, Either, Layer, Metric, Schedule, Schema } from "effect"
import { Probe } from "@executor/domain"
import { AgentRegistry } from "./AgentRegistry.js"
import { CommandPublisher } from "./CommandPublisher.js"
import { ExecutorSettings } from "./ExecutorSettings.js"
import * as Metrics from "./Metrics.js"

export const defaultCronExpression = "0 0 8 * * 1"

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

export type ProbeOutcome = "ran" | "already-running"

export interface HealthcheckShape {
  /** Publishes one probe task per agent; a second call while one runs does nothing (single flight). */
  readonly trigger: Effect.Effect<ProbeOutcome>
}

const make = Effect.gen(function* () {
  const registry = yield* AgentRegistry
  const publisher = yield* CommandPublisher
  const { branch } = yield* ExecutorSettings
  const inFlight = yield* Effect.makeSemaphore(1)

  const probeAll = Effect.gen(function* () {
    const agents = yield* registry.all
    for (const agent of agents) {
      yield* publisher.publish(Probe.probeCommands(agent.spec.assignee, branch))
    }
    yield* Effect.logInfo(`healthcheck probe published for ${agents.length} agents`)
  }).pipe(
    // A failed probe is logged and counted; it never stops the executor (REF §8.16).
    Effect.catchAll((error) =>
      Effect.zipRight(
        Metric.increment(Metrics.probeFailures),
        Effect.logError(`healthcheck probe failed: ${error.message}`)
      )
    )
  )

  const trigger = inFlight
    .withPermitsIfAvailable(1)(probeAll)
    .pipe(Effect.map((ran) => (ran._tag === "Some" ? "ran" : "already-running") as ProbeOutcome))
  return { trigger } satisfies HealthcheckShape
})

export class Healthcheck extends Context.Tag("executor/Healthcheck")<Healthcheck, HealthcheckShape>() {
  static readonly layer = Layer.effect(Healthcheck, make)
}

/** Runs the probe on its cron schedule. */
export const HealthcheckCronLive = (cron: Cron.Cron) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const healthcheck = yield* Healthcheck
      yield* healthcheck.trigger.pipe(Effect.schedule(Schedule.cron(cron)), Effect.forkScoped)
    })
  )
