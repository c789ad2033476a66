import { Array as Arr, Duration, Either, ParseResult, Schema } from "effect"
import { AgentConfig } from "@executor/domain"
import { PodBehaviour } from "@executor/testkit"

const durationMessage = "expected a duration (e.g. 90s, 5m, 1h30m) or a number of seconds"

/** `90s`, `5m`, `1h30m`, or a number of seconds. */
export const DurationString = Schema.Union(
  Schema.NonNegative,
  Schema.String.pipe(Schema.filter((s) => /^(\d+h)?(\d+m)?(\d+s)?$/.test(s) && s !== ""))
).annotations({ identifier: "Duration", message: () => ({ message: durationMessage, override: true }) })

export const toMillis = (d: typeof DurationString.Type): number => {
  if (typeof d === "number") return d * 1000
  const part = (unit: string) => Number(d.match(new RegExp(`(\\d+)${unit}`))?.[1] ?? 0)
  return (part("h") * 3600 + part("m") * 60 + part("s")) * 1000
}

const strict = { onExcessProperty: "error" } as const
const ms = (d: typeof DurationString.Type) => Duration.millis(toMillis(d))

const Behaviour = Schema.Union(
  Schema.Literal("image-pull-fails", "invalid-image", "config-error", "unschedulable", "hang", "no-pod"),
  Schema.Struct({ succeed: DurationString }),
  Schema.Struct({
    fail: DurationString,
    exitCode: Schema.optional(Schema.Int),
    reason: Schema.optional(Schema.NonEmptyString)
  }),
  Schema.Struct({ "image-pull-recovers": DurationString }),
  /** `exitCode`: how the process ends once evicted (default 137: it ignores SIGTERM; 0: it exits 0 and the pod ends Succeeded). */
  Schema.Struct({ evicted: DurationString, exitCode: Schema.optional(Schema.Int) }),
  /** Like `hang`, but the process exits with `exitCode` as soon as it gets SIGTERM (at the Job deadline). */
  Schema.Struct({ hang: Schema.Struct({ exitCode: Schema.Int }) })
).annotations({ identifier: "PodBehaviour" })
type Behaviour = typeof Behaviour.Type

export const toPodBehaviour = (b: Behaviour): PodBehaviour.PodBehaviour => {
  if (typeof b === "string") {
    switch (b) {
      case "image-pull-fails":
        return PodBehaviour.imagePullFails
      case "invalid-image":
        return PodBehaviour.invalidImage
      case "config-error":
        return PodBehaviour.configError
      case "unschedulable":
        return PodBehaviour.unschedulable
      case "hang":
        return PodBehaviour.hang
      case "no-pod":
        return PodBehaviour.noPod
    }
  }
  if ("succeed" in b) return PodBehaviour.succeed(ms(b.succeed))
  if ("fail" in b) {
    return PodBehaviour.fail(ms(b.fail), {
      ...(b.exitCode === undefined ? {} : { exitCode: b.exitCode }),
      ...(b.reason === undefined ? {} : { reason: b.reason })
    })
  }
  if ("image-pull-recovers" in b) return PodBehaviour.imagePullRecovers(ms(b["image-pull-recovers"]))
  if ("hang" in b) return PodBehaviour.hangUntilSigterm(b.hang.exitCode)
  return PodBehaviour.evicted(ms(b.evicted), b.exitCode === undefined ? {} : { exitCode: b.exitCode })
}

/** The frontmatter keys the executor reads are type-checked; every other key passes through. */
const Frontmatter = Schema.Struct(
  {
    status: Schema.optional(Schema.String.annotations({ message: () => "expected a string" })),
    phase: Schema.optional(Schema.String.annotations({ message: () => "expected a string" })),
    assignee: Schema.optional(Schema.String.annotations({ message: () => "expected a string" })),
    task_type: Schema.optional(Schema.String.annotations({ message: () => "expected a string" })),
    stage: Schema.optional(Schema.String.annotations({ message: () => "expected a string" })),
    trigger_count: Schema.optional(Schema.Number.annotations({ message: () => "expected a number" })),
    max_triggers: Schema.optional(Schema.Number.annotations({ message: () => "expected a number" }))
  },
  Schema.Record({ key: Schema.String, value: Schema.Unknown })
)

const Task = Schema.Struct({
  taskIdentifier: Schema.NonEmptyString,
  at: Schema.optional(DurationString),
  frontmatter: Frontmatter,
  content: Schema.optional(Schema.String)
})

const Agent = Schema.Struct({ name: Schema.NonEmptyString, spec: Schema.Unknown })

const Intervention = Schema.Union(
  Schema.Struct({ at: DurationString, restartExecutor: DurationString }),
  Schema.Struct({ at: DurationString, deleteJob: Schema.NonEmptyString }),
  Schema.Struct({ at: DurationString, kafkaDown: DurationString }),
  Schema.Struct({ at: DurationString, kafkaAckLost: Schema.Int.pipe(Schema.positive()) }),
  Schema.Struct({
    at: DurationString,
    task: Schema.Struct({
      taskIdentifier: Schema.NonEmptyString,
      frontmatter: Frontmatter,
      content: Schema.optional(Schema.String)
    })
  }),
  Schema.Struct({ at: DurationString, agent: Agent }),
  Schema.Struct({ at: DurationString, deleteAgent: Schema.NonEmptyString })
)

