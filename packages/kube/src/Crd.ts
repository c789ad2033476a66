import * as k8s from "@kubernetes/client-node"
import { AgentConfig, Labels, Quantity } from "@executor/domain"
import { ClusterError } from "@executor/executor"
import { Duration, Effect, Schedule } from "effect"
import { stringify } from "yaml"
import * as Api from "./Api.js"
import { KubeConnection } from "./KubeConfig.js"
import * as Wire from "./Wire.js"

/**
 * The `Config` custom resource definition (executor.md §2.4, decisions D1 and D4.6): the single
 * source of `deploy/crd.yaml` and of `applyCrd`. Old manifests stay valid; the new fields are
 * optional; every bounded integer carries its floor and ceiling so the API server rejects a bad
 * value with a message naming the field.
 */

type JsonSchema = Readonly<Record<string, unknown>>

const string: JsonSchema = { type: "string" }

const taskTypeName: JsonSchema = { type: "string", pattern: "^[a-z0-9-]+$", maxLength: 63 }

/**
 * A container resource quantity. The API server rejects what can never make a valid Job: the CEL
 * quantity library (Kubernetes 1.29+) reads it as Kubernetes would. The length bound keeps the
 * rules' estimated cost inside the budget.
 */
export const quantityRules = [
  { rule: "isQuantity(self)", message: "must be a resource quantity such as 500m, 2, 128Mi or 1Gi" },
  { rule: "!isQuantity(self) || !quantity(self).isLessThan(quantity('0'))", message: "must not be negative" }
] as const

const quantity: JsonSchema = {
  type: "string",
  maxLength: Quantity.maxLength,
  "x-kubernetes-validations": quantityRules
}

const resourceList: JsonSchema = {
  type: "object",
  properties: Object.fromEntries(AgentConfig.resourceNames.map((name) => [name, quantity]))
}

/** CEL names a property with a dash `__dash__`. */
const celName = (name: string): string => name.replace(/-/g, "__dash__")

/** A request above its limit makes the API server reject every Job of the Config (422). */
export const requestWithinLimitRule = (name: AgentConfig.ResourceName) => {
  const request = `self.requests.${celName(name)}`
  const limit = `self.limits.${celName(name)}`
  return {
    rule:
      `!has(self.requests) || !has(self.limits) || !has(${request}) || !has(${limit}) || ` +
      `!isQuantity(${request}) || !isQuantity(${limit}) || quantity(${request}).compareTo(quantity(${limit})) <= 0`,
    message: `must be less than or equal to spec.resources.limits.${name}`,
    fieldPath: name.includes("-") ? `.requests['${name}']` : `.requests.${name}`
  }
}

const boundedInteger = (field: AgentConfig.BoundedField): JsonSchema => ({
  type: "integer",
  minimum: AgentConfig.bounds[field].floor,
  maximum: AgentConfig.bounds[field].ceiling
})

export const taskTypeRule = {
  rule: "(has(self.taskType) && size(self.taskType) > 0) || (has(self.taskTypes) && size(self.taskTypes) > 0)",
  message: "at least one of spec.taskType or spec.taskTypes must be non-empty"
} as const

export const specSchema: JsonSchema = {
  type: "object",
  required: ["assignee", "image", "heartbeat"],
  "x-kubernetes-validations": [taskTypeRule],
  properties: {
    assignee: { type: "string", minLength: 1 },
    image: { type: "string", minLength: 1 },
    heartbeat: { type: "string", pattern: "^[0-9]+(s|m|h)$" },
    taskType: taskTypeName,
    taskTypes: { type: "array", items: taskTypeName },
    resources: {
      type: "object",
      "x-kubernetes-validations": AgentConfig.resourceNames.map(requestWithinLimitRule),
      properties: { requests: resourceList, limits: resourceList }
    },
    env: { type: "object", additionalProperties: string },
    secretName: string,
    volumeClaim: string,
    volumeMountPath: string,
    priorityClassName: { type: "string", pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" },
    imagePullSecret: string,
    maxConcurrentJobs: boundedInteger("maxConcurrentJobs"),
    trigger: {
      type: "object",
      properties: {
        phases: { type: "array", items: string },
        statuses: { type: "array", items: string }
      }
    },
    zombieSweeperIntervalSeconds: boundedInteger("zombieSweeperIntervalSeconds"),
    zombieJobTimeoutSeconds: boundedInteger("zombieJobTimeoutSeconds"),
    imagePullGraceSeconds: boundedInteger("imagePullGraceSeconds"),
    unschedulableGraceSeconds: boundedInteger("unschedulableGraceSeconds"),
    podCreateGraceSeconds: boundedInteger("podCreateGraceSeconds")
  }
}

export const crdName = (apiGroup: string = Labels.DefaultApiGroup): string => `configs.${apiGroup}`

/** The CustomResourceDefinition as wire JSON (apiextensions.k8s.io/v1). */
export const manifest = (apiGroup: string = Labels.DefaultApiGroup) => ({
  apiVersion: "apiextensions.k8s.io/v1",
  kind: "CustomResourceDefinition",
  metadata: { name: crdName(apiGroup) },
  spec: {
    group: apiGroup,
    names: { kind: "Config", listKind: "ConfigList", plural: "configs", singular: "config", shortNames: ["cfg"] },
    scope: "Namespaced",
    preserveUnknownFields: false,
    versions: [
      {
        name: "v1",
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: "object",
            required: ["spec"],
            properties: {
              apiVersion: string,
              kind: string,
              metadata: { type: "object" },
              spec: specSchema
            }
          }
        }
      }
    ]
  }
})

