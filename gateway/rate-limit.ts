/**
 * A token bucket: `perSecond` tokens flow in, at most `burst` are kept. A frame takes one; a
 * frame that finds none is refused (the caller answers RATE_LIMITED with `retryAfterMs`).
 */

export interface TokenBucket {
  /** Take a token: 0 if one was there, else the ms until one will be. */
  take(nowMs: number): number
  /** When the bucket will hold its whole burst again if nothing more is taken. */
  fullAtMs(): number
}

export function createTokenBucket(perSecond: number, burst: number, nowMs: number): TokenBucket {
  if (!(perSecond > 0) || !(burst >= 1)) throw new RangeError('a bucket needs perSecond > 0 and burst >= 1')
  let tokens = burst
  let lastMs = nowMs
  return {
    take(now) {
      tokens = Math.min(burst, tokens + ((now - lastMs) * perSecond) / 1000)
      lastMs = now
      if (tokens >= 1) {
        tokens -= 1
        return 0
      }
      return Math.ceil(((1 - tokens) * 1000) / perSecond)
    },
    fullAtMs: () => lastMs + ((burst - tokens) * 1000) / perSecond,
  }
}
