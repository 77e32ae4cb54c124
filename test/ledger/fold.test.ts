// Proves the ledger fold (ledger/): deposits, withdrawals, bet debits and their funds
// verdicts, settlement payouts, at most one payout per bet, duplicate and conflicting ids, refusal
// of malformed and hostile input without any state change, strictly increasing sequences, exact
// arithmetic at the limits, and snapshots. Property tests (fast-check) check determinism across
// folds under any interleaving of two API nodes, the money invariants and a reference model after
// every entry, at-most-once payouts under settlement storms, and restore at any cut point.

import assert from 'node:assert/strict'
import fc from 'fast-check'
import t from 'tap'
import { ODDS_MAX, ODDS_MIN } from '../../crdt/limits.ts'
import {
  AMOUNT_CENTS_MAX,
  BETS_PER_BATCH_MAX,
  type BetEntry,
  checkLedgerSums,
  createLedgerFold,
  type FoldResult,
  LEDGER_INFLOW_CENTS_MAX,
  type LedgerFold,
  type LedgerSnapshot,
  PAYOUT_CENTS_MAX,
  POTENTIAL_PAYOUT_CENTS_MAX,
  parseLedgerEntry,
  payoutCents,
  SETTLEMENTS_PER_BATCH_MAX,
  type SettlementOutcome,
  STAKE_CENTS_MAX,
} from '../../ledger/index.ts'
import { ENTRY_ID_LENGTH_MAX, USER_ID_LENGTH_MAX } from '../../protocol/ids.ts'

const STAMP = '0001700000000.000000.api-1+++++++++++++++++++'
const PLACED_AT_MS = 1_700_000_000_000
const OUTCOMES: readonly SettlementOutcome[] = ['won', 'lost', 'void', 'rejected']

const deposit = (id: string, userId: string, amountCents: number) => ({
  type: 'deposit',
  id,
  userId,
  amountCents,
})
const withdrawal = (id: string, userId: string, amountCents: number) => ({
  type: 'withdrawal',
  id,
  userId,
  amountCents,
})
const bet = (id: string, userId: string, stakeCents: number, odds = 2_000): BetEntry => ({
  type: 'bet',
  id,
  userId,
  gameId: 'match-1',
  marketId: 'point-1',
  selectionId: 'home',
  stakeCents,
  odds,
  policy: 'better',
  stamp: STAMP,
  placedAtMs: PLACED_AT_MS,
})
function settlement(id: string, betId: string, userId: string, outcome: SettlementOutcome, odds?: number) {
  const base = { type: 'settlement', id, betId, userId, outcome }
  return odds === undefined ? base : { ...base, odds }
}

/** The one result of a message that holds one entry. */
function only(results: readonly FoldResult[]): FoldResult {
  assert.equal(results.length, 1, 'one result per single-entry message')
  return results[0] as FoldResult
}

/** A fold fed at consecutive sequences 1, 2, 3, ... */
function feeder(fold: LedgerFold = createLedgerFold()) {
  return { fold, feed: (value: unknown): FoldResult => only(fold.apply(value, fold.lastSeq() + 1)) }
}

/** Everything a fold holds, except where it is in the stream and what it counted. */
function money(fold: LedgerFold) {
  const { lastSeq: _lastSeq, counts: _counts, ...rest } = fold.toJSON()
  return rest
}

const roundTrip = <T>(value: T): T => JSON.parse(JSON.stringify(value)) as T

t.test('deposits credit and withdrawals debit only what the balance covers', async (t) => {
  // Folds deposits and withdrawals for two users and checks every result, balance and total,
  // including a withdrawal of one cent too many and one of exactly the balance.
  const { fold, feed } = feeder()
  t.same(feed(deposit('d1', 'u1', 1_000)), {
    entryId: 'd1',
    userId: 'u1',
    balanceCents: 1_000,
    status: 'applied',
    reason: null,
  })
  feed(deposit('d2', 'u2', 50))
  t.match(feed(withdrawal('w1', 'u1', 400)), { status: 'applied', balanceCents: 600 })
  t.match(feed(withdrawal('w2', 'u1', 601)), {
    status: 'rejected',
    reason: 'INSUFFICIENT_FUNDS',
    balanceCents: 600,
  })
  t.match(feed(withdrawal('w3', 'u1', 600)), { status: 'applied', balanceCents: 0 })
  t.match(feed(withdrawal('w4', 'nobody', 1)), {
    status: 'rejected',
    reason: 'INSUFFICIENT_FUNDS',
    balanceCents: 0,
  })
  t.equal(fold.balance('u2'), 50)
  t.equal(fold.balance('unknown'), 0, 'an unknown user has nothing')
  t.same(fold.totals(), {
    depositsCents: 1_050,
    withdrawalsCents: 1_000,
    stakesCents: 0,
    payoutsCents: 0,
    balancesCents: 50,
    openStakesCents: 0,
  })
  t.ok(checkLedgerSums(fold.totals()) && fold.invariantHolds())
  t.same(fold.counts(), { applied: 4, rejected: 2, ignored: 0, duplicate: 0, conflict: 0, malformed: 0 })
})

t.test('a bet debits its stake, and a bet the balance cannot cover is rejected and remembered', async (t) => {
  // Places a covered bet, then one a cent beyond the remaining balance, then settles the refused
  // one: the refusal is recorded on the bet so that its settlement is ignored, not paid.
  const { fold, feed } = feeder()
  feed(deposit('d1', 'u1', 1_000))
  t.match(feed(bet('b1', 'u1', 600, 2_500)), { status: 'applied', balanceCents: 400 })
  t.match(feed(bet('b2', 'u1', 401)), { status: 'rejected', reason: 'INSUFFICIENT_FUNDS', balanceCents: 400 })
  t.match(fold.bet('u1', 'b1'), { status: 'open', stakeCents: 600, odds: 2_500, placedSeq: 2, stamp: STAMP })
  t.match(fold.bet('u1', 'b2'), { status: 'rejected', reason: 'INSUFFICIENT_FUNDS', placedSeq: 3 })
  t.equal(fold.bet('u1', 'b3'), null)
  t.same(
    fold.openBets('u1').map((b) => b.betId),
    ['b1'],
  )
  t.same(fold.exposure('u1'), { openBets: 1, openStakesCents: 600, potentialPayoutCents: 1_500 })
  t.match(feed(settlement('s2', 'b2', 'u1', 'won', 2_000)), { status: 'ignored', reason: 'BET_NOT_OPEN' })
  t.equal(fold.balance('u1'), 400)
  t.match(fold.totals(), { stakesCents: 600, openStakesCents: 600, payoutsCents: 0, balancesCents: 400 })
  t.ok(fold.invariantHolds())
})

t.test('the open-stake limit a bet carries is enforced at its place in the ledger', async (t) => {
  // Three bets of 400 against a limit of 1,000 that each API node checked alone: the third, folded
  // after the other two, is refused whatever order they raced in; a settlement frees room again; a
  // bet without the field (an older node's) is not limited; a snapshot keeps the refusal.
  const { fold, feed } = feeder()
  const limited = (id: string, stakeCents: number) => ({
    ...bet(id, 'u1', stakeCents),
    openStakeLimitCents: 1_000,
  })
  feed(deposit('d1', 'u1', 10_000))
  t.match(feed(limited('b1', 400)), { status: 'applied' })
  t.match(feed(limited('b2', 400)), { status: 'applied' })
  t.match(feed(limited('b3', 400)), { status: 'rejected', reason: 'USER_STAKE_LIMIT', balanceCents: 9_200 })
  t.match(fold.bet('u1', 'b3'), { status: 'rejected', reason: 'USER_STAKE_LIMIT' })
  t.match(feed(limited('b4', 200)), { status: 'applied' }, 'exactly at the limit')
  t.match(feed(settlement('s1', 'b1', 'u1', 'lost')), { status: 'applied' })
  t.match(feed(limited('b5', 400)), { status: 'applied' }, 'a settled bet frees its room')
  t.match(feed(bet('b6', 'u1', 400)), { status: 'applied' }, 'no limit field, no limit')
  t.match(feed({ ...bet('b7', 'u1', 10), openStakeLimitCents: 0 }), {
    status: 'rejected',
    reason: 'MALFORMED',
  })
  const restored = createLedgerFold(roundTrip(fold.toJSON()))
  t.same(money(restored), money(fold), 'a snapshot keeps the limited bets and the refusal')
  t.ok(fold.invariantHolds())
})

