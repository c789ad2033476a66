/**
 * The partition of a record key, as Kafka's default partitioner (and kafkajs's
 * `DefaultPartitioner`) computes it: the positive 32-bit murmur2 hash of the key's UTF-8 bytes,
 * modulo the partition count. The executor names the partition of every batch itself, so that the
 * partition a group was placed on is known before it is sent.
 */
export const murmur2 = (data: Uint8Array): number => {
  const m = 0x5bd1e995
  const length = data.length
  const byte = (i: number) => data[i] ?? 0
  let h = 0x9747b28c ^ length
  const whole = length - (length % 4)
  for (let i = 0; i < whole; i += 4) {
    let k = byte(i) | (byte(i + 1) << 8) | (byte(i + 2) << 16) | (byte(i + 3) << 24)
    k = Math.imul(k, m)
    k ^= k >>> 24
    k = Math.imul(k, m)
    h = Math.imul(h, m) ^ k
  }
  const rest = length % 4
  if (rest >= 3) h ^= byte(whole + 2) << 16
  if (rest >= 2) h ^= byte(whole + 1) << 8
  if (rest >= 1) h = Math.imul(h ^ byte(whole), m)
  h ^= h >>> 13
  h = Math.imul(h, m)
  h ^= h >>> 15
  return h | 0
}

const encoder = new TextEncoder()

/** The partition of `key` among `partitions` (at least 1). */
export const partitionOf = (key: string, partitions: number): number =>
  (murmur2(encoder.encode(key)) & 0x7fffffff) % Math.max(1, Math.floor(partitions))
