/**
 * Token buckets by key (a user, a client address) that outlive the connections drawing on them: a
 * client that closes its socket and opens another finds its bucket as it left it. A bucket that is
 * full again is the same as none, so it is the one forgotten when room is needed. The table holds
 * at most `entriesMax` buckets: a new key past that first drops every bucket that has refilled,
 * then, if all are still refilling, the one used longest ago; memory stays bounded whatever the
 * number of keys a client can make up.
 */

import { createTokenBucket, type TokenBucket } from './rate-limit.ts'

export interface BucketRate {
  readonly perSecond: number
  readonly burst: number
  /** Buckets kept at most. */
  readonly entriesMax: number
}

export interface BucketTable {
  /** Take a token from `key`'s bucket: 0 if one was there, else the ms until one will be. */
  take(key: string, nowMs: number): number
  /** Buckets held now. */
  size(): number
}

export function createBucketTable(rate: BucketRate): BucketTable {
  if (!(rate.entriesMax >= 1)) throw new RangeError('a bucket table needs entriesMax >= 1')
  // In order of last use, least recent first: a bucket is moved to the end on each take.
  const buckets = new Map<string, TokenBucket>()
  // No bucket is full before this: the full ones are looked for only once it has passed.
  let firstFullAtMs = Number.POSITIVE_INFINITY

  function makeRoom(nowMs: number): void {
    if (nowMs >= firstFullAtMs) {
      firstFullAtMs = Number.POSITIVE_INFINITY
      for (const [key, bucket] of buckets) {
        const fullAtMs = bucket.fullAtMs()
        if (fullAtMs <= nowMs) buckets.delete(key)
        else firstFullAtMs = Math.min(firstFullAtMs, fullAtMs)
      }
    }
    if (buckets.size < rate.entriesMax) return
    const leastRecent = buckets.keys().next().value
    if (leastRecent !== undefined) buckets.delete(leastRecent)
  }

  return {
    take(key, nowMs) {
      let bucket = buckets.get(key)
      if (bucket === undefined) {
        if (buckets.size >= rate.entriesMax) makeRoom(nowMs)
        bucket = createTokenBucket(rate.perSecond, rate.burst, nowMs)
      } else buckets.delete(key)
      buckets.set(key, bucket)
      const waitMs = bucket.take(nowMs)
      firstFullAtMs = Math.min(firstFullAtMs, bucket.fullAtMs())
      return waitMs
    },
    size: () => buckets.size,
  }
}
