import { Array as Arr, Either, Option, ParseResult, Schema } from "effect"
import { canonicalPhases, canonicalStatuses, normalisePhase } from "./Frontmatter.js"
import * as Quantities from "./Quantity.js"

/** Default, floor and ceiling (seconds) of every numeric Config knob (decisions D4.6). */
export const bounds = {
  zombieSweeperIntervalSeconds: { default: 60, floor: 10, ceiling: 3600 },
  zombieJobTimeoutSeconds: { default: 1800, floor: 30, ceiling: 604800 },
  maxConcurrentJobs: { default: 0, floor: 0, ceiling: 10000 },
  imagePullGraceSeconds: { default: 60, floor: 0, ceiling: 3600 },
  unschedulableGraceSeconds: { default: 120, floor: 30, ceiling: 86400 },
  podCreateGraceSeconds: { default: 120, floor: 30, ceiling: 3600 }
} as const
export type BoundedField = keyof typeof bounds

const bounded = (field: BoundedField) =>
  Schema.Number.pipe(
    Schema.filter((n) => Number.isInteger(n) || "invalid: must be an integer"),
    Schema.filter((n) => n >= bounds[field].floor || `invalid: must be >= ${bounds[field].floor}, got ${n}`),
    Schema.filter((n) => n <= bounds[field].ceiling || `invalid: must be <= ${bounds[field].ceiling}, got ${n}`)
  )

const taskTypePattern = /^[a-z0-9-]+$/
const TaskTypeName = Schema.String.pipe(
  Schema.filter((t) => taskTypePattern.test(t) || `must match ^[a-z0-9-]+$, got "${t}"`),
  Schema.filter((t) => t.length <= 63 || "exceeds maximum length of 63")
)
const Quantity = Schema.String.pipe(
  Schema.filter((q) => Option.getOrElse(Quantities.problem(q), (): true => true))
)
/** The resources a Config may set, with the rule the API server checks for each. */
export const resourceNames = ["cpu", "memory", "ephemeral-storage"] as const
export type ResourceName = (typeof resourceNames)[number]
const ResourceList = Schema.Struct({
  cpu: Schema.optional(Quantity),
  memory: Schema.optional(Quantity),
  "ephemeral-storage": Schema.optional(Quantity)
})
/** A label value: the assignee is stamped on Jobs and pods as one. */
const labelValuePattern = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/
const envNamePattern = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/

/** The legacy phase `in_progress` is accepted and compared as `execution` (REF §8.14). */
const Phase = Schema.String.pipe(
  Schema.filter(
    (p) => (canonicalPhases as ReadonlyArray<string>).includes(normalisePhase(p)) || `invalid trigger phase "${p}"`
  )
)
const Status = Schema.String.pipe(
  Schema.filter(
    (s) => (canonicalStatuses as ReadonlyArray<string>).includes(s) || `invalid trigger status "${s}"`
  )
)