t.test('a market’s liability limit is enforced at its place, at the odds offered, per game', async (t) => {
  // Bets of three users on one market, each carrying the shard's allowance of 1,000 and the price
  // offered at its stamp (2.00: a stake of 400 risks 400). The third is refused whatever order the
  // bets raced in; the client's asked odds (1000.00 under "any") count for nothing; the same market
  // id in another game has its own room; a settlement frees room; a snapshot rebuilds the sums.
  const { fold, feed } = feeder()
  const onMarket = (id: string, userId: string, stakeCents: number, gameId = 'match-1') => ({
    ...bet(id, userId, stakeCents, ODDS_MAX),
    gameId,
    policy: 'any',
    offeredOdds: 2_000,
    marketLiabilityLimitCents: 1_000,
  })
  for (const userId of ['u1', 'u2', 'u3']) feed(deposit(`d-${userId}`, userId, 10_000))
  t.match(feed(onMarket('b1', 'u1', 400)), { status: 'applied' })
  t.equal(fold.marketLiability('match-1', 'point-1'), 400, 'counted at the offered 2.00, not at 1000.00')
  t.match(feed(onMarket('b2', 'u2', 400)), { status: 'applied' })
  t.match(feed(onMarket('b3', 'u3', 400)), {
    status: 'rejected',
    reason: 'MARKET_LIABILITY_LIMIT',
    balanceCents: 10_000,
  })
  t.match(feed(onMarket('b4', 'u3', 200)), { status: 'applied' }, 'exactly at the limit')
  t.match(feed(onMarket('b5', 'u3', 400, 'match-2')), { status: 'applied' }, 'another game, its own room')
  t.equal(fold.marketLiability('match-2', 'point-1'), 400)
  t.match(
    feed({ ...onMarket('b6', 'u3', 10), offeredOdds: undefined }),
    { status: 'applied' },
    'no price, no liability',
  )
  t.equal(fold.marketLiability('match-1', 'point-1'), 1_000)
  const restored = createLedgerFold(roundTrip(fold.toJSON()))
  t.equal(restored.marketLiability('match-1', 'point-1'), 1_000, 'a snapshot rebuilds the liability')
  t.ok(restored.invariantHolds())
  t.match(feed(settlement('s1', 'b1', 'u1', 'won', 2_000)), { status: 'applied' })
  t.equal(fold.marketLiability('match-1', 'point-1'), 600, 'a settlement frees its bet’s room')
  t.match(feed(onMarket('b7', 'u3', 400)), { status: 'applied' })
  t.match(feed({ ...onMarket('b8', 'u3', 10), offeredOdds: ODDS_MAX + 1 }), { reason: 'MALFORMED' })
  t.ok(fold.invariantHolds())
})

t.test('settlements pay won, lost, void and rejected bets as the rules say', async (t) => {
  // Settles four bets with the four outcomes; a won bet pays at the settlement's odds rounded down
  // to the cent, a lost bet nothing, void and rejected refund the stake. Exposure drains to zero.
  const { fold, feed } = feeder()
  feed(deposit('d1', 'u1', 10_000))
  for (const id of ['won', 'lost', 'void', 'rejected']) feed(bet(`b-${id}`, 'u1', 333, 1_500))
  t.equal(fold.balance('u1'), 10_000 - 4 * 333)
  // 333 × 1.501 = 499.833: the player gets 499 cents.
  t.match(feed(settlement('s1', 'b-won', 'u1', 'won', 1_501)), {
    status: 'applied',
    balanceCents: 8_668 + 499,
  })
  t.match(feed(settlement('s2', 'b-lost', 'u1', 'lost')), { status: 'applied', balanceCents: 9_167 })
  t.match(feed(settlement('s3', 'b-void', 'u1', 'void')), { status: 'applied', balanceCents: 9_500 })
  t.match(feed(settlement('s4', 'b-rejected', 'u1', 'rejected', 1_900)), { balanceCents: 9_833 })
  t.match(fold.bet('u1', 'b-won'), {
    status: 'settled',
    outcome: 'won',
    settledOdds: 1_501,
    payoutCents: 499,
  })
  t.match(fold.bet('u1', 'b-lost'), { status: 'settled', payoutCents: 0, settlementId: 's2', settledSeq: 7 })
  t.match(fold.bet('u1', 'b-void'), { status: 'settled', payoutCents: 333, settledOdds: 1_500 })
  t.same(fold.exposure('u1'), { openBets: 0, openStakesCents: 0, potentialPayoutCents: 0 })
  t.match(fold.totals(), { stakesCents: 1_332, payoutsCents: 499 + 333 + 333, openStakesCents: 0 })
  t.ok(fold.invariantHolds())
})

t.test(
  'payoutCents is exact integer arithmetic up to the limits and refuses values beyond them',
  async (t) => {
    // Checks the largest payout, rounding, and every outcome; then compares with BigInt arithmetic
    // over the whole stake × odds range, and checks the refusals of out-of-range arguments.
    t.equal(payoutCents(STAKE_CENTS_MAX, ODDS_MAX, 'won'), PAYOUT_CENTS_MAX)
    t.equal(payoutCents(1, ODDS_MIN, 'won'), 1)
    t.equal(payoutCents(999, 1_001, 'won'), 999, '999.999 rounds down')
    t.equal(payoutCents(500, 3_000, 'lost'), 0)
    t.equal(payoutCents(500, 3_000, 'void'), 500)
    t.equal(payoutCents(500, 3_000, 'rejected'), 500)
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: STAKE_CENTS_MAX }),
        fc.integer({ min: ODDS_MIN, max: ODDS_MAX }),
        (stake, odds) => BigInt(payoutCents(stake, odds, 'won')) === (BigInt(stake) * BigInt(odds)) / 1000n,
      ),
      { numRuns: 2_000 },
    )
    for (const [stake, odds] of [
      [0, 2_000],
      [STAKE_CENTS_MAX + 1, 2_000],
      [1.5, 2_000],
      [100, ODDS_MIN - 1],
      [100, ODDS_MAX + 1],
      [100, Number.NaN],
    ] as const) {
      t.throws(() => payoutCents(stake, odds, 'won'), RangeError, `stake ${stake}, odds ${odds}`)
    }
  },
)

