import { createHash } from "node:crypto"
import { Either, Option, Schema } from "effect"
import { stringify } from "yaml"
import { type AgentConfig, resolveImage } from "./AgentConfig.js"
import * as Frontmatter from "./Frontmatter.js"
import type { Names } from "./Labels.js"
import * as Quantity from "./Quantity.js"
import type { TaskEvent } from "./TaskEvent.js"

// ---------------------------------------------------------------------------------------------
// The batch/v1 Job we create (executor.md §4.2 plus decisions D6.4). Plain JSON-compatible data.
// ---------------------------------------------------------------------------------------------

export type StringMap = Readonly<Record<string, string>>

export interface EnvVar {
  readonly name: string
  readonly value: string
}

export interface EnvFromSource {
  readonly secretRef: { readonly name: string }
}

export interface ResourceQuantities {
  readonly cpu: string
  readonly memory: string
  readonly "ephemeral-storage"?: string
}

export interface ResourceRequirements {
  readonly requests: ResourceQuantities
  readonly limits: ResourceQuantities
}

export interface VolumeMount {
  readonly name: string
  readonly mountPath: string
}

export interface KeyToPath {
  readonly key: string
  readonly path: string
}

export interface PvcVolume {
  readonly name: string
  readonly persistentVolumeClaim: { readonly claimName: string }
}

export interface SecretVolume {
  readonly name: string
  readonly secret: {
    readonly secretName: string
    readonly items: ReadonlyArray<KeyToPath>
    readonly defaultMode: number
  }
}

export type Volume = PvcVolume | SecretVolume

export interface Container {
  readonly name: "agent"
  readonly image: string
  readonly imagePullPolicy: "Always"
  readonly env: ReadonlyArray<EnvVar>
  readonly envFrom?: ReadonlyArray<EnvFromSource>
  readonly resources: ResourceRequirements
  readonly volumeMounts?: ReadonlyArray<VolumeMount>
}

export interface PodSpec {
  readonly restartPolicy: "Never"
  /** D6.4 / §8.23: agent pods get no ServiceAccount token. */
  readonly automountServiceAccountToken: false
  readonly imagePullSecrets?: ReadonlyArray<{ readonly name: string }>
  readonly priorityClassName?: string
  readonly containers: ReadonlyArray<Container>
  readonly volumes?: ReadonlyArray<Volume>
}

export interface PodTemplate {
  readonly metadata: { readonly labels: StringMap; readonly annotations: StringMap }
  readonly spec: PodSpec
}

export interface JobManifest {
  readonly apiVersion: "batch/v1"
  readonly kind: "Job"
  readonly metadata: {
    readonly name: string
    readonly namespace: string
    readonly labels: StringMap
    readonly annotations: StringMap
    /** D6.3: keeps the Job visible until its run is settled. */
    readonly finalizers: ReadonlyArray<string>
  }
  readonly spec: {
    readonly backoffLimit: 0
    readonly completions: 1
    readonly parallelism: 1
    readonly completionMode: "NonIndexed"
    readonly podReplacementPolicy: "TerminatingOrFailed"
    readonly ttlSecondsAfterFinished: number
    readonly activeDeadlineSeconds: number
    readonly template: PodTemplate
  }
}

// ---------------------------------------------------------------------------------------------
// Deterministic Job name (decisions D6.1)
// ---------------------------------------------------------------------------------------------

const maxNameLength = 63
const hashLength = 10
const dns1123Label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/
/** Kubernetes label value: at most 63 characters, alphanumeric at both ends. */
const labelValue = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/

/** True for a valid DNS-1123 label of at most 63 characters (what a Job name must be). */
export const isDns1123Label = (value: string): boolean => value.length <= maxNameLength && dns1123Label.test(value)

const sanitise = (value: string): string =>
  value
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, "-")
    .replace(/-+/g, "-")
    .replace(/^-+|-+$/g, "")

