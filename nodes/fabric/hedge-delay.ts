/**
 * How long to wait for an answer before sending the same request elsewhere (hedging): twice the
 * p99 of the last LATENCY_SAMPLES answers, at least HEDGE_FLOOR_MS, at most the configured most.
 * Until LATENCY_SAMPLES_MIN answers were seen it is the most. A hedge at twice the p99 resends about
 * one request in a hundred when all is well, and bounds what a stalled peer costs a request.
 */

/** Answers whose latency sets the delay, and how many are needed before it is trusted. */
export const LATENCY_SAMPLES = 512
export const LATENCY_SAMPLES_MIN = 64
/** The least hedge delay, however fast the answers: below it a hedge would double the load. */
export const HEDGE_FLOOR_MS = 20

export interface HedgeDelay {
  /** An answer came after `latencyMs`. */
  observe(latencyMs: number): void
  /** How long to wait now. */
  delayMs(): number
}

export function createHedgeDelay(maxMs: number): HedgeDelay {
  const latencies: number[] = []
  let next = 0
  let delay = maxMs
  return {
    observe(latencyMs) {
      latencies[next] = latencyMs
      next = (next + 1) % LATENCY_SAMPLES
      // Recomputed every LATENCY_SAMPLES_MIN answers: a sort of at most LATENCY_SAMPLES numbers.
      if (latencies.length >= LATENCY_SAMPLES_MIN && next % LATENCY_SAMPLES_MIN === 0) {
        const sorted = [...latencies].sort((a, b) => a - b)
        const p99 = sorted[Math.floor(sorted.length * 0.99)] ?? maxMs
        delay = Math.min(maxMs, Math.max(HEDGE_FLOOR_MS, Math.ceil(2 * p99)))
      }
    },
    delayMs: () => delay,
  }
}
