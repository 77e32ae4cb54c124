// Proves the ledger's read-back of a node's own appends (ledger-sync.ts, createReadBack) with
// injected timers: a waiter gets the fold's result when the fold reaches its sequence, or a
// timeout, or at once a refusal for a result folded and no longer kept; and an append acknowledged at a sequence where the fold holds another entry, before or
// after the fold got there, marks the ledger diverged with both ids named. A waiter still waiting
// after NUDGE_AFTER_MS nudges the shard's consumer, once; one answered sooner does not.

import pino from 'pino'
import t from 'tap'
import type { FoldResult } from '../../../ledger/index.ts'
import { createReadBack, NUDGE_AFTER_MS, RECENT_RESULTS_MAX } from '../../../nodes/fabric/ledger-sync.ts'
import type { Timers } from '../../../nodes/fabric/timers.ts'

function manualTimers() {
  const pending: { fn: () => void; atMs: number; cancelled: boolean }[] = []
  let nowMs = 0
  const timers: Timers = {
    setTimeout(fn, ms) {
      const timer = { fn, atMs: nowMs + ms, cancelled: false }
      pending.push(timer)
      return () => {
        timer.cancelled = true
      }
    },
    setInterval() {
      throw new Error('not used')
    },
  }
  const advance = (ms: number) => {
    nowMs += ms
    for (const timer of pending.splice(0)) {
      if (timer.cancelled) continue
      if (timer.atMs <= nowMs) timer.fn()
      else pending.push(timer)
    }
  }
  return { timers, advance }
}

const applied = (entryId: string): FoldResult => ({
  entryId,
  userId: 'u1',
  balanceCents: 100,
  status: 'applied',
  reason: null,
})

const mine = (id: string) => ({ userId: 'u1', id })

function setup() {
  let foldedThrough = 0
  const { timers, advance } = manualTimers()
  const nudges = { count: 0 }
  const readBack = createReadBack({
    log: pino({ level: 'silent' }),
    stream: 'LEDGER_EU_0',
    timers,
    foldedThrough: () => foldedThrough,
    nudge: () => nudges.count++,
  })
  const fold = (seq: number, entryId: string) => {
    foldedThrough = seq
    readBack.folded(seq, [applied(entryId)])
  }
  return { readBack, fold, advance, nudges }
}

t.test('a waiter gets the result when the fold reaches it, or a timeout', async (t) => {
  const { readBack, fold, advance } = setup()
  const waiting = readBack.resultAt(3, 1_000)
  fold(3, 'bet-1')
  t.match(await waiting, { entryId: 'bet-1', status: 'applied' })
  t.match(await readBack.resultAt(3, 1_000), { entryId: 'bet-1' }, 'a late waiter reads it back at once')
  const late = readBack.resultAt(9, 1_000)
  advance(1_001)
  await t.rejects(late, /did not reach 9 in 1000 ms/)
})

t.test('a result folded and no longer kept is refused at once, not after the deadline', async (t) => {
  const { readBack, fold } = setup()
  for (let seq = 1; seq <= RECENT_RESULTS_MAX + 1; seq++) fold(seq, `bet-${seq}`)
  await t.rejects(readBack.resultAt(1, 60_000), /result at 1 is no longer kept/, 'the oldest is gone')
  t.match(await readBack.resultAt(2, 60_000), { entryId: 'bet-2' }, 'the next is kept')
  t.match(
    await readBack.resultAt(RECENT_RESULTS_MAX + 1, 60_000),
    { entryId: `bet-${RECENT_RESULTS_MAX + 1}` },
    'and the newest',
  )
})

t.test('an acknowledged append found under another entry marks the ledger diverged', async (t) => {
  const before = setup()
  before.readBack.expectAt(5, [mine('bet-mine')])
  before.fold(5, 'bet-mine')
  t.equal(before.readBack.diverged(), null, 'the same entry: all is well')
  before.readBack.expectAt(6, [mine('bet-mine-2')])
  before.fold(6, 'bet-other')
  t.match(before.readBack.diverged(), /acknowledged u1\/bet-mine-2 at 6, where the fold holds u1\/bet-other/)

  const after = setup()
  after.fold(7, 'bet-other')
  after.readBack.expectAt(7, [mine('bet-mine')])
  t.match(after.readBack.diverged(), /acknowledged u1\/bet-mine at 7/, 'also when the fold got there first')
})

t.test('a batch is read back entry by entry, and checked entry by entry', async (t) => {
  // One message holding three entries: a waiter asks for the second, and an acknowledged batch
  // whose third entry the fold holds under another user marks the ledger diverged.
  const { readBack, advance } = setup()
  const results = ['b1', 'b2', 'b3'].map(applied)
  const second = readBack.resultAt(4, 1_000, 1)
  readBack.folded(4, results)
  t.match(await second, { entryId: 'b2' })
  await t.rejects(readBack.resultAt(4, 1_000, 3), /holds no entry 3/)
  readBack.expectAt(4, [mine('b1'), mine('b2'), mine('b3')])
  t.equal(readBack.diverged(), null, 'the same entries in the same order')
  readBack.expectAt(4, [mine('b1'), mine('b2'), { userId: 'u2', id: 'b3' }])
  t.match(readBack.diverged(), /acknowledged u2\/b3 at 4, where the fold holds u1\/b3/)
  advance(0)
})

t.test('a waiter that waits past NUDGE_AFTER_MS nudges the consumer, once', async (t) => {
  const { readBack, fold, advance, nudges } = setup()
  const quick = readBack.resultAt(2, 1_000)
  advance(NUDGE_AFTER_MS - 1)
  fold(2, 'bet-1')
  await quick
  advance(NUDGE_AFTER_MS)
  t.equal(nudges.count, 0, 'answered in time: no nudge')
  const slow = readBack.resultAt(3, 1_000)
  advance(NUDGE_AFTER_MS)
  t.equal(nudges.count, 1, 'still waiting: the consumer is nudged')
  advance(NUDGE_AFTER_MS)
  t.equal(nudges.count, 1, 'once per waiter')
  fold(3, 'bet-2')
  t.match(await slow, { entryId: 'bet-2' })
})
