// Proves the market liability escrow (ledger/state.ts): each shard's fold holds its share of a
// market's limit, grants leave only unused allowance, receipts count once, snapshots keep the
// transfers, and, by a property test over many shard folds with grants, receipts and bets in any
// order, delayed and repeated, the shards' liabilities never sum past the market's limit.

import fc from 'fast-check'
import t from 'tap'
import {
  type AllowanceGrantEntry,
  type AllowanceReceiptEntry,
  type BetEntry,
  BOOK_USER_ID,
  createLedgerFold,
  type LedgerFold,
  liabilityCents,
  parseLedgerEntry,
} from '../../ledger/index.ts'

const STAMP = '0001700000000.000000.api-1+++++++++++++++++++'
const GAME = 'match-1'
const MARKET = 'point-1'

const bet = (id: string, userId: string, stakeCents: number, shareCents: number): BetEntry => ({
  type: 'bet',
  id,
  userId,
  gameId: GAME,
  marketId: MARKET,
  selectionId: 'home',
  stakeCents,
  odds: 2_000,
  policy: 'better',
  stamp: STAMP,
  placedAtMs: 1_700_000_000_000,
  // At 2.000 a bet's liability is its stake.
  offeredOdds: 2_000,
  marketLiabilityLimitCents: shareCents,
})
const grant = (id: string, toShard: number, cents: number, shareCents: number): AllowanceGrantEntry => ({
  type: 'allowance-grant',
  id,
  userId: BOOK_USER_ID,
  gameId: GAME,
  marketId: MARKET,
  toShard,
  cents,
  shareCents,
})
const receipt = (id: string, fromShard: number, cents: number): AllowanceReceiptEntry => ({
  type: 'allowance-receipt',
  id,
  userId: BOOK_USER_ID,
  gameId: GAME,
  marketId: MARKET,
  fromShard,
  cents,
})

function folder() {
  const fold = createLedgerFold()
  let seq = 0
  return {
    fold,
    apply: (value: unknown) => {
      seq += 1
      const [result] = fold.apply(value, seq)
      return result
    },
  }
}

t.test('a shard takes bets up to its share, and past it only with allowance received', async (t) => {
  const { fold, apply } = folder()
  apply({ type: 'deposit', id: 'd1', userId: 'u1', amountCents: 10_000 })
  t.equal(apply(bet('b1', 'u1', 600, 1_000))?.status, 'applied')
  t.match(apply(bet('b2', 'u1', 600, 1_000)), { status: 'rejected', reason: 'MARKET_LIABILITY_LIMIT' })
  t.equal(apply(receipt('x1', 3, 500))?.status, 'applied')
  t.equal(fold.allowanceMoved(GAME, MARKET), 500)
  t.equal(apply(bet('b3', 'u1', 600, 1_000))?.status, 'applied', '600 + 600 <= 1,000 + 500')
  t.match(apply(bet('b4', 'u1', 400, 1_000)), { status: 'rejected', reason: 'MARKET_LIABILITY_LIMIT' })
  t.equal(fold.allowanceMoved('match-2', MARKET), 0, 'another game has its own allowance')
  t.ok(fold.invariantHolds())
})

t.test('a grant leaves only unused allowance, and lowers what the shard may take', async (t) => {
  const { fold, apply } = folder()
  apply({ type: 'deposit', id: 'd1', userId: 'u1', amountCents: 10_000 })
  t.equal(apply(bet('b1', 'u1', 700, 1_000))?.status, 'applied')
  t.match(apply(grant('g1', 2, 400, 1_000)), { status: 'rejected', reason: 'ALLOWANCE_SHORT' })
  t.equal(fold.transfer('allowance-grant', 'g1'), null, 'a refused grant moves nothing')
  t.equal(apply(grant('g2', 2, 300, 1_000))?.status, 'applied')
  t.equal(fold.allowanceMoved(GAME, MARKET), -300)
  t.same(fold.transfer('allowance-grant', 'g2'), grant('g2', 2, 300, 1_000))
  t.match(apply(bet('b2', 'u1', 1, 1_000)), { status: 'rejected', reason: 'MARKET_LIABILITY_LIMIT' })
  // A settled bet frees its liability, and the freed part can be granted again.
  t.equal(
    apply({ type: 'settlement', id: 's1', betId: 'b1', userId: 'u1', outcome: 'lost' })?.status,
    'applied',
  )
  t.equal(apply(grant('g3', 5, 700, 1_000))?.status, 'applied')
  t.match(apply(grant('g4', 5, 1, 1_000)), { status: 'rejected', reason: 'ALLOWANCE_SHORT' })
  t.ok(fold.invariantHolds())
})

