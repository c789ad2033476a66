import * as k8s from "@kubernetes/client-node"
import { Time } from "@executor/domain"
import { ClusterError, NotFound } from "@executor/executor"
import { Context, Effect, Either, Layer, Option, Schema } from "effect"
import * as Api from "./Api.js"
import { KubeConnection } from "./KubeConfig.js"
import * as Wire from "./Wire.js"

/**
 * `coordination.k8s.io/v1` Leases for leader election (decisions D4.12). Only the calls: the
 * election loop is built on top of them. Updates are optimistic: `resourceVersion` is sent, and a
 * concurrent writer makes the call fail with `LeaseConflict` (HTTP 409).
 */

/** Another writer got there first (create of an existing Lease, or update of a stale version). */
export class LeaseConflict extends Schema.TaggedError<LeaseConflict>()("LeaseConflict", {
  name: Schema.String,
  message: Schema.String
}) {}

export interface LeaseSpec {
  readonly holderIdentity?: string | undefined
  readonly leaseDurationSeconds?: number | undefined
  /** Epoch millis. */
  readonly acquireTime?: Time.Millis | undefined
  /** Epoch millis. */
  readonly renewTime?: Time.Millis | undefined
  readonly leaseTransitions?: number | undefined
}

export interface Lease extends LeaseSpec {
  readonly name: string
  readonly namespace: string
  readonly resourceVersion: string
}

const LeaseWire = Schema.Struct({
  metadata: Schema.Struct({
    name: Schema.String,
    namespace: Schema.optional(Schema.String),
    resourceVersion: Schema.String
  }),
  spec: Schema.optional(
    Schema.Struct({
      holderIdentity: Schema.optional(Schema.String),
      leaseDurationSeconds: Schema.optional(Schema.Number),
      acquireTime: Schema.optional(Schema.String),
      renewTime: Schema.optional(Schema.String),
      leaseTransitions: Schema.optional(Schema.Number)
    })
  )
})
const decodeLease = Schema.decodeUnknownEither(LeaseWire)

export interface LeasesShape {
  readonly get: (name: string) => Effect.Effect<Lease, NotFound | ClusterError>
  readonly create: (name: string, spec: LeaseSpec) => Effect.Effect<Lease, LeaseConflict | ClusterError>
  /** Replaces the spec of `lease` at its `resourceVersion`. */
  readonly update: (lease: Lease) => Effect.Effect<Lease, LeaseConflict | NotFound | ClusterError>
}

export class Leases extends Context.Tag("executor/kube/Leases")<Leases, LeasesShape>() {}

const millis = (value: string | undefined): Time.Millis | undefined => Option.getOrUndefined(Time.parseTimestamp(value))

const fromModel = (operation: string, name: string, lease: k8s.V1Lease): Effect.Effect<Lease, ClusterError> =>
  Either.match(decodeLease(Wire.toWire(lease, "V1Lease")), {
    onLeft: (error) =>
      Effect.fail(new ClusterError({ operation, target: name, transient: false, message: `unexpected Lease: ${error.message}` })),
    onRight: (wire) =>
      Effect.succeed<Lease>({
        name: wire.metadata.name,
        namespace: wire.metadata.namespace ?? "",
        resourceVersion: wire.metadata.resourceVersion,
        holderIdentity: wire.spec?.holderIdentity,
        leaseDurationSeconds: wire.spec?.leaseDurationSeconds,
        acquireTime: millis(wire.spec?.acquireTime),
        renewTime: millis(wire.spec?.renewTime),
        leaseTransitions: wire.spec?.leaseTransitions
      })
  })

/** MicroTime fields need six fractional digits on the wire; client-node's `V1MicroTime` prints them. */
const toSpec = (spec: LeaseSpec): k8s.V1LeaseSpec => ({
  ...(spec.holderIdentity === undefined ? {} : { holderIdentity: spec.holderIdentity }),
  ...(spec.leaseDurationSeconds === undefined ? {} : { leaseDurationSeconds: spec.leaseDurationSeconds }),
  ...(spec.acquireTime === undefined ? {} : { acquireTime: new k8s.V1MicroTime(spec.acquireTime) }),
  ...(spec.renewTime === undefined ? {} : { renewTime: new k8s.V1MicroTime(spec.renewTime) }),
  ...(spec.leaseTransitions === undefined ? {} : { leaseTransitions: spec.leaseTransitions })
})

const conflict = (name: string) => (e: Api.KubeApiError): LeaseConflict | ClusterError =>
  Api.isConflict(e) ? new LeaseConflict({ name, message: e.message }) : Api.toClusterError(e)

export const make = (namespace: string): Effect.Effect<LeasesShape, never, KubeConnection> =>
  Effect.gen(function*() {
    const { kubeConfig } = yield* KubeConnection
    const api = kubeConfig.makeApiClient(k8s.CoordinationV1Api)

    const get = Effect.fn("Leases.get")(function*(name: string) {
      const lease = yield* Api.call("readLease", name, (o) => api.readNamespacedLease({ name, namespace }, o)).pipe(
        Effect.mapError(Api.toPortError("Lease", name))
      )
      return yield* fromModel("readLease", name, lease)
    })

    const create = Effect.fn("Leases.create")(function*(name: string, spec: LeaseSpec) {
      const lease = yield* Api.call("createLease", name, (o) =>
        api.createNamespacedLease({
          namespace,
          body: { apiVersion: "coordination.k8s.io/v1", kind: "Lease", metadata: { name, namespace }, spec: toSpec(spec) }
        }, o)).pipe(Effect.mapError(conflict(name)))
      return yield* fromModel("createLease", name, lease)
    })

    const update = Effect.fn("Leases.update")(function*(lease: Lease) {
      const { name } = lease
      const updated = yield* Api.call("updateLease", name, (o) =>
        api.replaceNamespacedLease({
          name,
          namespace,
          body: {
            apiVersion: "coordination.k8s.io/v1",
            kind: "Lease",
            metadata: { name, namespace, resourceVersion: lease.resourceVersion },
            spec: toSpec(lease)
          }
        }, o)).pipe(
          Effect.mapError((e): LeaseConflict | NotFound | ClusterError =>
            Api.isNotFound(e) ? new NotFound({ kind: "Lease", name }) : conflict(name)(e)
          )
        )
      return yield* fromModel("updateLease", name, updated)
    })

    return Leases.of({ get, create, update })
  }).pipe(Effect.annotateLogs({ service: "Leases" }))

export const layer = (namespace: string): Layer.Layer<Leases, never, KubeConnection> =>
  Layer.effect(Leases, make(namespace))
