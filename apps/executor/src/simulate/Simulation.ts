import { Clock, Duration, Effect, Logger, LogLevel, Option, Random, Stream } from "effect"
import { Commands, Kube } from "@executor/domain"
import { parseCron, type VerdictSource } from "@executor/executor"
import { AgentModel, ControllerModel, type InMemoryCluster, VirtualTime, World } from "@executor/testkit"
import { behaviourPlan, type ScenarioFile, toMillis } from "./Scenario.js"

/** One line of the JSON Lines output (simulation.md, "Output"). */
export type Line =
  | { readonly t: number; readonly kind: "job.created"; readonly task: string; readonly job: string; readonly attempt: number }
  | { readonly t: number; readonly kind: "job.deleted"; readonly task: string; readonly job: string }
  | {
      readonly t: number
      readonly kind: "job.finished"
      readonly task: string
      readonly job: string
      readonly outcome: "Complete" | "Failed"
      readonly reason: string
    }
  | {
      readonly t: number
      readonly kind: "verdict"
      readonly task: string
      readonly job?: string
      readonly reason: string
      readonly detail: string
      readonly source: VerdictSource
    }
  | {
      readonly t: number
      readonly kind: "command"
      readonly topic: string
      readonly key: string | null
      readonly operation: string
      readonly initiator: string
      readonly data: unknown
    }
  | {
      readonly t: number
      readonly kind: "command.expired"
      readonly task: string
      readonly operation: string
      readonly requestTime: string
    }
  | { readonly t: number; readonly kind: "intervention"; readonly what: string; readonly detail: string }
  | {
      readonly t: number
      readonly kind: "final"
      readonly tasks: Readonly<Record<string, ControllerModel.TaskState>>
    }

/** The simulated clock starts on a Monday (simulation.md). */
export const epochMillis = Date.UTC(2026, 0, 5)

const noticeLine = (notice: InMemoryCluster.ClusterNotice): Line =>
  notice._tag === "JobCreated"
    ? { t: notice.at - epochMillis, kind: "job.created", task: notice.taskId, job: notice.jobName, attempt: notice.attempt }
    : { t: notice.at - epochMillis, kind: "job.deleted", task: notice.taskId, job: notice.jobName }

/**
 * Runs a scenario: the real executor layers over the in-memory cluster and broker, the controller
 * and agent models, and the scenario's interventions, for `duration` of virtual time.
 */
export const simulate = (scenario: ScenarioFile): Effect.Effect<ReadonlyArray<Line>> =>
  VirtualTime.run(epochMillis, (time) => simulation(scenario, time)).pipe(
    Effect.orDie,
    // spans have no reader here; their bookkeeping is a tenth of a big simulation's time
    Effect.withTracerEnabled(false),
    Effect.withRandom(Random.make(scenario.settings?.seed ?? 1)),
    Logger.withMinimumLogLevel(LogLevel.Warning),
    // stdout carries the output alone; logs go to stderr
    Effect.provide(Logger.replace(Logger.defaultLogger, Logger.withConsoleError(Logger.logfmtLogger)))
  )

