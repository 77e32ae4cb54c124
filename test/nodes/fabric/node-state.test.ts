// Proves exposurePeaks (nodes/fabric/node-state.ts), which the hostile-mix chaos run reads to check
// the limits held while bets were open: it replays a fold's bets in ledger order and keeps the most
// each user held in open stakes and each market in liability, counting a bet at the price offered
// at its stamp (not the odds asked), from its placement until its settlement, and a refused bet not
// at all. Each case folds real entries and compares with peaks worked out by hand.

import t from 'tap'
import { type BetEntry, createLedgerFold, type LedgerFold } from '../../../ledger/index.ts'
import { exposurePeaks } from '../../../nodes/fabric/node-state.ts'
import { betEntry } from '../../helpers/ledger-entries.ts'

const STAMP = '0001700000000.000000.api-1+++++++++++++++++++'

function bet(id: string, userId: string, stakeCents: number, extra: Partial<BetEntry> = {}): BetEntry {
  return betEntry(id, userId, stakeCents, {
    stamp: STAMP,
    placedAtMs: 1_700_000_000_000,
    offeredOdds: 2_000,
    ...extra,
  })
}

const settle = (betId: string, userId: string, outcome: 'won' | 'lost') => ({
  type: 'settlement',
  id: `settle/${betId}`,
  betId,
  userId,
  outcome,
  ...(outcome === 'won' ? { odds: 2_000 } : {}),
})

function folded(...messages: unknown[]): LedgerFold {
  const fold = createLedgerFold()
  for (const [i, message] of messages.entries()) fold.apply(message, i + 1)
  return fold
}

t.test('open stakes peak while bets are open, and fall when they settle', async (t) => {
  const fold = folded(
    { type: 'deposit', id: 'd-alice', userId: 'alice', amountCents: 100_000 },
    bet('bet-0001', 'alice', 10_000),
    bet('bet-0002', 'alice', 20_000),
    settle('bet-0001', 'alice', 'lost'),
    bet('bet-0003', 'alice', 5_000),
  )
  const peaks = exposurePeaks(fold.toJSON().bets)
  t.same(
    peaks.openStakesCents,
    { alice: 30_000 },
    'the first two were open together; the third came after one settled',
  )
  t.same(peaks.marketLiabilityCents, { 'match-1 p1-winner': 30_000 }, 'winnings at evens equal the stakes')
  t.equal(fold.exposure('alice').openStakesCents, 25_000, 'the fold at the end holds less than the peak')
})

t.test('liability counts the offered price, and a refused bet counts nothing', async (t) => {
  const fold = folded(
    { type: 'deposit', id: 'd-bob', userId: 'bob', amountCents: 10_000 },
    bet('bet-0001', 'bob', 1_000, { odds: 1_000_000, offeredOdds: 1_500 }),
    bet('bet-0002', 'bob', 50_000),
    bet('bet-0003', 'bob', 2_000, { marketId: 'p2-winner', offeredOdds: 3_000 }),
  )
  const peaks = exposurePeaks(fold.toJSON().bets)
  t.same(peaks.openStakesCents, { bob: 3_000 }, 'the bet the balance could not cover was never open')
  t.same(
    peaks.marketLiabilityCents,
    { 'match-1 p1-winner': 500, 'match-1 p2-winner': 4_000 },
    'each market holds its own bets at their offered odds',
  )
})

t.test('a batch settling several bets at one sequence releases them all', async (t) => {
  const fold = folded(
    { type: 'deposit', id: 'd-carol', userId: 'carol', amountCents: 100_000 },
    { type: 'deposit', id: 'd-dave', userId: 'dave', amountCents: 100_000 },
    bet('bet-0001', 'carol', 10_000),
    bet('bet-0001', 'dave', 10_000),
    {
      type: 'settlements',
      id: 'batch-1',
      settlements: [settle('bet-0001', 'carol', 'won'), settle('bet-0001', 'dave', 'lost')],
    },
    bet('bet-0002', 'dave', 15_000),
  )
  const peaks = exposurePeaks(fold.toJSON().bets)
  t.same(peaks.openStakesCents, { carol: 10_000, dave: 15_000 }, 'two users of one bet id are two bets')
  t.same(
    peaks.marketLiabilityCents,
    { 'match-1 p1-winner': 20_000 },
    'the batch released both before the next bet',
  )
})