t.test('a transfer counts once, and another body under its id changes nothing', async (t) => {
  const { fold, apply } = folder()
  t.equal(apply(receipt('x1', 1, 500))?.status, 'applied')
  t.match(apply(receipt('x1', 1, 500)), { status: 'duplicate', original: 'applied' })
  t.match(apply(receipt('x1', 1, 900)), { status: 'conflict', reason: 'ID_REUSED' })
  t.equal(fold.allowanceMoved(GAME, MARKET), 500)
  t.equal(apply(grant('x1', 4, 100, 1_000))?.status, 'applied', 'a grant and a receipt have their own ids')
  t.match(apply(grant('x1', 4, 100, 1_000)), { status: 'duplicate' })
  t.equal(fold.allowanceMoved(GAME, MARKET), 400)
})

t.test("allowance entries are the book's own, and malformed ones are refused", async (t) => {
  t.ok(parseLedgerEntry(grant('g1', 1, 1, 0)))
  const bad: [string, unknown][] = [
    ['a user id', { ...grant('g1', 1, 1, 0), userId: 'u1' }],
    ['no cents', { ...receipt('r1', 1, 1), cents: 0 }],
    ['a shard past the most', { ...receipt('r1', 64, 1) }],
    ['a negative share', { ...grant('g1', 1, 1, -1) }],
    ['a receipt without its shard', { ...receipt('r1', 1, 1), fromShard: undefined }],
    ['cents as text', { ...grant('g1', 1, 1, 0), cents: '1' }],
  ]
  for (const [name, value] of bad) t.equal(parseLedgerEntry(value), null, name)
  // A user cannot write a transfer: the book's user id is no user id.
  const { apply } = folder()
  t.match(apply({ type: 'deposit', id: 'd1', userId: BOOK_USER_ID, amountCents: 1 }), { reason: 'MALFORMED' })
})

t.test('a snapshot keeps the transfers, and a restored fold goes on alike', async (t) => {
  const { fold, apply } = folder()
  apply({ type: 'deposit', id: 'd1', userId: 'u1', amountCents: 10_000 })
  apply(receipt('x1', 1, 500))
  apply(grant('g1', 2, 200, 1_000))
  const snapshot = fold.toJSON()
  t.equal(snapshot.transfers.length, 2)
  const restored = createLedgerFold(JSON.parse(JSON.stringify(snapshot)))
  t.equal(restored.allowanceMoved(GAME, MARKET), 300)
  t.equal(restored.stateHash(), fold.stateHash())
  const next = bet('b1', 'u1', 1_300, 1_000)
  t.same(restored.apply(next, 4), fold.apply(next, 4))
  t.equal(restored.stateHash(), fold.stateHash())
  t.throws(
    () => createLedgerFold({ ...snapshot, transfers: [...snapshot.transfers, receipt('x9', 1, 5)] }),
    /not an applied entry/,
    'a transfer the entries do not hold is refused',
  )
  t.throws(() => createLedgerFold({ ...snapshot, version: 2 }), /version/)
})

