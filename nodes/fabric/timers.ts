/**
 * Timers as a dependency. Node code that waits or repeats takes a `Timers`; processes pass the
 * real ones, and the deterministic simulator passes its scheduler's, so simulated time alone decides
 * when anything fires.
 */

export interface Timers {
  /** Run `fn` once after `ms`; returns the way to cancel it. */
  setTimeout(fn: () => void, ms: number): () => void
  /** Run `fn` every `ms`; returns the way to stop it. */
  setInterval(fn: () => void, ms: number): () => void
}

export const realTimers: Timers = {
  setTimeout(fn, ms) {
    const timer = setTimeout(fn, ms)
    return () => clearTimeout(timer)
  },
  setInterval(fn, ms) {
    const timer = setInterval(fn, ms)
    return () => clearInterval(timer)
  },
}

export function sleep(timers: Timers, ms: number): Promise<void> {
  return new Promise((resolve) => timers.setTimeout(resolve, ms))
}
