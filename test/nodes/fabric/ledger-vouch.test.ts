// Proves the vouching of a checkpoint's log (nodes/fabric/ledger-vouch.ts): a chain built over the
// messages folded matches one built over the same messages read again, over more messages than
// are read at once, and not over a log where one message differs or is gone.

import t from 'tap'
import { messageDigest } from '../../../nodes/fabric/ledger-checkpoints.ts'
import {
  CHAIN_START,
  type ChainPoint,
  chainStep,
  VOUCH_CONCURRENCY,
  vouchRange,
} from '../../../nodes/fabric/ledger-vouch.ts'

const encode = (text: string) => new TextEncoder().encode(text)
const log = Array.from({ length: 3 * VOUCH_CONCURRENCY + 5 }, (_, i) => encode(`message ${i + 1}`))

/** Where the chain stands after folding log[from..to) (sequences from+1..to), from `start`. */
function chained(start: ChainPoint, to: number): ChainPoint {
  let chain = start.chain
  for (let seq = start.seq + 1; seq <= to; seq++)
    chain = chainStep(chain, messageDigest(log[seq - 1] as Uint8Array))
  return { seq: to, chain }
}

const stream = (changed: Map<number, Uint8Array | null> = new Map()) => ({
  messageAt: async (seq: number) => (changed.has(seq) ? (changed.get(seq) ?? null) : (log[seq - 1] ?? null)),
  digestOf: messageDigest,
})

t.test('the same messages vouch; another or a missing one does not', async (t) => {
  const from = { seq: 0, chain: CHAIN_START }
  const to = chained(from, log.length)
  t.equal(await vouchRange({ from, to, ...stream() }), 'same')
  t.equal(await vouchRange({ from, to, ...stream(new Map([[70, encode('another')]])) }), 'differs')
  t.equal(await vouchRange({ from, to, ...stream(new Map([[70, null]])) }), 'gone')
  // From a point part of the way: what came before it is not read.
  const mid = chained(from, 40)
  t.equal(await vouchRange({ from: mid, to, ...stream(new Map([[12, encode('another')]])) }), 'same')
  t.equal(await vouchRange({ from: mid, to: mid, ...stream() }), 'same', 'an empty range')
})

t.test('the order of the messages counts', async (t) => {
  const from = { seq: 0, chain: CHAIN_START }
  const to = chained(from, 4)
  const swapped = new Map([
    [2, log[2] as Uint8Array],
    [3, log[1] as Uint8Array],
  ])
  t.equal(await vouchRange({ from, to, ...stream(swapped) }), 'differs')
})
