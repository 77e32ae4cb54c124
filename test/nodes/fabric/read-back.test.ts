// Proves the ledger's read-back of a node's own appends (ledger-sync.ts, createReadBack) with
// injected timers: a waiter gets the fold's result when the fold reaches its sequence, or a
// timeout; and an append acknowledged at a sequence where the fold holds another entry, before or
// after the fold got there, marks the ledger diverged with both ids named.

import pino from 'pino'
import t from 'tap'
import type { FoldResult } from '../../../ledger/index.ts'
import { createReadBack } from '../../../nodes/fabric/ledger-sync.ts'
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

function setup() {
  let foldedThrough = 0
  const { timers, advance } = manualTimers()
  const readBack = createReadBack({
    log: pino({ level: 'silent' }),
    stream: 'LEDGER_EU',
    timers,
    foldedThrough: () => foldedThrough,
  })
  const fold = (seq: number, entryId: string) => {
    foldedThrough = seq
    readBack.folded(seq, applied(entryId))
  }
  return { readBack, fold, advance }
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

t.test('an acknowledged append found under another entry marks the ledger diverged', async (t) => {
  const before = setup()
  before.readBack.expectAt(5, 'bet-mine')
  before.fold(5, 'bet-mine')
  t.equal(before.readBack.diverged(), null, 'the same entry: all is well')
  before.readBack.expectAt(6, 'bet-mine-2')
  before.fold(6, 'bet-other')
  t.match(before.readBack.diverged(), /acknowledged bet-mine-2 at 6, where the fold holds bet-other/)

  const after = setup()
  after.fold(7, 'bet-other')
  after.readBack.expectAt(7, 'bet-mine')
  t.match(after.readBack.diverged(), /acknowledged bet-mine at 7/, 'also when the fold got there first')
})