t.test(
  'a bet is paid at most once: a repeated settlement is a duplicate, another one is ignored',
  async (t) => {
    // Settles a bet, then replays the same settlement (same id, same body) and sends two more with
    // other ids and outcomes: only the first pays; the replay reports the first verdict.
    const { fold, feed } = feeder()
    feed(deposit('d1', 'u1', 1_000))
    feed(bet('b1', 'u1', 100, 3_000))
    t.match(feed(settlement('s1', 'b1', 'u1', 'won', 3_000)), { status: 'applied', balanceCents: 1_200 })
    t.same(feed(settlement('s1', 'b1', 'u1', 'won', 3_000)), {
      entryId: 's1',
      userId: 'u1',
      balanceCents: 1_200,
      status: 'duplicate',
      reason: null,
      original: 'applied',
      duplicateOf: 3,
    })
    t.match(feed(settlement('s2', 'b1', 'u1', 'void')), { status: 'ignored', reason: 'ALREADY_SETTLED' })
    t.match(feed(settlement('s3', 'b1', 'u1', 'won', 9_000)), {
      status: 'ignored',
      reason: 'ALREADY_SETTLED',
    })
    t.equal(fold.balance('u1'), 1_200)
    t.equal(fold.totals().payoutsCents, 300)
    t.match(fold.bet('u1', 'b1'), { settlementId: 's1', settledSeq: 3, payoutCents: 300 })
    t.match(fold.counts(), { applied: 3, ignored: 2, duplicate: 1 })
  },
)

t.test('a retried placement with the same id and body reports the original verdict', async (t) => {
  // A placement refused for funds is retried after a deposit, once as is and once re-serialised by
  // another node (keys in another order, an unknown field): both are duplicates that report the
  // refusal and debit nothing. An accepted placement retried reports its acceptance, debiting once.
  const { fold, feed } = feeder()
  feed(deposit('d1', 'u1', 100))
  t.match(feed(bet('b1', 'u1', 500)), { status: 'rejected', reason: 'INSUFFICIENT_FUNDS' })
  feed(deposit('d2', 'u1', 1_000))
  t.same(feed(bet('b1', 'u1', 500)), {
    entryId: 'b1',
    userId: 'u1',
    balanceCents: 1_100,
    status: 'duplicate',
    reason: 'INSUFFICIENT_FUNDS',
    original: 'rejected',
    duplicateOf: 2,
  })
  const reordered = Object.fromEntries(Object.entries({ ...bet('b1', 'u1', 500), via: 'api-2' }).reverse())
  t.match(feed(reordered), { status: 'duplicate', original: 'rejected', duplicateOf: 2 })
  t.match(feed(bet('b2', 'u1', 300)), { status: 'applied', balanceCents: 800 })
  t.match(feed(bet('b2', 'u1', 300)), {
    status: 'duplicate',
    original: 'applied',
    reason: null,
    balanceCents: 800,
  })
  t.equal(fold.totals().stakesCents, 300)
  t.match(fold.bet('u1', 'b1'), { status: 'rejected' })
})

t.test('an id reused with another body is a conflict and changes nothing', async (t) => {
  // Reuses a bet id with another stake, a settlement id and a deposit id with other bodies: every
  // one is refused with ID_REUSED, naming the first sequence, and the money state stays the same.
  const { fold, feed } = feeder()
  feed(deposit('d1', 'u1', 1_000))
  feed(bet('b1', 'u1', 100))
  feed(settlement('s1', 'b-none', 'u1', 'void'))
  const before = money(fold)
  t.same(feed(bet('b1', 'u1', 200)), {
    entryId: 'b1',
    userId: 'u1',
    balanceCents: 900,
    status: 'conflict',
    reason: 'ID_REUSED',
    conflictsWith: 2,
  })
  t.match(feed(settlement('s1', 'b-other', 'u1', 'void')), { status: 'conflict', conflictsWith: 3 })
  t.match(feed(deposit('d1', 'u1', 1_001)), { status: 'conflict', conflictsWith: 1 })
  t.same(money(fold), before)
  t.match(fold.counts(), { conflict: 3 })
})

t.test('an id is scoped by its kind and its user: no one shadows another’s entry', async (t) => {
  // Two users place bets of one id in one shard, and one user names a bet after a deposit: each is
  // an entry of its own. A settlement names its user's bet, so one for u2 finds no bet of u1's.
  const { fold, feed } = feeder()
  feed(deposit('d1', 'u1', 1_000))
  feed(deposit('d1', 'u2', 1_000))
  t.match(feed(bet('b1', 'u1', 100)), { status: 'applied', balanceCents: 900 })
  t.match(feed(bet('b1', 'u2', 300)), { status: 'applied', balanceCents: 700 })
  t.match(feed(bet('d1', 'u1', 10)), { status: 'applied', balanceCents: 890 })
  t.match(fold.bet('u1', 'b1'), { userId: 'u1', stakeCents: 100 })
  t.match(fold.bet('u2', 'b1'), { userId: 'u2', stakeCents: 300 })
  t.match(feed(settlement('settle/b1', 'b1', 'u2', 'void')), { status: 'applied', balanceCents: 1_000 })
  t.match(fold.bet('u1', 'b1'), { status: 'open' }, 'u1’s bet is untouched')
  t.match(feed(settlement('s9', 'b9', 'u2', 'void')), { status: 'rejected', reason: 'UNKNOWN_BET' })
  t.equal(fold.counts().conflict, 0)
  const restored = createLedgerFold(JSON.parse(JSON.stringify(fold.toJSON())))
  t.equal(restored.stateHash(), fold.stateHash(), 'and a snapshot keeps them apart')
  t.match(restored.bet('u2', 'b1'), { status: 'settled' })
})

t.test('settlements of unknown bets or of another user’s bet are rejected', async (t) => {
  // A settlement naming a bet the shard never saw, or naming the wrong user, pays nothing: bets are
  // keyed by their user, so the wrong user's settlement finds no bet.
  const { fold, feed } = feeder()
  feed(deposit('d1', 'u1', 1_000))
  feed(bet('b1', 'u1', 100))
  t.match(feed(settlement('s1', 'nope', 'u1', 'void')), { status: 'rejected', reason: 'UNKNOWN_BET' })
  t.match(feed(settlement('s2', 'b1', 'u2', 'void')), {
    status: 'rejected',
    reason: 'UNKNOWN_BET',
    userId: 'u2',
    balanceCents: 0,
  })
  t.match(fold.bet('u1', 'b1'), { status: 'open' })
  t.equal(fold.balance('u1'), 900)
})

