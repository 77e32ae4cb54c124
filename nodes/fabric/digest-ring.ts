/**
 * The digests of the last messages a follower handled, by sequence, for its audits
 * (stream-check.ts): DIGEST_BYTES of each message's SHA-256 in one buffer, and its sequence in
 * another, instead of a string and a map entry per message (about a sixth of the memory: a node
 * following a ledger of many shards keeps a full ring per stream). Sequences are recorded in
 * increasing order (a follower hands them on in order), not always one apart (a purge leaves
 * gaps), so a lookup tries the place the sequence would have without gaps, then searches.
 * The buffers grow by doubling up to the capacity; past it the oldest digest makes room.
 */

import { createHash } from 'node:crypto'

/** Bytes kept of each SHA-256: 128 bits tell two messages apart as well as the whole for an audit. */
export const DIGEST_BYTES = 16
const FIRST_CAPACITY = 1_024

export function shortDigest(data: Uint8Array): Uint8Array {
  return createHash('sha256').update(data).digest().subarray(0, DIGEST_BYTES)
}

export class DigestRing {
  readonly #max: number
  #digests = new Uint8Array(0)
  #seqs = new Float64Array(0)
  /** Physical index of the oldest digest kept. */
  #start = 0
  #size = 0

  constructor(max: number) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError(`a ring of ${max} digests`)
    this.#max = max
  }

  get size(): number {
    return this.#size
  }

  /** The oldest sequence kept; undefined while none is. */
  oldest(): number | undefined {
    return this.#size === 0 ? undefined : this.#seqs[this.#start]
  }

  /** Keep the digest of `seq`; one at or before the newest kept is not (a follower hands none on). */
  record(seq: number, data: Uint8Array): void {
    if (this.#size > 0 && seq <= this.#seqAt(this.#size - 1)) return
    if (this.#size === this.#seqs.length && this.#size < this.#max) this.#grow()
    const at = this.#size < this.#seqs.length ? this.#index(this.#size) : this.#start
    if (this.#size === this.#seqs.length) this.#start = (this.#start + 1) % this.#seqs.length
    else this.#size++
    this.#seqs[at] = seq
    this.#digests.set(shortDigest(data), at * DIGEST_BYTES)
  }

  has(seq: number): boolean {
    return this.#find(seq) !== -1
  }

  /** Whether `data` is the message recorded at `seq`; undefined when `seq` is not kept. */
  matches(seq: number, data: Uint8Array): boolean | undefined {
    const at = this.#find(seq)
    if (at === -1) return undefined
    const kept = this.#digests.subarray(at * DIGEST_BYTES, (at + 1) * DIGEST_BYTES)
    return Buffer.from(kept.buffer, kept.byteOffset, DIGEST_BYTES).equals(shortDigest(data))
  }

  #index(logical: number): number {
    return (this.#start + logical) % this.#seqs.length
  }

  #seqAt(logical: number): number {
    return this.#seqs[this.#index(logical)] as number
  }

  /** The physical index holding `seq`, or -1. */
  #find(seq: number): number {
    if (this.#size === 0) return -1
    const newest = this.#seqAt(this.#size - 1)
    const guess = this.#size - 1 - (newest - seq)
    if (guess >= 0 && guess < this.#size && this.#seqAt(guess) === seq) return this.#index(guess)
    let low = 0
    let high = this.#size - 1
    while (low <= high) {
      const mid = (low + high) >>> 1
      const at = this.#seqAt(mid)
      if (at === seq) return this.#index(mid)
      if (at < seq) low = mid + 1
      else high = mid - 1
    }
    return -1
  }

  /** Twice the room (at most the capacity), the digests kept in order from index 0. */
  #grow(): void {
    const capacity = Math.min(this.#max, Math.max(FIRST_CAPACITY, 2 * this.#seqs.length))
    const seqs = new Float64Array(capacity)
    const digests = new Uint8Array(capacity * DIGEST_BYTES)
    for (let i = 0; i < this.#size; i++) {
      const from = this.#index(i)
      seqs[i] = this.#seqs[from] as number
      digests.set(this.#digests.subarray(from * DIGEST_BYTES, (from + 1) * DIGEST_BYTES), i * DIGEST_BYTES)
    }
    this.#seqs = seqs
    this.#digests = digests
    this.#start = 0
  }
}
