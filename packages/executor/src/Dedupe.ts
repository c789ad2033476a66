import { Clock, Context, Effect, Layer, Ref } from "effect"

/**
 * Exactly one verdict per job attempt among concurrent detectors (decisions D4.2): `reserve` is
 * atomic; the winner `confirm`s after publishing or `release`s if it gave up. A reservation never
 * expires (its publish may be retried for a long outage); a confirmed key expires after its TTL.
 * Least recently used keys are evicted first when full. The durable half of the guarantee is the
 * verdict mark on the Job.
 */
export interface DedupeShape {
  readonly reserve: (key: string, ttlMillis: number) => Effect.Effect<boolean>
  readonly confirm: (key: string) => Effect.Effect<void>
  readonly release: (key: string) => Effect.Effect<void>
  /** A verdict for this key is reserved or was confirmed within its TTL. */
  readonly seen: (key: string) => Effect.Effect<boolean>
  readonly size: Effect.Effect<number>
}

interface Entry {
  readonly state: "reserved" | "confirmed"
  readonly at: number
  readonly ttlMillis: number
}

const defaultCapacity = 4096

const touch = (entries: ReadonlyMap<string, Entry>, key: string, entry: Entry, capacity: number) => {
  const next = new Map(entries)
  next.delete(key)
  next.set(key, entry)
  for (const [oldest, candidate] of next) {
    if (next.size <= capacity) break
    if (candidate.state === "confirmed") next.delete(oldest)
  }
  return next
}

/** A reservation holds until released or confirmed; a confirmation holds for its TTL. */
const isLive = (entry: Entry | undefined, now: number): boolean =>
  entry !== undefined && (entry.state === "reserved" || now - entry.at < entry.ttlMillis)

const make = (capacity: number = defaultCapacity) =>
  Effect.gen(function* () {
    const entries = yield* Ref.make<ReadonlyMap<string, Entry>>(new Map())
    const reserve = (key: string, ttlMillis: number) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Ref.modify(entries, (current): [boolean, ReadonlyMap<string, Entry>] => {
          return isLive(current.get(key), now) ? [false, current] : [true, touch(current, key, { state: "reserved", at: now, ttlMillis }, capacity)]
        })
      )
    const confirm = (key: string) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Ref.update(entries, (current) => {
          const existing = current.get(key)
          return existing === undefined ? current : touch(current, key, { ...existing, state: "confirmed", at: now }, capacity)
        })
      )
    const release = (key: string) =>
      Ref.update(entries, (current) => {
        if (current.get(key)?.state !== "reserved") return current
        const next = new Map(current)
        next.delete(key)
        return next
      })
    const seen = (key: string) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) =>
        Effect.map(Ref.get(entries), (current) => isLive(current.get(key), now))
      )
    return Dedupe.of({ reserve, confirm, release, seen, size: Effect.map(Ref.get(entries), (m) => m.size) })
  })

export class Dedupe extends Context.Tag("executor/Dedupe")<Dedupe, DedupeShape>() {
  static readonly layer = Layer.effect(Dedupe, make())
  static readonly layerWithCapacity = (capacity: number) => Layer.effect(Dedupe, make(capacity))
}