/** Recursively key-sorted copy of a JSON-like value (own keys only, `__proto__` kept as data). */
const canonical = (value: unknown): unknown => {
  if (Array.isArray(value)) return value.map(canonical)
  if (typeof value === "bigint") return value.toString()
  if (value !== null && typeof value === "object") {
    const record = value as Readonly<Record<string, unknown>>
    return Object.fromEntries(
      Object.keys(record)
        .sort()
        .map((key) => [key, canonical(record[key])])
    )
  }
  return value
}

const canonicalJson = (value: unknown): string => JSON.stringify(canonical(value)) ?? "null"

/**
 * The identity of a triggering event: its `identifier` when non-empty, else a canonical JSON
 * (keys sorted recursively) of `taskIdentifier`, `frontmatter` and `content`, so a redelivered
 * event has the same identity.
 */
export const eventIdentity = (event: TaskEvent): string =>
  event.identifier !== ""
    ? event.identifier
    : canonicalJson({ taskIdentifier: event.taskIdentifier, frontmatter: event.frontmatter, content: event.content })

export interface JobNameInput {
  /** The task frontmatter `assignee` (empty ⇒ `agent`). */
  readonly assignee: string
  readonly taskIdentifier: string
  /** `eventIdentity(event)` of the triggering event. */
  readonly eventIdentity: string
  /** The pre-increment `trigger_count` of the triggering event. */
  readonly triggerCount: number
}

/**
 * `<assignee>-<first 8 of task id>-<hash>`: a DNS-1123 label of at most 63 characters. The hash
 * (10 hex chars of SHA-256) covers the event identity and trigger_count (plus the raw assignee and
 * task id, so sanitising or trimming them cannot make two runs collide).
 */
export const jobName = (input: JobNameInput): string => {
  const hash = createHash("sha256")
    .update(JSON.stringify([input.eventIdentity, input.triggerCount, input.taskIdentifier, input.assignee]))
    .digest("hex")
    .slice(0, hashLength)
  const task = sanitise(Array.from(input.taskIdentifier).slice(0, 8).join("")) || "task"
  const budget = maxNameLength - task.length - hash.length - 2
  const assignee = sanitise(input.assignee).slice(0, budget).replace(/-+$/, "") || "agent"
  return `${assignee}-${task}-${hash}`
}

// ---------------------------------------------------------------------------------------------
// TASK_CONTENT
// ---------------------------------------------------------------------------------------------

/**
 * `"---\n" + YAML(frontmatter) + "---\n" + content`; exactly `content` when the frontmatter is empty.
 * The YAML is block style, keys sorted recursively, never folded, no anchors; strings that a YAML 1.2
 * or 1.1 parser would read as another type (`"true"`, `"yes"`, `"0b101"`, `"2026-04-03"`) are quoted.
 */
export const taskContent = (frontmatter: Frontmatter.Frontmatter, content: string): string => {
  if (Object.keys(frontmatter).length === 0) return content
  const yaml = stringify(frontmatter, {
    sortMapEntries: true,
    lineWidth: 0,
    aliasDuplicateObjects: false,
    compat: "yaml-1.1"
  })
  return yaml === "{}\n" ? content : `---\n${yaml}---\n${content}`
}

// ---------------------------------------------------------------------------------------------
// The Job
// ---------------------------------------------------------------------------------------------

/** Env names the executor sets; a Config `env` entry with one of these names is dropped (§8.21). */
export const reservedEnvNames = [
  "TASK_CONTENT",
  "TASK_ID",
  "KAFKA_BROKERS",
  "BRANCH",
  "TOPIC_PREFIX",
  "PHASE",
  "TASK_TYPE"
] as const

const isReserved = (name: string): boolean => (reservedEnvNames as ReadonlyArray<string>).includes(name)

/** The Config `env` names that `buildJob` drops because they shadow a reserved name (to warn about). */
export const droppedEnvNames = (config: AgentConfig): ReadonlyArray<string> =>
  Object.keys(config.spec.env ?? {})
    .filter(isReserved)
    .sort()

