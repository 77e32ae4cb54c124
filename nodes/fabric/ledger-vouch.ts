/**
 * Vouching for the log a checkpoint was folded from. A checkpoint's restore check compares one
 * message, the one at its own sequence; a fold that took in, earlier, a message the stream later
 * replaced (nats-server 2.9.10 was seen to let a deposed leader deliver a message its successor
 * stored another under) passes it, and once the stream is purged below that checkpoint nothing is
 * left to fold the truth from. So the writer keeps a running hash chain over the messages it folds
 * (each link the SHA-256 of the one before and the message's digest) and, before it writes a
 * checkpoint, reads every message since the oldest sequence it may purge below again from the
 * stream's leader, chains them from the same link, and writes only if both chains end alike.
 *
 * What it cannot see: messages below the checkpoint the node started from (their writer vouched
 * for them), and a fork that both the fold and the leader read (the leader is the stream's word).
 */

import { sha256 } from '../../ledger/index.ts'

/** Gets in flight at once while vouching; the chain itself is built in sequence order. */
export const VOUCH_CONCURRENCY = 32
/** The chain's first link, at the sequence a node started folding from. */
export const CHAIN_START = ''

/** Where a node's chain stood after folding `seq`. */
export interface ChainPoint {
  readonly seq: number
  readonly chain: string
}

/** The link after `chain` for a message whose digest (ledger-checkpoints.ts messageDigest) is `digest`. */
export const chainStep = (chain: string, digest: string): string => sha256(`${chain}.${digest}`)

/**
 * Whether the stream holds, from `from.seq + 1` through `to.seq`, the messages the chain from
 * `from` to `to` was built over: `same`, `differs`, or `gone` (a message there is no longer held,
 * so nothing can be told). `messageAt` must ask the stream's leader; its failures reject.
 */
export async function vouchRange(context: {
  readonly from: ChainPoint
  readonly to: ChainPoint
  readonly messageAt: (seq: number) => Promise<Uint8Array | null>
  readonly digestOf: (data: Uint8Array) => string
}): Promise<'same' | 'differs' | 'gone'> {
  const { from, to, messageAt, digestOf } = context
  let chain = from.chain
  for (let seq = from.seq + 1; seq <= to.seq; seq += VOUCH_CONCURRENCY) {
    const count = Math.min(VOUCH_CONCURRENCY, to.seq - seq + 1)
    const held = await Promise.all(Array.from({ length: count }, (_, i) => messageAt(seq + i)))
    for (const data of held) {
      if (data === null) return 'gone'
      chain = chainStep(chain, digestOf(data))
    }
  }
  return chain === to.chain ? 'same' : 'differs'
}