/** `spec` of the `Config` custom resource: the reference fields plus the graces of D4.6. */
export const ConfigSpec = Schema.Struct({
  assignee: Schema.String.pipe(
    Schema.filter((a) => a.length > 0 || "assignee is empty"),
    Schema.filter((a) => labelValuePattern.test(a) || "must be a valid label value (at most 63 characters of [A-Za-z0-9._-])")
  ),
  image: Schema.String.pipe(Schema.filter((i) => i.length > 0 || "image is empty")),
  heartbeat: Schema.String.pipe(
    Schema.filter((h) => h.length > 0 || "heartbeat is empty"),
    Schema.filter((h) => /^[0-9]+(s|m|h)$/.test(h) || "must match ^[0-9]+(s|m|h)$")
  ),
  taskType: Schema.optionalWith(Schema.Union(Schema.Literal(""), TaskTypeName), { default: () => "" }),
  taskTypes: Schema.optional(Schema.Array(TaskTypeName)),
  resources: Schema.optional(
    Schema.Struct({ requests: Schema.optional(ResourceList), limits: Schema.optional(ResourceList) })
  ),
  env: Schema.optional(Schema.Record({ key: Schema.String, value: Schema.String })),
  secretName: Schema.optionalWith(Schema.String, { default: () => "" }),
  volumeClaim: Schema.optionalWith(Schema.String, { default: () => "" }),
  volumeMountPath: Schema.optionalWith(Schema.String, { default: () => "" }),
  priorityClassName: Schema.optionalWith(
    Schema.String.pipe(
      Schema.filter(
        (p) => p === "" || /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(p) || "must match ^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
      )
    ),
    { default: () => "" }
  ),
  imagePullSecret: Schema.optionalWith(Schema.String, { default: () => "" }),
  maxConcurrentJobs: Schema.optionalWith(bounded("maxConcurrentJobs"), { default: () => 0 }),
  trigger: Schema.optional(
    Schema.Struct({ phases: Schema.optional(Schema.Array(Phase)), statuses: Schema.optional(Schema.Array(Status)) })
  ),
  zombieSweeperIntervalSeconds: Schema.optional(bounded("zombieSweeperIntervalSeconds")),
  zombieJobTimeoutSeconds: Schema.optional(bounded("zombieJobTimeoutSeconds")),
  imagePullGraceSeconds: Schema.optional(bounded("imagePullGraceSeconds")),
  unschedulableGraceSeconds: Schema.optional(bounded("unschedulableGraceSeconds")),
  podCreateGraceSeconds: Schema.optional(bounded("podCreateGraceSeconds"))
}).pipe(
  Schema.filter((spec) => {
    const issues: Array<Schema.FilterIssue> = []
    if (spec.taskType === "" && (spec.taskTypes === undefined || spec.taskTypes.length === 0)) {
      issues.push({ path: [], message: "at least one of spec.taskType or spec.taskTypes must be non-empty" })
    }
    for (const key of Object.keys(spec.env ?? {})) {
      if (!envNamePattern.test(key)) issues.push({ path: ["env"], message: `invalid environment variable name "${key}"` })
    }
    if (spec.volumeClaim !== "" && spec.volumeMountPath === "") {
      issues.push({ path: ["volumeMountPath"], message: "VolumeMountPath required when VolumeClaim set" })
    }
    // Kubernetes rejects a Job whose container requests more than its limit.
    for (const name of resourceNames) {
      const request = spec.resources?.requests?.[name]
      const limit = spec.resources?.limits?.[name]
      if (request === undefined || limit === undefined) continue
      if (Option.getOrElse(Quantities.compare(request, limit), () => 0) > 0) {
        issues.push({
          path: ["resources", "requests", name],
          message: `must be less than or equal to spec.resources.limits.${name} (${limit}), got ${request}`
        })
      }
    }
    return issues
  })
)
export type ConfigSpec = typeof ConfigSpec.Type
export type ConfigSpecInput = typeof ConfigSpec.Encoded

/** A Config the API server admitted but the executor refuses; every issue names its field. */
export class ConfigInvalid extends Schema.TaggedError<ConfigInvalid>()("ConfigInvalid", {
  name: Schema.String,
  issues: Schema.Array(Schema.String)
}) {
  override get message() {
    return `Config ${this.name} is invalid: ${this.issues.join("; ")}`
  }
}

const decodeSpec = Schema.decodeUnknownEither(ConfigSpec, { errors: "all", onExcessProperty: "ignore" })
/** As a `kubectl apply` with strict field validation: an unknown field is an error, not pruned. */
const decodeSpecStrict = Schema.decodeUnknownEither(ConfigSpec, { errors: "all", onExcessProperty: "error" })

/**
 * One line per mistake, naming the field. Union alternatives that only say "Expected undefined"
 * (an optional field) or `Expected ""` are noise next to the real message.
 */
const renderIssues = (error: ParseResult.ParseError): ReadonlyArray<string> => {
  try {
    const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
    const meaningful = issues.filter((i) => !/^Expected (undefined|"")(,|$)/.test(i.message))
    return (meaningful.length > 0 ? meaningful : issues).map(
      (issue) => `${["spec", ...issue.path.map(String)].join(".")}: ${issue.message}`
    )
  } catch {
    return ["spec: too deeply nested to validate"]
  }
}