/** Executor settings that shape every Job (executor.md §3.4). */
export interface JobSettings {
  readonly namespace: string
  readonly branch: string
  readonly kafkaBrokers: string
  readonly topicPrefix: string
  readonly jobTtlSecondsAfterFinished: number
  readonly kafkaClientCertSecret: string
  readonly kafkaCaCertSecret: string
  /**
   * The pull secret of every agent pod unless its Config names one; empty: none. The reference
   * executor always named `docker`, and its clusters have that Secret.
   */
  readonly imagePullSecret: string
}

export interface BuildJobInput {
  /** The triggering event (pre-increment trigger_count, previous current_job). */
  readonly event: TaskEvent
  readonly config: AgentConfig
  readonly settings: JobSettings
  readonly names: Names
  /** The deterministic name from `jobName`. */
  readonly name: string
}

/** A Job the executor refuses to submit: a permanent error, reported on the task, never retried. */
export class JobSpecInvalid extends Schema.TaggedError<JobSpecInvalid>()("JobSpecInvalid", {
  reason: Schema.Literal("VolumeMountPathMissing", "InvalidJobName", "InvalidLabelValue"),
  jobName: Schema.String,
  taskIdentifier: Schema.String,
  message: Schema.String
}) {}

const defaultResources = {
  requests: { cpu: "20m", memory: "20Mi" },
  limits: { cpu: "50m", memory: "50Mi" }
} as const

type ResourceOverrides = NonNullable<AgentConfig["spec"]["resources"]>["requests"]

/** The default `a` unless `b` is strictly larger (or smaller): ties keep the default's spelling. */
const order = (a: string, b: string): number => Option.getOrElse(Quantity.compare(a, b), () => 0)
const larger = (a: string, b: string): string => (order(a, b) >= 0 ? a : b)
const smaller = (a: string, b: string): string => (order(a, b) <= 0 ? a : b)

/**
 * One side of cpu or memory left out of the Config is filled so that the Job stays valid (a
 * request above its limit is a 422): a missing request is the default request, or the limit when
 * that is lower; a missing limit is the default limit, or the request when that is higher. Where
 * the reference executor's plain defaults made a valid Job, the result is the same.
 */
const fill = (name: "cpu" | "memory", requests: ResourceOverrides, limits: ResourceOverrides) => {
  const request = requests?.[name] || undefined
  const limit = limits?.[name] || undefined
  return {
    request: request ?? (limit === undefined ? defaultResources.requests[name] : smaller(defaultResources.requests[name], limit)),
    limit: limit ?? (request === undefined ? defaultResources.limits[name] : larger(defaultResources.limits[name], request))
  }
}

/** The container's resources; `ephemeral-storage` has no default and is set only as given. */
const resourcesOf = (resources: AgentConfig["spec"]["resources"]): ResourceRequirements => {
  const cpu = fill("cpu", resources?.requests, resources?.limits)
  const memory = fill("memory", resources?.requests, resources?.limits)
  const ephemeral = (side: ResourceOverrides) =>
    side?.["ephemeral-storage"] ? { "ephemeral-storage": side["ephemeral-storage"] } : {}
  return {
    requests: { cpu: cpu.request, memory: memory.request, ...ephemeral(resources?.requests) },
    limits: { cpu: cpu.limit, memory: memory.limit, ...ephemeral(resources?.limits) }
  }
}

const certVolume = (name: string, secretName: string, key: string): SecretVolume => ({
  name,
  secret: { secretName, items: [{ key, path: "file" }], defaultMode: 288 }
})

