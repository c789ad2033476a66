// Real-time polling for the end-to-end tests (the executor runs on the wall clock there).

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * Polls `probe` until it returns something other than `undefined`; fails after `timeoutMs` with
 * `what` and the last error. An error thrown by `probe` counts as "not yet" until the deadline.
 */
export const eventually = async <A>(
  what: string,
  timeoutMs: number,
  probe: () => Promise<A | undefined> | A | undefined,
  intervalMs = 250
): Promise<A> => {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const value = await probe()
      if (value !== undefined) return value
      last = undefined
    } catch (error) {
      last = error
    }
    if (Date.now() >= deadline) {
      const why = last === undefined ? "" : `: ${last instanceof Error ? last.message : String(last)}`
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`)
    }
    await sleep(intervalMs)
  }
}

/** Runs `fn` and returns how long it took (ms) with its result. */
export const timed = async <A>(fn: () => Promise<A>): Promise<readonly [number, A]> => {
  const started = Date.now()
  const value = await fn()
  return [Date.now() - started, value] as const
}
