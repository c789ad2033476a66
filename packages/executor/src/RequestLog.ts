import { Context, type Effect, Schema } from "effect"

/**
 * A failed call to the request topic. `unavailable`: nothing was appended (no broker answered, or
 * the call could not start). `uncertain`: the batch may be in the log or not (a timeout, a
 * connection lost after the request may have been written, a broker that died before answering).
 */
export class RequestLogError extends Schema.TaggedError<RequestLogError>()("RequestLogError", {
  outcome: Schema.Literal("unavailable", "uncertain"),
  message: Schema.String
}) {}

export interface OutgoingRecord {
  readonly key: string
  readonly value: string
}

export interface Position {
  readonly partition: number
  /** The partition's end offset (the offset the next record gets), or the first record at or after a time. */
  readonly from: string
}

/**
 * The request topic as the executor uses it: no transactions, every record visible to every reader
 * the moment it is appended. Adapters: `KafkaRequestLog` (an idempotent kafkajs producer and a
 * partition reader) and `InMemoryBus.layerRequestLog`.
 */
export interface RequestLogShape {
  /**
   * The partition of `key` and its end offset now; with `since`, the first offset whose record
   * time is at or after `since` (the end when there is none).
   */
  readonly place: (key: string, since?: number) => Effect.Effect<Position, RequestLogError>
  /**
   * Appends `records` to `partition` as one record batch (all of them or none), stamped with the
   * current time. A failure of unknown outcome is `uncertain`; the adapter never sends that batch
   * again by itself once it has reported the failure.
   */
  readonly send: (partition: number, records: ReadonlyArray<OutgoingRecord>) => Effect.Effect<void, RequestLogError>
  /**
   * Which of `requestIds` are on `partition` at or after `from`, read up to the end offset of the
   * moment the read starts. It waits until no send of this adapter is still in flight, so a batch
   * it sent earlier cannot land after the read.
   */
  readonly find: (
    partition: number,
    from: string,
    requestIds: ReadonlySet<string>
  ) => Effect.Effect<ReadonlySet<string>, RequestLogError>
}

export class RequestLog extends Context.Tag("executor/RequestLog")<RequestLog, RequestLogShape>() {}