/** Values a broken or hostile writer could append; every one must be refused as malformed. */
function hostileValues(): [string, unknown][] {
  const long = 'x'.repeat(ENTRY_ID_LENGTH_MAX + 1)
  const inherited = Object.create({ type: 'deposit', id: 'h1', userId: 'u1', amountCents: 5 }) as object
  const getter = Object.defineProperty({ type: 'deposit', id: 'h2', userId: 'u1' }, 'amountCents', {
    enumerable: true,
    get: () => 5,
  })
  class Deposit {
    type = 'deposit'
    id = 'h3'
    userId = 'u1'
    amountCents = 5
  }
  return [
    ['null', null],
    ['a number', 42],
    ['a string', JSON.stringify(deposit('h4', 'u1', 5))],
    ['an array', [deposit('h5', 'u1', 5)]],
    ['an empty object', {}],
    ['an unknown type', { ...deposit('h6', 'u1', 5), type: 'gift' }],
    ['a missing amount', { type: 'deposit', id: 'h7', userId: 'u1' }],
    ['a string amount', { ...deposit('h8', 'u1', 5), amountCents: '5' }],
    ['a negative amount', deposit('h9', 'u1', -5)],
    ['a zero amount', deposit('h10', 'u1', 0)],
    ['a fractional amount', deposit('h11', 'u1', 5.5)],
    ['a NaN amount', deposit('h12', 'u1', Number.NaN)],
    ['an infinite amount', deposit('h13', 'u1', Number.POSITIVE_INFINITY)],
    ['an amount past the limit', deposit('h14', 'u1', AMOUNT_CENTS_MAX + 1)],
    ['a huge amount', deposit('h15', 'u1', 1e300)],
    ['a too long id', deposit(long, 'u1', 5)],
    ['a too long user id', deposit('h16', 'u'.repeat(USER_ID_LENGTH_MAX + 1), 5)],
    ['an empty id', deposit('', 'u1', 5)],
    ['an id with a space', deposit('h 17', 'u1', 5)],
    ['an id with a subject wildcard', deposit('h18.>', 'u1', 5)],
    ['a non-ASCII id', deposit('hé', 'u1', 5)],
    ['a stake past the limit', bet('h19', 'u1', STAKE_CENTS_MAX + 1)],
    ['odds below the minimum', bet('h20', 'u1', 5, ODDS_MIN - 1)],
    ['odds above the maximum', bet('h21', 'u1', 5, ODDS_MAX + 1)],
    ['an unknown policy', { ...bet('h22', 'u1', 5), policy: 'whatever' }],
    ['a stamp with a space', { ...bet('h23', 'u1', 5), stamp: 'a b' }],
    ['a negative placement time', { ...bet('h24', 'u1', 5), placedAtMs: -1 }],
    ['a won settlement without odds', settlement('h25', 'b1', 'u1', 'won')],
    ['odds of null', { ...settlement('h26', 'b1', 'u1', 'void'), odds: null }],
    ['an unknown outcome', settlement('h27', 'b1', 'u1', 'half-won' as SettlementOutcome, 2_000)],
    [
      'a JSON __proto__ carrying the amount',
      JSON.parse('{"type":"deposit","id":"h28","userId":"u1","__proto__":{"amountCents":5}}'),
    ],
    [
      'a JSON __proto__ beside valid fields',
      JSON.parse('{"type":"deposit","id":"h29","userId":"u1","amountCents":5,"__proto__":{"admin":true}}'),
    ],
    ['a constructor key', { ...deposit('h30', 'u1', 5), constructor: { prototype: { admin: true } } }],
    ['inherited fields', inherited],
    ['a getter', getter],
    ['a class instance', new Deposit()],
    ['a Map', new Map(Object.entries(deposit('h31', 'u1', 5)))],
  ]
}

t.test('malformed and hostile entries are rejected as MALFORMED and change nothing', async (t) => {
  // Feeds each hostile value into a fold holding a deposit, a bet and a settlement, and checks
  // the result is MALFORMED with no id or user, the money state is untouched, nothing leaked onto
  // Object.prototype, and only the malformed counter and the sequence moved.
  const { fold, feed } = feeder()
  feed(deposit('d1', 'u1', 1_000))
  feed(bet('b1', 'u1', 100))
  feed(settlement('s1', 'b1', 'u1', 'won', 2_000))
  const before = money(fold)
  const values = hostileValues()
  for (const [name, value] of values) {
    t.same(
      feed(value),
      { entryId: null, userId: null, balanceCents: null, status: 'rejected', reason: 'MALFORMED' },
      name,
    )
    t.equal(parseLedgerEntry(value), null, `parse refuses ${name}`)
  }
  t.same(money(fold), before, 'no money moved')
  t.equal(fold.lastSeq(), 3 + values.length)
  t.match(fold.counts(), { malformed: values.length, rejected: values.length, applied: 3 })
  t.equal(({} as Record<string, unknown>).admin, undefined, 'Object.prototype is clean')
  t.equal(({} as Record<string, unknown>).amountCents, undefined)
})

t.test('anything at all is either a valid entry or MALFORMED, and never throws', async (t) => {
  // fast-check's anything() (objects with odd keys, nested values, special numbers) is folded
  // into a funded fold: apply never throws, and a MALFORMED result leaves the money untouched.
  const { fold, feed } = feeder()
  feed(deposit('d1', 'u1', 1_000))
  fc.assert(
    fc.property(fc.anything({ withNullPrototype: true, withObjectString: true }), (value) => {
      const before = JSON.stringify(money(fold))
      const result = feed(value)
      return result.reason !== 'MALFORMED' || JSON.stringify(money(fold)) === before
    }),
    { numRuns: 500 },
  )
  t.ok(fold.invariantHolds())
})

t.test('parseLedgerEntry rebuilds entries in canonical key order without unknown fields', async (t) => {
  // Shuffled keys and extra fields parse to the same canonical object, and an optional settlement
  // odds field is left out rather than set to undefined.
  const shuffled = { amountCents: 5, extra: true, userId: 'u1', id: 'd1', type: 'deposit' }
  t.equal(JSON.stringify(parseLedgerEntry(shuffled)), JSON.stringify(deposit('d1', 'u1', 5)))
  const parsedBet = parseLedgerEntry({ note: 'x', ...bet('b1', 'u1', 5) })
  t.same(Object.keys(parsedBet ?? {}), Object.keys(bet('b1', 'u1', 5)))
  t.same(Object.keys(parseLedgerEntry(settlement('s1', 'b1', 'u1', 'lost')) ?? {}), [
    'type',
    'id',
    'betId',
    'userId',
    'outcome',
  ])
  t.same(
    parseLedgerEntry(settlement('s1', 'b1', 'u1', 'void', 1_800)),
    settlement('s1', 'b1', 'u1', 'void', 1_800),
  )
})

t.test('stream sequences must strictly increase', async (t) => {
  // Non-increasing, zero, fractional and non-finite sequences throw a RangeError and leave the
  // fold where it was; the next valid sequence, even after a gap, folds normally.
  const fold = createLedgerFold()
  t.throws(() => fold.apply(deposit('d0', 'u1', 5), 0), RangeError)
  fold.apply(deposit('d1', 'u1', 5), 5)
  for (const seq of [5, 4, 5.5, Number.NaN, Number.POSITIVE_INFINITY, -1]) {
    t.throws(() => fold.apply(deposit('d2', 'u1', 5), seq), RangeError, `seq ${seq}`)
  }
  t.equal(fold.lastSeq(), 5)
  t.equal(fold.balance('u1'), 5)
  t.match(fold.apply(deposit('d2', 'u1', 5), 9), [{ status: 'applied', balanceCents: 10 }])
  t.equal(fold.lastSeq(), 9)
})

t.test('sums that would leave exact integer range are refused with LEDGER_LIMIT', async (t) => {
  // Restores a consistent snapshot whose deposits sit just below the inflow bound and deposits
  // past it; then, in a fresh fold, places maximal bets at the largest odds until one user's
  // potential payout reaches its bound: a further bet is refused (and ignored on settlement)
  // until a settlement frees room.
  const { fold: seed, feed } = feeder()
  feed(deposit('d1', 'u1', 1))
  const near = LEDGER_INFLOW_CENTS_MAX - 10
  const snapshot = seed.toJSON()
  const tampered: LedgerSnapshot = {
    ...snapshot,
    flows: { ...snapshot.flows, depositsCents: near },
    balances: [{ userId: 'u1', balanceCents: near }],
  }
  const restored = feeder(createLedgerFold(roundTrip(tampered)))
  t.match(restored.feed(deposit('d2', 'u1', 11)), { status: 'rejected', reason: 'LEDGER_LIMIT' })
  t.match(restored.feed(deposit('d3', 'u1', 10)), {
    status: 'applied',
    balanceCents: LEDGER_INFLOW_CENTS_MAX,
  })
  t.ok(restored.fold.invariantHolds())

  const whale = feeder()
  whale.feed(deposit('d1', 'whale', AMOUNT_CENTS_MAX))
  whale.feed(deposit('d2', 'whale', AMOUNT_CENTS_MAX))
  const limit = POTENTIAL_PAYOUT_CENTS_MAX / PAYOUT_CENTS_MAX
  for (let i = 0; i < limit; i++) whale.feed(bet(`b${i}`, 'whale', STAKE_CENTS_MAX, ODDS_MAX))
  t.equal(whale.fold.exposure('whale').potentialPayoutCents, POTENTIAL_PAYOUT_CENTS_MAX)
  t.match(whale.feed(bet('over', 'whale', 1, ODDS_MIN)), { status: 'rejected', reason: 'LEDGER_LIMIT' })
  t.match(whale.fold.bet('whale', 'over'), { status: 'rejected', reason: 'LEDGER_LIMIT' })
  t.match(whale.feed(settlement('s', 'over', 'whale', 'void')), { status: 'ignored', reason: 'BET_NOT_OPEN' })
  whale.feed(settlement('s0', 'b0', 'whale', 'lost'))
  t.match(whale.feed(bet('fits', 'whale', 1, ODDS_MIN)), { status: 'applied' }, 'a settled bet frees room')
  t.ok(whale.fold.invariantHolds())
})