export const ScenarioFile = Schema.Struct({
  name: Schema.optional(Schema.String),
  duration: DurationString,
  settings: Schema.optional(
    Schema.Struct({
      branch: Schema.optional(Schema.NonEmptyString),
      namespace: Schema.optional(Schema.NonEmptyString),
      topicPrefix: Schema.optional(Schema.String),
      jobTtlSecondsAfterFinished: Schema.optional(Schema.NonNegativeInt),
      healthcheckCronExpression: Schema.optional(Schema.String),
      seed: Schema.optional(Schema.Int)
    })
  ),
  agents: Schema.optional(Schema.Array(Agent)),
  tasks: Schema.optional(Schema.Array(Task)),
  pods: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.Array(Behaviour).pipe(Schema.minItems(1)) })),
  events: Schema.optional(Schema.Array(Intervention))
})
export type ScenarioFile = typeof ScenarioFile.Type
export type Intervention = typeof Intervention.Type

export class InvalidScenario extends Schema.TaggedError<InvalidScenario>()("InvalidScenario", {
  message: Schema.String
}) {}

const pathOf = (path: ReadonlyArray<PropertyKey>) =>
  path.reduce<string>((acc, key) => (typeof key === "number" ? `${acc}[${key}]` : acc === "" ? String(key) : `${acc}.${String(key)}`), "")

const firstIssue = (error: ParseResult.ParseError): string => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  // A union reports one issue per alternative: the deepest path is the one the author meant, and
  // "is unexpected" and "is missing" only say what another alternative would have wanted.
  const rank = (i: (typeof issues)[number]) =>
    i.path.length * 3 + (i.message.startsWith("is unexpected") ? 0 : i.message.startsWith("is missing") ? 1 : 2)
  const first = issues[0]
  if (first === undefined) return "scenario: invalid"
  const best = issues.reduce((a, b) => (rank(b) > rank(a) ? b : a), first)
  const message = best.message.replace(/^Expected (\w+), actual .*/s, (_, t: string) => `expected ${t === "NonNegative" ? "a non-negative number" : `a ${t.toLowerCase()}`}`)
  return `${pathOf(best.path) || "scenario"}: ${message}`
}

/** Validates a parsed scenario strictly: unknown keys, wrong types, Configs the API server would reject, dangling names. */
export const validate = (input: unknown): Either.Either<ScenarioFile, InvalidScenario> =>
  typeof input !== "object" || input === null || Array.isArray(input)
    ? Either.left(new InvalidScenario({ message: "scenario: expected a mapping with at least `duration`" }))
    : validateMapping(input)

const validateMapping = (input: object): Either.Either<ScenarioFile, InvalidScenario> =>
  Schema.decodeUnknownEither(ScenarioFile, { ...strict, errors: "all" })(input).pipe(
    Either.mapLeft((error) => new InvalidScenario({ message: firstIssue(error) })),
    Either.flatMap((scenario) => {
      const problems: Array<string> = []
      const agentNames = new Set<string>()
      Arr.forEach(scenario.agents ?? [], (agent, i) => {
        agentNames.add(agent.name)
        const checked = AgentConfig.agentConfig({ name: agent.name }, agent.spec, { strict: true })
        if (Either.isLeft(checked)) problems.push(`agents[${i}].${checked.left.issues[0] ?? "spec: invalid"}`)
      })
      const taskIds = new Set((scenario.tasks ?? []).map((t) => t.taskIdentifier))
      for (const key of Object.keys(scenario.pods ?? {})) {
        if (key !== "default" && !taskIds.has(key)) problems.push(`pods.${key}: unknown task`)
      }
      Arr.forEach(scenario.events ?? [], (event, i) => {
        if ("deleteJob" in event && !taskIds.has(event.deleteJob)) problems.push(`events[${i}].deleteJob: unknown task "${event.deleteJob}"`)
        if ("task" in event && !taskIds.has(event.task.taskIdentifier)) {
          problems.push(`events[${i}].task.taskIdentifier: unknown task "${event.task.taskIdentifier}"`)
        }
        if ("agent" in event) {
          const checked = AgentConfig.agentConfig({ name: event.agent.name }, event.agent.spec, { strict: true })
          if (Either.isLeft(checked)) problems.push(`events[${i}].agent.${checked.left.issues[0] ?? "spec: invalid"}`)
          agentNames.add(event.agent.name)
        }
        if ("deleteAgent" in event && !agentNames.has(event.deleteAgent)) {
          problems.push(`events[${i}].deleteAgent: unknown agent "${event.deleteAgent}"`)
        }
      })
      const times = (scenario.events ?? []).map((e) => toMillis(e.at))
      if (times.some((t, i) => i > 0 && t < (times[i - 1] ?? 0))) problems.push("events: must be in time order")
      const first = problems[0]
      return first === undefined ? Either.right(scenario) : Either.left(new InvalidScenario({ message: first }))
    })
  )

export const behaviourPlan = (scenario: ScenarioFile): PodBehaviour.Resolver => {
  const { default: defaults, ...byTask } = scenario.pods ?? {}
  return PodBehaviour.plan({
    default: (defaults ?? [{ succeed: "5m" }]).map(toPodBehaviour),
    byTask: Object.fromEntries(Object.entries(byTask).map(([task, list]) => [task, list.map(toPodBehaviour)]))
  })
}