/** An agent as the executor uses it: the validated spec plus the derived values. */
export interface AgentConfig {
  /** `metadata.name` of the Config. */
  readonly name: string
  readonly namespace: string
  readonly spec: ConfigSpec
  /** `taskType` first, then `taskTypes`, de-duplicated; empty means any type passes. */
  readonly taskTypes: ReadonlyArray<string>
  readonly triggerPhases: ReadonlyArray<string>
  readonly triggerStatuses: ReadonlyArray<string>
  readonly timeoutSeconds: number
  readonly imagePullGraceSeconds: number
  readonly unschedulableGraceSeconds: number
  readonly podCreateGraceSeconds: number
  /** Only a configured value takes part in choosing the sweeper interval. */
  readonly sweeperIntervalSeconds: Option.Option<number>
}

export const effectiveTaskTypes = (taskType: string, taskTypes: ReadonlyArray<string> | undefined) =>
  Arr.dedupe([...(taskType === "" ? [] : [taskType]), ...(taskTypes ?? []).filter((t) => t !== "")])

export const agentConfig = (
  meta: { readonly name: string; readonly namespace?: string | undefined },
  rawSpec: unknown,
  options: { readonly strict?: boolean } = {}
): Either.Either<AgentConfig, ConfigInvalid> =>
  (options.strict === true ? decodeSpecStrict : decodeSpec)(rawSpec).pipe(
    Either.mapLeft((error) => new ConfigInvalid({ name: meta.name, issues: renderIssues(error) })),
    Either.map((spec) => ({
      name: meta.name,
      namespace: meta.namespace ?? "",
      spec,
      taskTypes: effectiveTaskTypes(spec.taskType, spec.taskTypes),
      triggerPhases: (spec.trigger?.phases ?? []).map(normalisePhase),
      triggerStatuses: spec.trigger?.statuses ?? [],
      timeoutSeconds: spec.zombieJobTimeoutSeconds ?? bounds.zombieJobTimeoutSeconds.default,
      imagePullGraceSeconds: spec.imagePullGraceSeconds ?? bounds.imagePullGraceSeconds.default,
      unschedulableGraceSeconds: spec.unschedulableGraceSeconds ?? bounds.unschedulableGraceSeconds.default,
      podCreateGraceSeconds: spec.podCreateGraceSeconds ?? bounds.podCreateGraceSeconds.default,
      sweeperIntervalSeconds: Option.fromNullable(spec.zombieSweeperIntervalSeconds)
    }))
  )

/** The Job image: a tag `:<branch>` is appended when the last path segment has neither tag nor digest. */
export const resolveImage = (image: string, branch: string): string => {
  const last = image.slice(image.lastIndexOf("/") + 1)
  return last.includes(":") || last.includes("@") ? image : `${image}:${branch}`
}

/** Graces of the agent in seconds, with defaults for runs whose Config is gone. */
export interface Graces {
  readonly timeoutSeconds: number
  readonly imagePullGraceSeconds: number
  readonly unschedulableGraceSeconds: number
  readonly podCreateGraceSeconds: number
}

export const defaultGraces: Graces = {
  timeoutSeconds: bounds.zombieJobTimeoutSeconds.default,
  imagePullGraceSeconds: bounds.imagePullGraceSeconds.default,
  unschedulableGraceSeconds: bounds.unschedulableGraceSeconds.default,
  podCreateGraceSeconds: bounds.podCreateGraceSeconds.default
}

/** The executor-wide sweeper interval: the smallest configured value, else the default (D4.7). */
export const sweeperIntervalSeconds = (configs: Iterable<AgentConfig>): number => {
  let smallest: number | undefined
  for (const config of configs) {
    if (Option.isSome(config.sweeperIntervalSeconds)) {
      smallest = Math.min(smallest ?? Infinity, config.sweeperIntervalSeconds.value)
    }
  }
  return smallest ?? bounds.zombieSweeperIntervalSeconds.default
}