t.test('a snapshot restores an identical fold, and a tampered snapshot is refused', async (t) => {
  // Round-trips a fold with every kind of entry through JSON and compares snapshots, hashes and
  // the next results; then breaks the snapshot in several ways that restore must detect.
  const { fold, feed } = feeder()
  feed(deposit('d1', 'u1', 1_000))
  feed(deposit('d2', 'u2', 500))
  feed(bet('b1', 'u1', 300, 1_800))
  feed(bet('b2', 'u2', 900))
  feed(bet('b3', 'u1', 200))
  feed(settlement('s1', 'b1', 'u1', 'won', 1_900))
  feed(withdrawal('w1', 'u2', 100))
  feed({ junk: true })
  feed(bet('b1', 'u1', 300, 1_800))
  const snapshot = roundTrip(fold.toJSON())
  const restored = createLedgerFold(snapshot)
  t.same(restored.toJSON(), fold.toJSON())
  t.equal(JSON.stringify(restored.toJSON()), JSON.stringify(fold.toJSON()), 'same canonical text')
  t.equal(restored.stateHash(), fold.stateHash())
  t.same(restored.exposure('u1'), fold.exposure('u1'))
  t.same(restored.counts(), fold.counts())
  t.same(restored.totals(), fold.totals())
  t.equal(restored.lastSeq(), fold.lastSeq())
  t.same(restored.openBets('u1'), fold.openBets('u1'))
  const next = settlement('s2', 'b3', 'u1', 'void')
  t.same(restored.apply(next, 20), fold.apply(next, 20))
  t.equal(restored.stateHash(), fold.stateHash())

  const broken: [string, (s: LedgerSnapshot) => unknown][] = [
    ['another version', (s) => ({ ...s, version: 1 })],
    ['a balance changed', (s) => ({ ...s, balances: s.balances.map((b) => ({ ...b, balanceCents: 1 })) })],
    ['a payout changed', (s) => ({ ...s, flows: { ...s.flows, payoutsCents: s.flows.payoutsCents + 1 } })],
    ['entries out of order', (s) => ({ ...s, entries: [...s.entries].reverse() })],
    ['an entry past lastSeq', (s) => ({ ...s, lastSeq: 1 })],
    ['a bet without its entry', (s) => ({ ...s, entries: s.entries.filter((e) => e.key !== 'bet/u2/b2') })],
    [
      'a settled bet re-opened',
      (s) => ({ ...s, bets: s.bets.map((b) => (b.betId === 'b1' ? { ...b, status: 'open' } : b)) }),
    ],
    [
      'a bogus payout',
      (s) => ({ ...s, bets: s.bets.map((b) => (b.betId === 'b1' ? { ...b, payoutCents: 1 } : b)) }),
    ],
    [
      'a polluted record',
      (s) => JSON.parse(JSON.stringify(s).replace('"lastSeq"', '"__proto__":{},"lastSeq"')),
    ],
    ['not an object', () => 'snapshot'],
  ]
  for (const [name, breakIt] of broken) {
    t.throws(() => createLedgerFold(breakIt(roundTrip(fold.toJSON()))), TypeError, name)
  }
})

// ---------------------------------------------------------------------------------------------
// A reference model and a generator of mixed sequences for the property tests

const USERS = ['u1', 'u2', 'u3']

type Command =
  | { readonly kind: 'deposit' | 'withdrawal'; readonly user: number; readonly amount: number }
  | { readonly kind: 'bet'; readonly user: number; readonly stake: number; readonly odds: number }
  | {
      readonly kind: 'settle'
      readonly ref: number
      readonly outcome: SettlementOutcome
      readonly odds: number
      readonly wrongUser: boolean
    }
  | { readonly kind: 'repeat' | 'reuse' | 'foreign'; readonly ref: number }
  | { readonly kind: 'junk'; readonly value: unknown }

const user = fc.nat({ max: USERS.length - 1 })
const odds = fc.integer({ min: ODDS_MIN, max: 4_000 })
const command: fc.Arbitrary<Command> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('deposit' as const),
      user,
      amount: fc.integer({ min: 1, max: 3_000 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('withdrawal' as const),
      user,
      amount: fc.integer({ min: 1, max: 2_000 }),
    }),
  },
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('bet' as const),
      user,
      stake: fc.integer({ min: 1, max: 2_500 }),
      odds,
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('settle' as const),
      ref: fc.nat(),
      outcome: fc.constantFrom(...OUTCOMES),
      odds,
      wrongUser: fc.nat({ max: 9 }).map((n) => n === 0),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constantFrom('repeat' as const, 'reuse' as const, 'foreign' as const),
      ref: fc.nat(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('junk' as const), value: fc.anything({ maxDepth: 1 }) }),
  },
)

const other = (userId: string) => (userId === 'u1' ? 'u2' : 'u1')

interface Materialized {
  readonly bodies: object[]
  readonly bets: BetEntry[]
}

function changedBody(body: object): object {
  if ('amountCents' in body) return { ...body, amountCents: (body.amountCents as number) + 1 }
  if ('stakeCents' in body) return { ...body, stakeCents: (body.stakeCents as number) + 1 }
  const { odds: _odds, ...rest } = body as { odds?: number; outcome: string }
  return { ...rest, outcome: rest.outcome === 'void' ? 'lost' : 'void' }
}

/** The stream value of one command, or undefined when it has nothing to refer to yet. */
function valueFor(cmd: Command, i: number, { bodies, bets }: Materialized): unknown {
  const earlier = bodies[('ref' in cmd ? cmd.ref : 0) % Math.max(bodies.length, 1)]
  switch (cmd.kind) {
    case 'deposit':
      return deposit(`d${i}`, USERS[cmd.user] ?? 'u1', cmd.amount)
    case 'withdrawal':
      return withdrawal(`w${i}`, USERS[cmd.user] ?? 'u1', cmd.amount)
    case 'bet': {
      // Offered at the odds taken, so every open bet counts in its market's liability too.
      const placed = { ...bet(`b${i}`, USERS[cmd.user] ?? 'u1', cmd.stake, cmd.odds), offeredOdds: cmd.odds }
      bets.push(placed)
      return placed
    }
    case 'settle': {
      const target = bets[cmd.ref % (bets.length + 1)]
      const userId = target === undefined ? 'u1' : cmd.wrongUser ? other(target.userId) : target.userId
      const withOdds = cmd.outcome === 'won' || cmd.ref % 2 === 0
      return settlement(
        `s${i}`,
        target?.id ?? 'missing',
        userId,
        cmd.outcome,
        withOdds ? cmd.odds : undefined,
      )
    }
    case 'repeat':
      // A retry: the same body again, as another node would serialise it.
      return earlier && roundTrip(earlier)
    case 'reuse':
      // The same kind, user and id with another body.
      return earlier && changedBody(earlier)
    case 'foreign':
      // Another user's entry of the same kind and id: an entry of its own.
      return earlier && { ...earlier, userId: other(String((earlier as { userId: unknown }).userId)) }
    case 'junk':
      return cmd.value
  }
}