/** The Job for one run: executor.md §4.2 plus the D6.4 additions (name, finalizer, no SA token). */
export const buildJob = (input: BuildJobInput): Either.Either<JobManifest, JobSpecInvalid> => {
  const { config, event, names, settings } = input
  const spec = config.spec
  const taskId = event.taskIdentifier
  const invalid = (reason: JobSpecInvalid["reason"], message: string) =>
    Either.left(new JobSpecInvalid({ reason, jobName: input.name, taskIdentifier: taskId, message }))

  if (spec.volumeClaim !== "" && spec.volumeMountPath === "") {
    return invalid("VolumeMountPathMissing", "VolumeMountPath required when VolumeClaim is set")
  }
  if (!isDns1123Label(input.name)) {
    return invalid("InvalidJobName", `job name "${input.name}" is not a DNS-1123 label of at most 63 characters`)
  }
  if (taskId.length > 63 || !labelValue.test(taskId)) {
    return invalid("InvalidLabelValue", `task id "${taskId}" is not a valid label value`)
  }

  const pullSecret = spec.imagePullSecret || settings.imagePullSecret
  const assigneeLabel: StringMap = spec.assignee !== "" ? { [names.assigneeLabel]: spec.assignee } : {}
  const fm = event.frontmatter

  const env: ReadonlyArray<EnvVar> = [
    { name: "TASK_CONTENT", value: taskContent(fm, event.content) },
    { name: "TASK_ID", value: taskId },
    { name: "KAFKA_BROKERS", value: settings.kafkaBrokers },
    { name: "BRANCH", value: settings.branch },
    { name: "TOPIC_PREFIX", value: settings.topicPrefix },
    { name: "PHASE", value: Option.getOrElse(Frontmatter.phase(fm), () => "") },
    { name: "TASK_TYPE", value: Frontmatter.taskType(fm) },
    ...Object.entries(spec.env ?? {})
      .filter(([name]) => !isReserved(name))
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([name, value]) => ({ name, value }))
  ]

  const volumes: Array<Volume> = []
  const mounts: Array<VolumeMount> = []
  if (spec.volumeClaim !== "") {
    volumes.push({ name: "agent-data", persistentVolumeClaim: { claimName: spec.volumeClaim } })
    mounts.push({ name: "agent-data", mountPath: spec.volumeMountPath })
  }
  if (settings.kafkaClientCertSecret !== "" && settings.kafkaCaCertSecret !== "") {
    volumes.push(
      certVolume("client-cert", settings.kafkaClientCertSecret, "user.crt"),
      certVolume("client-key", settings.kafkaClientCertSecret, "user.key"),
      certVolume("server-cert", settings.kafkaCaCertSecret, "ca.crt")
    )
    mounts.push(
      { name: "client-cert", mountPath: "/client-cert" },
      { name: "client-key", mountPath: "/client-key" },
      { name: "server-cert", mountPath: "/server-cert" }
    )
  }

  const container: Container = {
    name: "agent",
    image: resolveImage(spec.image, settings.branch),
    imagePullPolicy: "Always",
    env,
    ...(spec.secretName !== "" ? { envFrom: [{ secretRef: { name: spec.secretName } }] } : {}),
    resources: resourcesOf(spec.resources),
    ...(mounts.length > 0 ? { volumeMounts: mounts } : {})
  }

  return Either.right({
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: {
      name: input.name,
      namespace: settings.namespace,
      labels: { [names.taskIdLabel]: taskId, ...assigneeLabel },
      annotations: {},
      finalizers: [names.finalizer]
    },
    spec: {
      backoffLimit: 0,
      completions: 1,
      parallelism: 1,
      completionMode: "NonIndexed",
      podReplacementPolicy: "TerminatingOrFailed",
      ttlSecondsAfterFinished: settings.jobTtlSecondsAfterFinished,
      activeDeadlineSeconds: config.timeoutSeconds,
      template: {
        metadata: {
          labels: { app: "agent", component: taskId, [names.taskIdLabel]: taskId, ...assigneeLabel },
          annotations: {}
        },
        spec: {
          restartPolicy: "Never",
          automountServiceAccountToken: false,
          ...(pullSecret === "" ? {} : { imagePullSecrets: [{ name: pullSecret }] }),
          ...(spec.priorityClassName !== "" ? { priorityClassName: spec.priorityClassName } : {}),
          containers: [container],
          ...(volumes.length > 0 ? { volumes } : {})
        }
      }
    }
  })
}
