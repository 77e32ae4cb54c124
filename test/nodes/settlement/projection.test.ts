// Proves, on a real SQLite file, that the projection keeps games apart: the same bet terms on the
// same market id (`p5-winner` exists in every game) in two games count towards each game's
// exposure alone, a settlement in one game leaves the other's open, and the open-bet query uses
// the index by game and market rather than scanning every game's bets on that market id.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import pino from 'pino'
import t from 'tap'
import { createLedgerFold } from '../../../ledger/index.ts'
import { openProjection } from '../../../nodes/settlement/projection.ts'
import { reconcileKeptRows } from '../../../nodes/settlement/settlement-node.ts'
import { settlementIdOf } from '../../../protocol/ids.ts'
import { shardOf } from '../../../protocol/shards.ts'
import { betEntry } from '../../helpers/ledger-entries.ts'

const SHARDS = 4

t.test('the same terms on two games stay apart in the projection', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'projection-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'settle.db')
  const projection = openProjection(path, SHARDS)
  const flushed = () => new Promise((resolve) => setImmediate(resolve))
  const terms = (gameId: string, betId: string) => ({
    betId,
    userId: 'alice',
    gameId,
    marketId: 'p5-winner',
    selectionId: 'home',
    stakeCents: 1_000,
    odds: 2_000,
    policy: 'exact' as const,
    stamp: `stamp-${betId}`,
    placedAtMs: 1,
    ledgerSeq: 1,
    funds: 'debited' as const,
  })
  projection.placed(terms('match-1', 'b1'))
  projection.placed(terms('match-2', 'b2'))
  projection.placed(terms('match-2', 'b3'))
  await flushed()
  const shard = shardOf('alice', SHARDS)
  t.match(projection.exposure('match-1', 'p5-winner', shard), { openBets: 1, openStakesCents: 1_000 })
  t.match(projection.exposure('match-2', 'p5-winner', shard), { openBets: 2, openStakesCents: 2_000 })
  projection.settled('alice', 'b1', 'won', 2_000, 2)
  await flushed()
  t.match(projection.exposure('match-1', 'p5-winner', shard), { openBets: 0 }, 'match-1 settled')
  t.match(projection.exposure('match-2', 'p5-winner', shard), { openBets: 2 }, 'match-2 still open')
  projection.close()

  const db = new Database(path, { readonly: true })
  t.teardown(() => db.close())
  const plan = db
    .prepare(
      `EXPLAIN QUERY PLAN SELECT COUNT(*) FROM bets_by_user_and_id
       WHERE game_id = ? AND market_id = ? AND settled_at_ms IS NULL AND funds = 'debited'`,
    )
    .all('match-2', 'p5-winner') as { detail: string }[]
  t.match(
    plan.map((row) => row.detail).join('; '),
    /USING INDEX bets_open_by_game_and_market \(game_id=\? AND market_id=\?\)/,
    'the open bets of one game’s market come from the index by game and market',
  )
})

t.test('rows of shards restored from checkpoints stay; the others are written again', async (t) => {
  // A settlement node folds a shard restored from its checkpoint only from there on: the history
  // before lives in its projection alone. A shard folded from its first entry is written again.
  const dir = mkdtempSync(join(tmpdir(), 'projection-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'settle.db')
  const users = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank'].filter(
    (userId, i, all) => all.findIndex((other) => shardOf(other, SHARDS) === shardOf(userId, SHARDS)) === i,
  )
  t.ok(users.length >= 2, 'users on two shards or more')
  const first = openProjection(path, SHARDS)
  for (const userId of users)
    first.placed({
      betId: `bet-${userId}`,
      userId,
      gameId: 'match-1',
      marketId: 'p5-winner',
      selectionId: 'home',
      stakeCents: 100,
      odds: 2_000,
      policy: 'any',
      stamp: `stamp-${userId}`,
      placedAtMs: 1,
      ledgerSeq: 1,
      funds: 'debited',
    })
  first.close()
  const kept = shardOf(users[0] as string, SHARDS)
  const second = openProjection(path, SHARDS, [kept])
  for (const userId of users)
    t.equal(
      second.history(userId).length,
      shardOf(userId, SHARDS) === kept ? 1 : 0,
      `${userId}: ${shardOf(userId, SHARDS) === kept ? 'kept' : 'gone'}`,
    )
  // The node checks the kept rows it holds open against its restored fold (settlement-node.ts).
  t.same(
    second.unsettled(kept),
    [{ userId: users[0], betId: `bet-${users[0]}`, ledgerSeq: 1 }],
    'the kept open row, to check',
  )
  second.settled(users[0] as string, `bet-${users[0]}`, 'unknown', null, 5)
  t.same(second.unsettled(kept), [], 'settled once checked')
  t.match(second.history(users[0] as string)[0], { outcome: 'unknown', payoutCents: null, settledAtMs: 5 })
  second.close()
})

t.test('kept open rows are checked against the restored fold, and only up to its checkpoint', async (t) => {
  // A node restored a shard at sequence 4. Its kept rows: one bet settled in the fold, one the fold
  // no longer holds (settled and retired before the checkpoint), one still open, and one placed
  // after the checkpoint (left to the entries folded next).
  const dir = mkdtempSync(join(tmpdir(), 'projection-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const userId = 'alice'
  const shard = shardOf(userId, SHARDS)
  const projection = openProjection(join(dir, 'settle.db'), SHARDS)
  const row = (betId: string, ledgerSeq: number) => ({
    betId,
    userId,
    gameId: 'match-1',
    marketId: 'p1-winner',
    selectionId: 'home',
    stakeCents: 100,
    odds: 2_000,
    policy: 'any' as const,
    stamp: `stamp-${betId}`,
    placedAtMs: 1,
    ledgerSeq,
    funds: 'debited' as const,
  })
  for (const [betId, seq] of [
    ['bet-settled', 2],
    ['bet-retired', 1],
    ['bet-open', 3],
    ['bet-later', 6],
  ] as const)
    projection.placed(row(betId, seq))
  const fold = createLedgerFold()
  fold.apply({ type: 'deposit', id: 'd1', userId, amountCents: 1_000 }, 1)
  fold.apply(betEntry('bet-settled', userId, 100), 2)
  fold.apply(betEntry('bet-open', userId, 100), 3)
  fold.apply(
    { type: 'settlement', id: settlementIdOf('bet-settled'), betId: 'bet-settled', userId, outcome: 'lost' },
    4,
  )
  reconcileKeptRows(
    projection,
    { fold: () => fold, restoredFrom: new Map([[shard, 4]]) },
    [shard],
    () => 9,
    pino({ level: 'silent' }),
  )
  const byId = new Map(projection.history(userId).map((each) => [each.betId, each]))
  t.match(
    byId.get('bet-settled'),
    { outcome: 'lost', payoutCents: 0, settledAtMs: 9 },
    'settled from the fold',
  )
  t.match(
    byId.get('bet-retired'),
    { outcome: 'unknown', payoutCents: null },
    'retired before: outcome unknown',
  )
  t.match(byId.get('bet-open'), { settledAtMs: null }, 'open in the fold: left open')
  t.match(
    byId.get('bet-later'),
    { settledAtMs: null },
    'placed after the checkpoint: left to what is folded next',
  )
  projection.close()
})
