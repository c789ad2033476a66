import { Clock, Duration, Effect, Exit, FiberId, Runtime, Scheduler } from "effect"

/**
 * Discrete-event time for a closed world: every fiber of the world runs on one scheduler whose
 * queue this module owns, and every sleep lands in its timer heap. So "no fiber can run" is known
 * exactly, not polled for with real timers (as `TestClock.adjust` must, a few milliseconds per
 * timer); only then does the clock jump to the next timer. The same program gives the same run.
 *
 * A world may not wait on anything outside itself (I/O, promises): it would look finished, and
 * `run` reports it as stuck.
 */
export interface VirtualTime {
  /** The clock of the world (provide it with `Effect.withClock`; `run` does). */
  readonly clock: Clock.Clock
  /**
   * Resumes at `instant`, after every other timer due at or before it has fired and the world has
   * settled: what `TestClock.setTime(instant)` gives the fiber that calls it.
   */
  readonly settleAt: (instant: number) => Effect.Effect<void>
}

/** A world that can neither run nor wait for a timer, yet has not finished. */
export class WorldStuck extends Error {
  constructor(readonly at: number) {
    super(`the simulated world is stuck at ${new Date(at).toISOString()}: no fiber can run and no timer is set`)
  }
}

interface Timer {
  readonly at: number
  /** Fires after every other timer of the same instant (`settleAt`). */
  readonly last: boolean
  readonly seq: number
  cancelled: boolean
  readonly fire: () => void
}

const before = (a: Timer, b: Timer): boolean =>
  a.at !== b.at ? a.at < b.at : a.last !== b.last ? !a.last : a.seq < b.seq

/** A binary min-heap of timers; cancelled ones are dropped when they reach the top. */
class TimerHeap {
  private readonly items: Array<Timer> = []

  push(timer: Timer): void {
    const items = this.items
    items.push(timer)
    let i = items.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(items[i]!, items[parent]!)) break
      ;[items[i], items[parent]] = [items[parent]!, items[i]!]
      i = parent
    }
  }

  pop(): Timer | undefined {
    const items = this.items
    for (;;) {
      const top = items[0]
      if (top === undefined) return undefined
      const last = items.pop()!
      if (items.length > 0) {
        items[0] = last
        let i = 0
        for (;;) {
          const l = 2 * i + 1
          const r = l + 1
          let smallest = i
          if (l < items.length && before(items[l]!, items[smallest]!)) smallest = l
          if (r < items.length && before(items[r]!, items[smallest]!)) smallest = r
          if (smallest === i) break
          ;[items[i], items[smallest]] = [items[smallest]!, items[i]!]
          i = smallest
        }
      }
      if (!top.cancelled) return top
    }
  }
}

/** At most this many tasks run between two yields to the host's event loop (so a busy world can still be interrupted). */
const batchSize = 20_000

/**
 * Runs `program` in a closed world under virtual time that starts at `startAt` (epoch millis),
 * driven from the calling fiber: runnable fibers first, then the next timer, until the program
 * ends. The world inherits the caller's services (logger, random) except the clock.
 */
export const run = <A, E>(
  startAt: number,
  program: (time: VirtualTime) => Effect.Effect<A, E>
): Effect.Effect<A, E | WorldStuck> =>
  Effect.gen(function*() {
    let now = startAt
    let seq = 0
    let queue: Array<Scheduler.Task> = []
    const timers = new TimerHeap()

    const scheduler = Scheduler.make((task) => void queue.push(task))

    const wakeAt = (at: number, last: boolean) =>
      Effect.async<void>((resume) => {
        const timer: Timer = { at, last, seq: seq++, cancelled: false, fire: () => resume(Effect.void) }
        timers.push(timer)
        return Effect.sync(() => {
          timer.cancelled = true
        })
      })

    const clock: Clock.Clock = {
      [Clock.ClockTypeId]: Clock.ClockTypeId,
      unsafeCurrentTimeMillis: () => now,
      unsafeCurrentTimeNanos: () => BigInt(Math.round(now * 1_000_000)),
      currentTimeMillis: Effect.sync(() => now),
      currentTimeNanos: Effect.sync(() => BigInt(Math.round(now * 1_000_000))),
      sleep: (duration) =>
        Effect.suspend(() => {
          const millis = Duration.toMillis(duration)
          if (millis <= 0) return Effect.void
          return Number.isFinite(millis) ? wakeAt(now + millis, false) : Effect.never
        })
    }

    const time: VirtualTime = {
      clock,
      settleAt: (instant) => Effect.suspend(() => wakeAt(Math.max(instant, now), true))
    }

    const runtime = yield* Effect.runtime<never>()
    const world = Runtime.runFork(runtime)(Effect.withClock(program(time), clock), { scheduler, immediate: false })

    const runQueued = (budget: number): number => {
      let ran = 0
      while (queue.length > 0 && ran < budget) {
        const batch = queue
        queue = []
        for (const task of batch) task()
        ran += batch.length
      }
      return ran
    }

    const drive = Effect.gen(function*() {
      let sinceYield = 0
      for (;;) {
        const exit = world.unsafePoll()
        if (exit !== null) return yield* Exit.matchEffect(exit, { onFailure: Effect.failCause, onSuccess: Effect.succeed })
        if (queue.length > 0) {
          sinceYield += runQueued(batchSize - sinceYield)
          if (sinceYield >= batchSize) {
            sinceYield = 0
            // a turn of the host's event loop (its timers too), through the caller's own clock
            yield* Effect.sleep(Duration.zero)
          }
          continue
        }
        const next = timers.pop()
        if (next === undefined) return yield* Effect.fail(new WorldStuck(now))
        now = Math.max(now, next.at)
        next.fire()
      }
    })

    // Interrupted from outside (a wall-clock guard): interrupt the world and let it run its
    // finalizers at the current instant, so no abandoned fiber stays registered.
    return yield* Effect.onInterrupt(drive, () =>
      Effect.sync(() => {
        world.unsafeInterruptAsFork(FiberId.none)
        runQueued(batchSize)
      }))
  })
