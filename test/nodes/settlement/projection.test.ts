// Proves, on a real SQLite file, that the projection keeps games apart: the same bet terms on the
// same market id (`p5-winner` exists in every game) in two games count towards each game's
// exposure alone, a settlement in one game leaves the other's open, and the open-bet query uses
// the index by game and market rather than scanning every game's bets on that market id.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
import { openProjection } from '../../../nodes/settlement/projection.ts'
import { shardOf } from '../../../protocol/shards.ts'

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
    [{ userId: users[0], betId: `bet-${users[0]}` }],
    'the kept open row, to check',
  )
  second.settled(users[0] as string, `bet-${users[0]}`, 'unknown', null, 5)
  t.same(second.unsettled(kept), [], 'settled once checked')
  t.match(second.history(users[0] as string)[0], { outcome: 'unknown', payoutCents: null, settledAtMs: 5 })
  second.close()
})