/** `deploy/crd.yaml`, byte for byte (a test keeps the file in sync). */
export const renderYaml = (apiGroup: string = Labels.DefaultApiGroup): string =>
  "# Generated from packages/kube/src/Crd.ts: do not edit by hand.\n" +
  "# Regenerate with: npx -y pnpm@12.4.2 --filter @executor/kube crd:write\n" +
  stringify(manifest(apiGroup), { lineWidth: 0, aliasDuplicateObjects: false })

export type ApplyOutcome = "created" | "updated"

const conflictRetry = Schedule.exponential("50 millis").pipe(Schedule.intersect(Schedule.recurs(5)))

const establishedPoll = Schedule.spaced("100 millis")

/**
 * Creates or replaces the CRD, then waits until the API server reports it `Established` (and its
 * names accepted) and serves `configs` in the connection's namespace. For tests and the opt-in `--apply-crd` flag; the executor's RBAC has no CRD
 * writes by default (decisions D4.11).
 */
export const applyCrd = (options: {
  readonly apiGroup?: string
  readonly establishedTimeout?: Duration.DurationInput
} = {}): Effect.Effect<ApplyOutcome, ClusterError, KubeConnection> =>
  Effect.gen(function*() {
    const { kubeConfig, namespace } = yield* KubeConnection
    const api = kubeConfig.makeApiClient(k8s.ApiextensionsV1Api)
    const custom = kubeConfig.makeApiClient(k8s.CustomObjectsApi)
    const group = options.apiGroup ?? Labels.DefaultApiGroup
    const name = crdName(options.apiGroup)
    // The model classes name `x-kubernetes-validations` `x_kubernetes_validations`: go through them.
    const body = Wire.fromWire<k8s.V1CustomResourceDefinition>(manifest(options.apiGroup), "V1CustomResourceDefinition")

    const readCrd = Api.call("readCrd", name, (o) => api.readCustomResourceDefinition({ name }, o))
    const replace = Effect.gen(function*() {
      const existing = yield* readCrd
      const resourceVersion = existing.metadata?.resourceVersion
      yield* Api.call("replaceCrd", name, (o) =>
        api.replaceCustomResourceDefinition({
          name,
          body: { ...body, metadata: { ...body.metadata, ...(resourceVersion === undefined ? {} : { resourceVersion }) } }
        }, o))
      return "updated" as const
    }).pipe(Effect.retry({ schedule: conflictRetry, while: Api.isConflict }))

    const outcome = yield* Api.call("createCrd", name, (o) => api.createCustomResourceDefinition({ body }, o)).pipe(
      Effect.as<ApplyOutcome>("created"),
      Effect.catchIf(Api.isConflict, () => replace)
    )

    const established = readCrd.pipe(
      Effect.map((crd) => {
        const conditions = crd.status?.conditions ?? []
        const isTrue = (type: string) => conditions.some((c) => c.type === type && c.status === "True")
        return isTrue("Established") && isTrue("NamesAccepted")
      })
    )
    // Established is not yet serving: the custom resource endpoint answers 404 for a moment (infra.md B7).
    const serving = Api.call("listConfigs", namespace, (o) =>
      custom.listNamespacedCustomObject({ group, version: "v1", namespace, plural: "configs", limit: 1 }, o)).pipe(
        Effect.as(true),
        // 404: not routed yet. Any other API answer (e.g. 403 without list RBAC) means it is routed.
        Effect.catchIf((e) => e.status !== undefined, (e) => Effect.succeed(!Api.isNotFound(e)))
      )
    const timeout = options.establishedTimeout ?? "30 seconds"
    yield* established.pipe(
      Effect.repeat({ schedule: establishedPoll, until: (ok) => ok }),
      Effect.zipRight(serving.pipe(Effect.repeat({ schedule: establishedPoll, until: (ok) => ok }))),
      Effect.timeoutFail({
        duration: timeout,
        onTimeout: () =>
          new Api.KubeApiError({
            operation: "applyCrd",
            target: name,
            status: undefined,
            reason: "Timeout",
            message: `CRD ${name} not Established within ${Duration.format(Duration.decode(timeout))}`,
            transient: true
          })
      })
    )
    return outcome
  }).pipe(
    Effect.mapError(Api.toClusterError),
    Effect.withSpan("Crd.applyCrd")
  )
