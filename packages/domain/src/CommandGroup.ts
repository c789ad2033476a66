import { createHash } from "node:crypto"
import { Schema } from "effect"
import type { Command } from "./Commands.js"

/**
 * A group of commands about one task that the executor means to send exactly once, together: one
 * record batch on the task's partition, so the controller sees all of them or none. Its id is
 * deterministic (derived from what caused it), and so is the `requestID` of each command, so that
 * a later attempt, also of a fresh executor, recognises the group in the log.
 */
export interface CommandGroup {
  readonly id: string
  /** The key of every command, and so their partition. */
  readonly taskId: string
  /** In order; a command's `requestID` comes from the group id and its index here. */
  readonly commands: ReadonlyArray<Command>
}

export const make = (id: string, taskId: string, commands: ReadonlyArray<Command>): CommandGroup => ({ id, taskId, commands })

/** RFC 4122 version 5 (SHA-1) UUID of `name` in `namespace`. */
export const uuidV5 = (namespace: string, name: string): string => {
  const hash = createHash("sha1")
    .update(Buffer.from(namespace.replace(/-/g, ""), "hex"))
    .update(Buffer.from(name, "utf8"))
    .digest()
  const bytes = hash.subarray(0, 16)
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x50
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80
  const hex = bytes.toString("hex")
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

const requestNamespace = "6f1c3a52-8d0e-5b7a-9c41-2e8f0d6b7a13"

/** The `requestID` of the command at `index` of group `groupId`. */
export const requestId = (groupId: string, index: number): string => uuidV5(requestNamespace, `${groupId}#${index}`)

export const requestIds = (group: CommandGroup): ReadonlyArray<string> => group.commands.map((_, i) => requestId(group.id, i))

/** The increment and the notification of one spawn: one group per Job. */
export const spawnId = (jobName: string): string => `spawn/${jobName}`

/** The failure pair of one verdict: the Job and the instant of the verdict mark. */
export const verdictId = (jobName: string, markedAt: string): string => `verdict/${jobName}/${markedAt}`

/** What one consumed task event caused (a type mismatch, a rejected spawn): its position and what. */
export const eventId = (
  position: { readonly topic: string; readonly partition: number; readonly offset: string },
  what: string
): string => `event/${position.topic}/${position.partition}/${position.offset}/${what}`

/** What a deferred respawn caused: no position to name it by, so the task and the event's identity. */
export const deferredId = (taskId: string, eventIdentity: string, what: string): string =>
  `deferred/${taskId}/${eventIdentity}/${what}`

/** One agent's probe of one run: a cron tick (`tick`, RFC 3339) or a manual trigger. */
export const probeId = (assignee: string, branch: string, run: string): string => `probe/${assignee}/${branch}/${run}`

const Offset = Schema.String.pipe(Schema.pattern(/^(0|[1-9][0-9]*)$/))

/**
 * Where a group goes, written down before its first send where a fresh executor finds it (the
 * Job's annotations, the consumer group's offset metadata): its partition, and that partition's
 * end offset before the first send. The group can only be in the log at or after `from`.
 */
export const Placement = Schema.Struct({
  group: Schema.String,
  partition: Schema.Int.pipe(Schema.nonNegative()),
  from: Offset
})
export type Placement = typeof Placement.Type

const PlacementJson = Schema.parseJson(Placement)
export const encodePlacement = Schema.encodeSync(PlacementJson)
export const decodePlacement = Schema.decodeUnknownOption(PlacementJson)

/** The lower of two offsets (64-bit, as decimal strings). */
export const minOffset = (a: string, b: string): string => (BigInt(a) <= BigInt(b) ? a : b)