/** Turn commands into stream values; ids derive from the command's index, so they are unique. */
function materialize(commands: readonly Command[]): unknown[] {
  const context: Materialized = { bodies: [], bets: [] }
  const values: unknown[] = []
  commands.forEach((cmd, i) => {
    const value = valueFor(cmd, i, context)
    if (value === undefined) return
    values.push(value)
    if (cmd.kind === 'deposit' || cmd.kind === 'withdrawal' || cmd.kind === 'bet' || cmd.kind === 'settle')
      context.bodies.push(value as object)
  })
  return values
}

interface Expected {
  readonly entryId: string | null
  readonly status: string
  readonly reason: string | null
  readonly userId: string | null
  readonly balanceCents: number | null
}

interface ModelBet {
  readonly userId: string
  readonly stakeCents: number
  readonly odds: number
  state: 'open' | 'refused' | 'settled'
}

type ModelVerdict = { status: string; reason: string | null }

/** The rules of the ledger, written as plainly as possible, without the module's own helpers. */
function modelVerdict(
  entry: NonNullable<ReturnType<typeof parseLedgerEntry>>,
  balances: Map<string, number>,
  bets: Map<string, ModelBet>,
): ModelVerdict {
  const balance = balances.get(entry.userId) ?? 0
  const ok = (next: number) => {
    balances.set(entry.userId, next)
    return { status: 'applied', reason: null }
  }
  switch (entry.type) {
    case 'deposit':
      return ok(balance + entry.amountCents)
    case 'withdrawal':
      return entry.amountCents > balance
        ? { status: 'rejected', reason: 'INSUFFICIENT_FUNDS' }
        : ok(balance - entry.amountCents)
    case 'bet': {
      const refused = entry.stakeCents > balance
      bets.set(`${entry.userId}/${entry.id}`, {
        userId: entry.userId,
        stakeCents: entry.stakeCents,
        odds: entry.odds,
        state: refused ? 'refused' : 'open',
      })
      return refused ? { status: 'rejected', reason: 'INSUFFICIENT_FUNDS' } : ok(balance - entry.stakeCents)
    }
    case 'settlement': {
      // Bets are the user's own: another user's bet of that id is unknown here.
      const target = bets.get(`${entry.userId}/${entry.betId}`)
      if (target === undefined) return { status: 'rejected', reason: 'UNKNOWN_BET' }
      if (target.state === 'refused') return { status: 'ignored', reason: 'BET_NOT_OPEN' }
      if (target.state === 'settled') return { status: 'ignored', reason: 'ALREADY_SETTLED' }
      target.state = 'settled'
      const won = Math.floor((target.stakeCents * (entry.odds ?? target.odds)) / 1000)
      return ok(balance + (entry.outcome === 'won' ? won : entry.outcome === 'lost' ? 0 : target.stakeCents))
    }
    case 'allowance-grant':
    case 'allowance-receipt':
      throw new Error('the model covers the entries of users only (allowance.test.ts covers the rest)')
  }
}

function modelResults(values: readonly unknown[]): Expected[] {
  const balances = new Map<string, number>()
  const bets = new Map<string, ModelBet>()
  const seen = new Map<string, ModelVerdict & { body: string }>()
  return values.map((value) => {
    const entry = parseLedgerEntry(value)
    if (entry === null)
      return { entryId: null, status: 'rejected', reason: 'MALFORMED', userId: null, balanceCents: null }
    const body = JSON.stringify(entry)
    // An id names one body per kind and user.
    const key = `${entry.type}/${entry.userId}/${entry.id}`
    const first = seen.get(key)
    let verdict: ModelVerdict
    if (first === undefined) {
      verdict = modelVerdict(entry, balances, bets)
      seen.set(key, { body, ...verdict })
    } else {
      verdict =
        first.body === body
          ? { status: 'duplicate', reason: first.reason }
          : { status: 'conflict', reason: 'ID_REUSED' }
    }
    return {
      entryId: entry.id,
      ...verdict,
      userId: entry.userId,
      balanceCents: balances.get(entry.userId) ?? 0,
    }
  })
}

const essence = ({ entryId, status, reason, userId, balanceCents }: FoldResult): Expected => ({
  entryId,
  status,
  reason,
  userId,
  balanceCents,
})

/** Tallies of result reasons across every run of a property, to prove the cases were exercised. */
function tally() {
  const counts = new Map<string, number>()
  return {
    add(result: FoldResult, tag = '') {
      const key = `${tag}${result.status}:${result.reason ?? ''}`
      counts.set(key, (counts.get(key) ?? 0) + 1)
    },
    get: (key: string) => counts.get(key) ?? 0,
    toString: () => JSON.stringify(Object.fromEntries([...counts].sort())),
  }
}

const reversedKeys = (value: unknown): unknown =>
  typeof value === 'object' && value !== null && !Array.isArray(value)
    ? Object.fromEntries(Object.entries(roundTrip(value)).reverse())
    : value

// ---------------------------------------------------------------------------------------------
// Properties

const stakeAndOdds = fc.record({ stake: fc.integer({ min: 1, max: 1_500 }), odds })

t.test('property: any interleaving of two API nodes’ bets folds identically on two nodes', async (t) => {
  // Two API nodes each append a list of bets for one user while payments append deposits; any
  // interleaving of the three lists, with retries of earlier entries spliced in, is folded by two
  // independent folds (the second receives every value re-serialised with its keys reversed). Both
  // give identical results per entry, identical snapshots and state hashes, and the reference
  // model's verdicts; the tallies show that funds refusals and retried refusals did happen.
  const seen = tally()
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 100, max: 2_500 }), { minLength: 1, maxLength: 4 }),
      fc.array(stakeAndOdds, { maxLength: 15, size: 'max' }),
      fc.array(stakeAndOdds, { maxLength: 15, size: 'max' }),
      fc.array(fc.nat({ max: 2 }), { maxLength: 40, size: 'max' }),
      fc.array(fc.record({ at: fc.nat(), of: fc.nat() }), { maxLength: 8, size: 'max' }),
      (amounts, nodeA, nodeB, schedule, retries) => {
        const queues: unknown[][] = [
          amounts.map((amount, i) => deposit(`pay-${i}`, 'u1', amount)),
          nodeA.map(({ stake, odds }, i) => bet(`api-a:${i}`, 'u1', stake, odds)),
          nodeB.map(({ stake, odds }, i) => bet(`api-b:${i}`, 'u1', stake, odds)),
        ]
        const values = interleave(queues, schedule)
        for (const { at, of } of retries) {
          const position = at % (values.length + 1)
          if (position > 0) values.splice(position, 0, roundTrip(values[of % position]))
        }
        const one = createLedgerFold()
        const two = createLedgerFold()
        const first = values.map((value, i) => only(one.apply(value, i + 1)))
        const second = values.map((value, i) => only(two.apply(reversedKeys(value), i + 1)))
        assert.deepEqual(second, first)
        assert.equal(two.stateHash(), one.stateHash())
        assert.deepEqual(two.toJSON(), one.toJSON())
        assert.deepEqual(first.map(essence), modelResults(values))
        for (const result of first)
          seen.add(result, result.status === 'duplicate' && 'original' in result ? `${result.original}-` : '')
      },
    ),
    { numRuns: 1_000 },
  )
  t.ok(seen.get('rejected:INSUFFICIENT_FUNDS') > 50, `bets refused for funds: ${seen}`)
  t.ok(seen.get('applied:') > 500, 'bets and deposits applied')
  t.ok(seen.get('rejected-duplicate:INSUFFICIENT_FUNDS') > 5, 'retries of refused bets reported refused')
  t.ok(seen.get('applied-duplicate:') > 20, 'retries of accepted entries reported applied')
})

