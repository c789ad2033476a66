import { Effect } from "effect"

const nonNegativeInteger = /^(0|[1-9][0-9]*)$/

/**
 * The offset Kafka stores for a group that has handled `offset`: the next one to read. The port's
 * `ConsumedOffset.offset` is the handled message (as in `InMemoryBus`); `commitOffsets` and
 * `sendOffsets` take the next. Offsets are 64-bit, hence BigInt. A malformed offset is a bug (it
 * came from our own consumer), so it is a defect.
 */
export const nextOffset = (offset: string): Effect.Effect<string> =>
  nonNegativeInteger.test(offset)
    ? Effect.succeed((BigInt(offset) + 1n).toString())
    : Effect.dieMessage(`kafka: invalid offset ${JSON.stringify(offset)}`)