const simulation = (scenario: ScenarioFile, time: VirtualTime.VirtualTime): Effect.Effect<ReadonlyArray<Line>> =>
  Effect.gen(function* () {
    const settings = scenario.settings ?? {}
    const world = yield* World.make({
      podBehaviour: behaviourPlan(scenario),
      settings: {
        ...(settings.branch === undefined ? {} : { branch: settings.branch }),
        ...(settings.namespace === undefined ? {} : { namespace: settings.namespace }),
        ...(settings.topicPrefix === undefined ? {} : { topicPrefix: settings.topicPrefix }),
        ...(settings.jobTtlSecondsAfterFinished === undefined
          ? {}
          : { jobTtlSecondsAfterFinished: settings.jobTtlSecondsAfterFinished })
      }
    })
    const topics = Commands.topics(world.settings.topicPrefix)
    const controller = yield* ControllerModel.make(world.bus, { topicPrefix: world.settings.topicPrefix })
    yield* AgentModel.make(world.bus, world.cluster, controller, {
      topicPrefix: world.settings.topicPrefix,
      taskIdLabel: world.settings.names.taskIdLabel
    })
    // Lines recorded as the world runs, read once it has settled (appends: no copy per line).
    const interventions: Array<Line> = []
    const notices: Array<Line> = []
    const note = (what: string, detail: string) =>
      Effect.map(Clock.currentTimeMillis, (now) => void interventions.push({ t: now - epochMillis, kind: "intervention", what, detail }))

    for (const agent of scenario.agents ?? []) yield* world.cluster.applyConfig(agent.name, agent.spec)

    const cron = Option.fromNullable(settings.healthcheckCronExpression).pipe(
      Option.flatMap((expression) => Option.getRight(parseCron(expression)))
    )
    const startExecutor = world.startExecutor("full", Option.isSome(cron) ? { healthcheckCron: cron.value } : {})
    let executor = yield* startExecutor
    yield* world.cluster.notices.pipe(
      Stream.runForEach((notice) => Effect.sync(() => void notices.push(noticeLine(notice)))),
      Effect.forkScoped
    )
    const finished = new Set<string>()
    yield* world.cluster.watch.jobEvents.pipe(
      Stream.runForEach((event) =>
        Effect.gen(function* () {
          if (event._tag !== "Upsert") return
          const job = event.object
          const failed = Kube.jobFailedCondition(job)
          const done = Kube.jobSucceeded(job) ? Option.some("Complete" as const) : Option.as(failed, "Failed" as const)
          if (Option.isNone(done) || finished.has(job.metadata.name)) return
          finished.add(job.metadata.name)
          const now = yield* Clock.currentTimeMillis
          const line: Line = {
            t: now - epochMillis,
            kind: "job.finished",
            task: Kube.label(job.metadata, world.settings.names.taskIdLabel),
            job: job.metadata.name,
            outcome: done.value,
            reason: Option.getOrElse(Option.flatMap(failed, (c) => Option.fromNullable(c.reason)), () => "")
          }
          notices.push(line)
        })
      ),
      Effect.forkScoped
    )

    for (const task of scenario.tasks ?? []) {
      const publish = controller.edit(task.taskIdentifier, task.frontmatter, task.content ?? "")
      const at = toMillis(task.at ?? 0)
      yield* at === 0 ? publish : Effect.forkScoped(Effect.zipRight(Effect.sleep(Duration.millis(at)), publish))
    }

    yield* Effect.forkScoped(
      Effect.forEach(scenario.events ?? [], (event) =>
        Effect.gen(function* () {
          const now = (yield* Clock.currentTimeMillis) - epochMillis
          const at = toMillis(event.at)
          if (at > now) yield* Effect.sleep(Duration.millis(at - now))
          if ("restartExecutor" in event) {
            yield* note("restartExecutor", String(event.restartExecutor))
            yield* executor.stop
            yield* Effect.forkScoped(
              Effect.gen(function* () {
                yield* Effect.sleep(Duration.millis(toMillis(event.restartExecutor)))
                yield* note("executorStarted", "")
                executor = yield* startExecutor
              })
            )
          } else if ("kafkaDown" in event) {
            yield* note("kafkaDown", String(event.kafkaDown))
            yield* world.bus.setDown(true)
            yield* Effect.forkScoped(
              Effect.zipRight(Effect.sleep(Duration.millis(toMillis(event.kafkaDown))), world.bus.setDown(false))
            )
          } else if ("kafkaAckLost" in event) {
            yield* note("kafkaAckLost", String(event.kafkaAckLost))
            yield* world.bus.loseNextAcks(event.kafkaAckLost)
          } else if ("deleteJob" in event) {
            const job = yield* world.cluster.currentJobOfTask(event.deleteJob)
            yield* note("deleteJob", Option.match(job, { onNone: () => "no job", onSome: (j) => j.metadata.name }))
            if (Option.isSome(job)) yield* Effect.ignore(world.cluster.deleteJob(job.value.metadata.name))
          } else if ("task" in event) {
            yield* note("task", event.task.taskIdentifier)
            yield* controller.edit(event.task.taskIdentifier, event.task.frontmatter, event.task.content ?? "")
          } else if ("agent" in event) {
            yield* note("agent", event.agent.name)
            yield* world.cluster.applyConfig(event.agent.name, event.agent.spec)
          } else {
            yield* note("deleteAgent", event.deleteAgent)
            yield* Effect.ignore(world.cluster.deleteConfig(event.deleteAgent))
          }
        })
      )
    )

    yield* time.settleAt(epochMillis + toMillis(scenario.duration))

    const end = toMillis(scenario.duration)
    const journal = yield* world.journal
    const commands = yield* world.bus.records(topics.request)
    const lines: Array<Line> = [
      ...notices,
      ...journal.flatMap((entry): Array<Line> =>
        entry._tag === "Verdict"
          ? [
              {
                t: entry.at - epochMillis,
                kind: "verdict",
                task: entry.taskId,
                ...(entry.jobName === undefined ? {} : { job: entry.jobName }),
                reason: entry.reason,
                detail: entry.detail,
                source: entry.source
              }
            ]
          : []
      ),
      ...commands.map((record): Line => {
        const envelope = JSON.parse(record.value) as { operation: string; initiator: string; data: unknown }
        return {
          t: record.appendedAt - epochMillis,
          kind: "command",
          topic: record.topic,
          key: record.key,
          operation: envelope.operation,
          initiator: envelope.initiator,
          data: envelope.data
        }
      }),
      ...(yield* controller.expired).map(
        (expired): Line => ({
          t: expired.at - epochMillis,
          kind: "command.expired",
          task: expired.taskId,
          operation: expired.operation,
          requestTime: expired.requestTime
        })
      ),
      ...interventions
    ]
      // Jittered retries can fall between milliseconds; the output counts whole ones.
      .map((line) => ({ ...line, t: Math.round(line.t) }))
      .filter((line) => line.t <= end)
      .sort((a, b) => a.t - b.t)
    const tasks = yield* controller.tasks
    const final: Line = { t: end, kind: "final", tasks: Object.fromEntries(tasks) }
    return [...lines, final]
  }).pipe(Effect.scoped)
