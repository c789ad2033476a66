import { Context, type Effect, Schema } from "effect"
import type { JobBuilder } from "@executor/domain"

/**
 * A failed API call. `transient` errors (5xx, 429, timeouts, connection loss) are retried;
 * the others are permanent for this input (422 invalid spec, 403).
 */
export class ClusterError extends Schema.TaggedError<ClusterError>()("ClusterError", {
  operation: Schema.String,
  target: Schema.String,
  transient: Schema.Boolean,
  message: Schema.String
}) {}

export class NotFound extends Schema.TaggedError<NotFound>()("NotFound", {
  kind: Schema.String,
  name: Schema.String
}) {}

export type CreateOutcome = "created" | "exists"

export interface JobEvent {
  readonly jobName: string
  readonly jobUid: string | undefined
  readonly reason: string
  readonly message: string
  readonly type: "Normal" | "Warning"
}

/** Cluster writes the executor makes, each idempotent so a retried call is harmless. */
export interface ClusterOpsShape {
  /** Creates the Job; an existing Job of the same name (409) counts as success. */
  readonly createJob: (manifest: JobBuilder.JobManifest) => Effect.Effect<CreateOutcome, ClusterError>
  /** Deletes with background propagation. */
  readonly deleteJob: (name: string) => Effect.Effect<void, ClusterError | NotFound>
  readonly annotateJob: (name: string, key: string, value: string) => Effect.Effect<void, ClusterError | NotFound>
  readonly addJobFinalizer: (name: string, finalizer: string) => Effect.Effect<void, ClusterError | NotFound>
  readonly removeJobFinalizer: (name: string, finalizer: string) => Effect.Effect<void, ClusterError | NotFound>
  readonly recordJobEvent: (event: JobEvent) => Effect.Effect<void, ClusterError>
}

export class ClusterOps extends Context.Tag("executor/ClusterOps")<ClusterOps, ClusterOpsShape>() {}