/** Merge the queues in the order the schedule picks, falling back to the next non-empty queue. */
function interleave(queues: readonly unknown[][], schedule: readonly number[]): unknown[] {
  const cursors = queues.map(() => 0)
  const total = queues.reduce((sum, queue) => sum + queue.length, 0)
  const merged: unknown[] = []
  for (let step = 0; merged.length < total; step++) {
    let q = schedule[step] ?? step % queues.length
    while ((cursors[q] ?? 0) >= (queues[q]?.length ?? 0)) q = (q + 1) % queues.length
    merged.push(queues[q]?.[cursors[q] ?? 0])
    cursors[q] = (cursors[q] ?? 0) + 1
  }
  return merged
}

t.test('property: balances never go negative and the sums balance after every entry', async (t) => {
  // Folds random mixes of deposits, withdrawals, bets, settlements (some of unknown bets or the
  // wrong user), retries, reused ids and junk for three users. After every entry: every balance is
  // non-negative, checkLedgerSums holds, invariantHolds recomputes every sum from scratch, and the
  // result equals the reference model's. The tallies show every rule was exercised.
  const seen = tally()
  fc.assert(
    fc.property(fc.array(command, { maxLength: 80, size: 'max' }), (commands) => {
      const values = materialize(commands)
      const expected = modelResults(values)
      const fold = createLedgerFold()
      values.forEach((value, i) => {
        const result = only(fold.apply(value, i + 1))
        seen.add(result)
        assert.deepEqual(essence(result), expected[i])
        for (const userId of USERS) assert.ok(fold.balance(userId) >= 0)
        assert.ok(checkLedgerSums(fold.totals()))
        assert.ok(fold.invariantHolds())
      })
    }),
    { numRuns: 1_000 },
  )
  for (const key of [
    'rejected:INSUFFICIENT_FUNDS',
    'rejected:UNKNOWN_BET',
    'rejected:MALFORMED',
    'ignored:BET_NOT_OPEN',
    'ignored:ALREADY_SETTLED',
    'conflict:ID_REUSED',
    'duplicate:',
  ]) {
    t.ok(seen.get(key) > 20, `${key} happened (${seen.get(key)})`)
  }
})

const settlementStorm: fc.Arbitrary<Command[]> = fc
  .tuple(
    fc.array(fc.integer({ min: 1, max: 2_000 }), { minLength: 1, maxLength: 3 }),
    fc.array(
      fc.oneof(
        {
          weight: 2,
          arbitrary: fc.record({
            kind: fc.constant('bet' as const),
            user: fc.constant(0),
            stake: fc.integer({ min: 1, max: 1_500 }),
            odds,
          }),
        },
        {
          weight: 5,
          arbitrary: fc.record({
            kind: fc.constant('settle' as const),
            ref: fc.nat({ max: 20 }),
            outcome: fc.constantFrom(...OUTCOMES),
            odds,
            wrongUser: fc.nat({ max: 9 }).map((n) => n === 0),
          }),
        },
        { weight: 2, arbitrary: fc.record({ kind: fc.constant('repeat' as const), ref: fc.nat() }) },
      ),
      { maxLength: 60, size: 'max' },
    ),
  )
  .map(([amounts, events]) => [
    ...amounts.map((amount): Command => ({ kind: 'deposit', user: 0, amount })),
    ...events,
  ])

/** For each bet, the first settlement in log order that may settle it: fresh id, right user, after it. */
function firstSettlements(
  values: readonly unknown[],
): Map<string, { index: number; outcome: SettlementOutcome; odds?: number }> {
  const placed = new Map<string, { userId: string }>()
  const ids = new Set<string>()
  const first = new Map<string, { index: number; outcome: SettlementOutcome; odds?: number }>()
  values.forEach((value, index) => {
    const entry = parseLedgerEntry(value)
    if (entry === null || ids.has(entry.id)) return
    ids.add(entry.id)
    if (entry.type === 'bet') placed.set(entry.id, { userId: entry.userId })
    if (entry.type !== 'settlement' || first.has(entry.betId)) return
    if (placed.get(entry.betId)?.userId === entry.userId)
      first.set(entry.betId, { index, outcome: entry.outcome, odds: entry.odds })
  })
  return first
}

t.test('property: under any storm of settlements each bet is paid at most once', async (t) => {
  // Places bets (some refused for funds) and sends many settlements per bet with different ids,
  // outcomes and odds, plus exact replays, unknown bets and wrong users. Proves: at most one
  // settlement per bet is applied; it is the first eligible one in log order; total payouts equal
  // the sum over settled bets of payoutCents(stake, odds, outcome); refused bets are never settled;
  // the user's balance is deposits - accepted stakes + payouts; and the model agrees.
  const seen = tally()
  fc.assert(
    fc.property(settlementStorm, (commands) => {
      const values = materialize(commands)
      const { fold, feed } = feeder()
      const results = values.map(feed)
      assert.deepEqual(results.map(essence), modelResults(values))
      const appliedPerBet = new Map<string, number>()
      results.forEach((result, i) => {
        seen.add(result)
        const entry = parseLedgerEntry(values[i])
        if (entry?.type === 'settlement' && result.status === 'applied') {
          appliedPerBet.set(entry.betId, (appliedPerBet.get(entry.betId) ?? 0) + 1)
        }
      })
      assert.ok([...appliedPerBet.values()].every((count) => count === 1))
      const first = firstSettlements(values)
      let payouts = 0
      let stakes = 0
      const userOf = new Map(
        values.flatMap((v) =>
          parseLedgerEntry(v)?.type === 'bet' ? [[(v as BetEntry).id, (v as BetEntry).userId]] : [],
        ),
      )
      for (const betId of userOf.keys()) {
        const state = fold.bet(userOf.get(betId) as string, betId)
        assert.ok(state !== null)
        const expected = first.get(betId)
        if (state.status === 'rejected') {
          assert.equal(appliedPerBet.get(betId), undefined)
          continue
        }
        stakes += state.stakeCents
        if (state.status === 'open') {
          assert.equal(expected, undefined, `open bet ${betId} had an eligible settlement`)
          continue
        }
        assert.equal(state.settledSeq, (expected?.index ?? -2) + 1)
        assert.equal(
          state.payoutCents,
          payoutCents(state.stakeCents, expected?.odds ?? state.odds, state.outcome),
        )
        payouts += state.payoutCents
      }
      const { depositsCents, payoutsCents, stakesCents } = fold.totals()
      assert.equal(payoutsCents, payouts)
      assert.equal(stakesCents, stakes)
      assert.equal(fold.balance('u1'), depositsCents - stakes + payouts)
    }),
    { numRuns: 1_000 },
  )
  t.ok(seen.get('applied:') > 500, `settlements and bets applied: ${seen}`)
  t.ok(seen.get('ignored:ALREADY_SETTLED') > 200, 'second settlements with other ids were ignored')
  t.ok(seen.get('duplicate:') > 50, 'replayed settlements were duplicates')
  t.ok(seen.get('ignored:BET_NOT_OPEN') > 20, 'settlements of refused bets were ignored')
  t.ok(seen.get('rejected:INSUFFICIENT_FUNDS') > 50, 'bets were refused for funds')
})