// The property: shards whose folds see bets, grants and receipts in any order. A receipt is only
// ever written after its grant was applied (by the node that saw it applied), perhaps late, perhaps
// twice; the market's liability over all shards never passes the sum of the shares.
t.test('property: the shards never hold more liability than the market limit', async (t) => {
  const SHARDS = 4
  const SHARE = 1_000
  const action = fc.oneof(
    fc.record({
      kind: fc.constant('bet' as const),
      shard: fc.nat(SHARDS - 1),
      stake: fc.integer({ min: 1, max: 900 }),
    }),
    fc.record({
      kind: fc.constant('grant' as const),
      from: fc.nat(SHARDS - 1),
      to: fc.nat(SHARDS - 1),
      cents: fc.integer({ min: 1, max: 1_500 }),
    }),
    fc.record({ kind: fc.constant('deliver' as const), pick: fc.nat(), twice: fc.boolean() }),
    fc.record({ kind: fc.constant('settle' as const), shard: fc.nat(SHARDS - 1), pick: fc.nat() }),
  )
  fc.assert(
    fc.property(fc.array(action, { maxLength: 120 }), (actions) => {
      const shards = Array.from({ length: SHARDS }, folder)
      for (const [i, { apply }] of shards.entries())
        apply({ type: 'deposit', id: 'd', userId: `u${i}`, amountCents: 1_000_000 })
      const inTransit: AllowanceReceiptEntry[] = []
      const open: string[][] = shards.map(() => [])
      let n = 0
      for (const step of actions) {
        n += 1
        if (step.kind === 'bet') {
          const result = shards[step.shard]?.apply(bet(`b${n}`, `u${step.shard}`, step.stake, SHARE))
          if (result?.status === 'applied') open[step.shard]?.push(`b${n}`)
        } else if (step.kind === 'grant') {
          const entry = grant(`t${n}`, step.to, step.cents, SHARE)
          if (shards[step.from]?.apply(entry)?.status === 'applied')
            inTransit.push(receipt(entry.id, step.from, entry.cents))
          // A grant to the shard itself is odd but harmless: it comes back as a receipt.
        } else if (step.kind === 'deliver' && inTransit.length > 0) {
          const index = step.pick % inTransit.length
          const entry = inTransit[index] as AllowanceReceiptEntry
          const to = grantTarget(shards, entry)
          shards[to]?.apply(entry)
          if (step.twice) shards[to]?.apply(entry)
          else inTransit.splice(index, 1)
        } else if (step.kind === 'settle' && (open[step.shard]?.length ?? 0) > 0) {
          const bets = open[step.shard] as string[]
          const [betId] = bets.splice(step.pick % bets.length, 1)
          shards[step.shard]?.apply({
            type: 'settlement',
            id: `s${n}`,
            betId,
            userId: `u${step.shard}`,
            outcome: 'lost',
          })
        }
        const held = shards.reduce((sum, { fold }) => sum + fold.marketLiability(GAME, MARKET), 0)
        const moved = shards.reduce((sum, { fold }) => sum + fold.allowanceMoved(GAME, MARKET), 0)
        if (held > SHARDS * SHARE) throw new Error(`liability ${held} passed the limit ${SHARDS * SHARE}`)
        if (moved > 0) throw new Error(`the shards received ${moved} more than they gave`)
        for (const { fold } of shards) {
          if (fold.marketLiability(GAME, MARKET) > SHARE + fold.allowanceMoved(GAME, MARKET))
            throw new Error('a shard holds more liability than its allowance')
          if (!fold.invariantHolds()) throw new Error('a fold broke its invariants')
        }
      }
    }),
    { numRuns: 300 },
  )
  t.pass('300 interleavings')
})

/** Where a receipt goes: the shard its grant named, as the granting shard's fold holds it. */
function grantTarget(shards: readonly { fold: LedgerFold }[], entry: AllowanceReceiptEntry): number {
  const granted = shards[entry.fromShard]?.fold.transfer('allowance-grant', entry.id)
  if (granted?.type !== 'allowance-grant') throw new Error(`receipt ${entry.id} without its grant`)
  return granted.toShard
}

t.test('liability counts winnings at the offered odds', async (t) => {
  t.equal(liabilityCents(bet('b', 'u', 500, 0)), 500)
})