t.test('property: a fold restored from a snapshot at any cut point continues identically', async (t) => {
  // Folds a random mixed sequence in one fold; in parallel, folds it in up to three legs, each
  // restored from the previous leg's snapshot sent through JSON. Every leg's results equal the
  // single fold's, and at the end snapshots, state hashes, counts and totals are identical.
  fc.assert(
    fc.property(
      fc.array(command, { maxLength: 60, size: 'max' }),
      fc.array(fc.nat(), { maxLength: 2 }),
      (commands, cuts) => {
        const values = materialize(commands)
        const whole = createLedgerFold()
        const expected = values.map((value, i) => whole.apply(value, i + 1))
        const points = [...cuts.map((cut) => cut % (values.length + 1)), values.length].sort((a, b) => a - b)
        let fold = createLedgerFold()
        let from = 0
        for (const to of points) {
          for (let i = from; i < to; i++) assert.deepEqual(fold.apply(values[i], i + 1), expected[i])
          fold = createLedgerFold(roundTrip(fold.toJSON()))
          from = to
        }
        assert.equal(fold.stateHash(), whole.stateHash())
        assert.deepEqual(fold.toJSON(), whole.toJSON())
        assert.deepEqual(fold.counts(), whole.counts())
        assert.deepEqual(fold.totals(), whole.totals())
        assert.equal(fold.lastSeq(), values.length)
      },
    ),
    { numRuns: 1_000 },
  )
  t.pass('every cut point continued to the same state')
})

t.test('a batch of settlements folds as its settlements would one message each', async (t) => {
  // The same bets settled two ways: one settlement per message, and all of them in one batch
  // message (with a repeat inside it, and one of a bet already settled). Balances, totals and each
  // settlement's verdict agree; the batch's settlements all carry its sequence.
  const setup = [
    deposit('d1', 'u1', 1_000),
    deposit('d2', 'u2', 1_000),
    bet('b1', 'u1', 100, 1_800),
    bet('b2', 'u2', 200),
    bet('b3', 'u1', 300),
    bet('b4', 'u2', 400),
    settlement('s4', 'b4', 'u2', 'void'),
  ]
  const settlements = [
    settlement('s1', 'b1', 'u1', 'won', 1_900),
    settlement('s2', 'b2', 'u2', 'lost'),
    settlement('s3', 'b3', 'u1', 'rejected'),
    settlement('s1', 'b1', 'u1', 'won', 1_900),
    settlement('s4b', 'b4', 'u2', 'won', 2_000),
  ]
  const single = feeder()
  const batched = feeder()
  for (const value of setup) {
    single.feed(value)
    batched.feed(value)
  }
  const one = settlements.map((value) => single.feed(value))
  const seq = batched.fold.lastSeq() + 1
  const all = batched.fold.apply({ type: 'settlements', id: 'batch-1', settlements }, seq)
  const essence = (result: FoldResult) => ({ ...result, duplicateOf: undefined })
  t.same(all.map(essence), one.map(essence), 'the same verdict on each settlement')
  t.same(
    all.map((result) => result.status),
    ['applied', 'applied', 'applied', 'duplicate', 'ignored'],
  )
  t.same(batched.fold.totals(), single.fold.totals())
  for (const userId of ['u1', 'u2']) t.equal(batched.fold.balance(userId), single.fold.balance(userId))
  t.match(batched.fold.bet('u1', 'b1'), { status: 'settled', settledSeq: seq, settlementId: 's1' })
  t.ok(batched.fold.invariantHolds())

  const restored = createLedgerFold(roundTrip(batched.fold.toJSON()))
  t.equal(restored.stateHash(), batched.fold.stateHash(), 'a snapshot holding a batch restores')
})

t.test('a batch with anything wrong in it is refused whole', async (t) => {
  const { fold, feed } = feeder()
  feed(deposit('d1', 'u1', 1_000))
  feed(bet('b1', 'u1', 100))
  const good = settlement('s1', 'b1', 'u1', 'lost')
  const bad: [string, unknown][] = [
    ['no settlements', { type: 'settlements', id: 'x', settlements: [] }],
    ['not an array', { type: 'settlements', id: 'x', settlements: good }],
    ['a deposit inside', { type: 'settlements', id: 'x', settlements: [good, deposit('d2', 'u1', 5)] }],
    [
      'a malformed settlement',
      { type: 'settlements', id: 'x', settlements: [good, { ...good, outcome: 'maybe' }] },
    ],
    ['no id', { type: 'settlements', settlements: [good] }],
    [
      'too many',
      {
        type: 'settlements',
        id: 'x',
        settlements: Array.from({ length: SETTLEMENTS_PER_BATCH_MAX + 1 }, () => good),
      },
    ],
  ]
  const before = fold.stateHash()
  for (const [name, value] of bad) {
    const results = fold.apply(value, fold.lastSeq() + 1)
    t.same(
      results.map((result) => [result.status, result.reason]),
      [['rejected', 'MALFORMED']],
      name,
    )
  }
  t.equal(fold.bet('u1', 'b1')?.status, 'open', 'nothing settled')
  t.equal(fold.counts().malformed, bad.length)
  t.not(fold.stateHash(), before, 'only the counts and the sequence moved')
  t.same(fold.totals(), createLedgerFold(roundTrip(fold.toJSON())).totals())
})

t.test('property: bets folded in batches get the verdicts and balances they get one by one', async (t) => {
  // Random mixed sequences (deposits, bets racing a balance, repeats, reused ids, settlements) are
  // folded one message per entry, and again with every run of consecutive bets cut at random into
  // batch messages (an API node's group commit). Each bet's verdict, reason and reported balance are
  // the same, and so are the final snapshot's balances, bets and totals (sequences aside), which a
  // round trip through JSON restores.
  let batches = 0
  fc.assert(
    fc.property(
      fc.array(command, { maxLength: 60, size: 'max' }),
      fc.array(fc.boolean()),
      (commands, cuts) => {
        const values = materialize(commands)
        const single = createLedgerFold()
        const one = values.flatMap((value, i) => single.apply(value, i + 1))
        const batched = createLedgerFold()
        const all: FoldResult[] = []
        let run: BetEntry[] = []
        const flush = () => {
          if (run.length === 0) return
          const message = run.length === 1 ? run[0] : { type: 'bets', id: `bets/0/${all.length}`, bets: run }
          if (run.length > 1) batches += 1
          all.push(...batched.apply(message, batched.lastSeq() + 1))
          run = []
        }
        values.forEach((value, i) => {
          if (parseLedgerEntry(value)?.type === 'bet' && run.length < BETS_PER_BATCH_MAX) {
            run.push(value as BetEntry)
            if (cuts[i % Math.max(cuts.length, 1)] === true) flush()
            return
          }
          flush()
          all.push(...batched.apply(value, batched.lastSeq() + 1))
        })
        flush()
        assert.deepEqual(all.map(essence), one.map(essence))
        assert.deepEqual(batched.totals(), single.totals())
        assert.deepEqual(money(batched).balances, money(single).balances)
        assert.ok(batched.invariantHolds())
        const restored = createLedgerFold(roundTrip(batched.toJSON()))
        assert.equal(restored.stateHash(), batched.stateHash())
      },
    ),
    { numRuns: 1_000 },
  )
  t.ok(batches > 1_000, `${batches} batches of two bets or more were folded`)
})
