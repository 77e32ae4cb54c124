/**
 * The settlement node's SQLite projection: every bet with each status and timestamp, for the
 * queries a bettor and a trader ask (a user's history, open exposure per market). It is derived
 * state: rebuilt from the ledger and the replicas on start, so it never needs a backup.
 */

import Database from 'better-sqlite3'
import type { BetEntry } from '../../ledger/index.ts'
import { shardOf } from '../../protocol/shards.ts'

export const HISTORY_ROWS_MAX = 500
/** Queued projection writes committed in one transaction at most. */
export const WRITES_PER_TRANSACTION_MAX = 1_000

/** A bet as the projection keeps it: its ledger fields, then each status with its time. */
export interface BetRow extends Omit<BetEntry, 'type' | 'id'> {
  readonly betId: string
  readonly ledgerSeq: number
  readonly funds: 'debited' | 'refused'
  readonly verdict: 'accepted' | 'rejected' | null
  readonly reason: string | null
  readonly gameClockMs: number | null
  readonly finalAtMs: number | null
  readonly outcome: string | null
  readonly payoutCents: number | null
  readonly settledAtMs: number | null
}

export interface Exposure {
  readonly gameId: string
  readonly marketId: string
  readonly openBets: number
  readonly openStakesCents: number
  readonly potentialPayoutCents: number
}

export interface Projection {
  placed(
    row: Pick<
      BetRow,
      | 'betId'
      | 'userId'
      | 'gameId'
      | 'marketId'
      | 'selectionId'
      | 'stakeCents'
      | 'odds'
      | 'policy'
      | 'stamp'
      | 'placedAtMs'
      | 'ledgerSeq'
      | 'funds'
    >,
  ): void
  finalized(
    userId: string,
    betId: string,
    verdict: { accepted: boolean; reason: string | null; gameClockMs: number | null },
    atMs: number,
  ): void
  /** `payoutCents` null: not known here (a kept row settled while the node was down). */
  settled(userId: string, betId: string, outcome: string, payoutCents: number | null, atMs: number): void
  /**
   * The rows of a shard kept from an earlier run that are not settled here: the node restored the
   * shard from a checkpoint that may be later than its rows, and checks each against its fold.
   */
  unsettled(shard: number): { readonly userId: string; readonly betId: string; readonly ledgerSeq: number }[]
  history(userId: string, limit?: number): BetRow[]
  /** The open exposure of a market among the bets of one ledger shard's users. */
  exposure(gameId: string, marketId: string, shard: number): Exposure
  close(): void
}

/**
 * Bet ids are the client's: two users may use one, so a row is keyed by both (protocol/ids.ts, "Id
 * namespaces"). Market ids repeat in every game (`p5-winner`), so open bets are indexed by game and
 * market: an index by market alone (an earlier version's, dropped here) scans every game's.
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS bets_by_user_and_id (
  user_id TEXT NOT NULL, bet_id TEXT NOT NULL, game_id TEXT NOT NULL, market_id TEXT NOT NULL,
  selection_id TEXT NOT NULL, stake_cents INTEGER NOT NULL, odds INTEGER NOT NULL, policy TEXT NOT NULL,
  stamp TEXT NOT NULL, placed_at_ms INTEGER NOT NULL, ledger_seq INTEGER NOT NULL, funds TEXT NOT NULL,
  verdict TEXT, reason TEXT, game_clock_ms INTEGER, final_at_ms INTEGER,
  outcome TEXT, payout_cents INTEGER, settled_at_ms INTEGER,
  PRIMARY KEY (user_id, bet_id)
);
DROP TABLE IF EXISTS bets;
CREATE INDEX IF NOT EXISTS bets_by_user ON bets_by_user_and_id (user_id, stamp);
DROP INDEX IF EXISTS bets_open_by_market;
CREATE INDEX IF NOT EXISTS bets_open_by_game_and_market ON bets_by_user_and_id (game_id, market_id) WHERE settled_at_ms IS NULL AND funds = 'debited';
`

/**
 * The projection at `path`; `shards` is the region's ledger shard count, for per-shard queries.
 * `kept`: the shards whose rows stay from an earlier run, because the node restored them from
 * their ledger checkpoints and folds only what came after.
 */
export function openProjection(path: string, shards: number, kept: readonly number[] = []): Projection {
  const db = new Database(path)
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  db.exec(SCHEMA)
  db.function('shard_of', { deterministic: true }, (userId) => shardOf(String(userId), shards))
  // A shard the node folds from its first entry has every row written again: the rows of a
  // previous run go, so that nothing is left of a ledger the node may have misread then. A shard
  // restored from its checkpoint keeps its rows: its history before the checkpoint is read nowhere
  // else (and a node that found a shard's fold diverged deleted that checkpoint first).
  const keptShards = new Set(kept)
  db.function('shard_in_kept', { deterministic: true }, (userId) =>
    keptShards.has(shardOf(String(userId), shards)) ? 1 : 0,
  )
  db.exec('DELETE FROM bets_by_user_and_id WHERE shard_in_kept(user_id) = 0')
  const insert =
    db.prepare(`INSERT OR IGNORE INTO bets_by_user_and_id (bet_id, user_id, game_id, market_id, selection_id, stake_cents, odds,
    policy, stamp, placed_at_ms, ledger_seq, funds) VALUES (@betId, @userId, @gameId, @marketId, @selectionId, @stakeCents,
    @odds, @policy, @stamp, @placedAtMs, @ledgerSeq, @funds)`)
  const finalize = db.prepare(`UPDATE bets_by_user_and_id SET verdict = ?, reason = ?, game_clock_ms = ?,
    final_at_ms = ? WHERE user_id = ? AND bet_id = ? AND final_at_ms IS NULL`)
  const settle = db.prepare(
    `UPDATE bets_by_user_and_id SET outcome = ?, payout_cents = ?, settled_at_ms = ?
    WHERE user_id = ? AND bet_id = ? AND settled_at_ms IS NULL`,
  )
  const history =
    db.prepare(`SELECT bet_id AS betId, user_id AS userId, game_id AS gameId, market_id AS marketId,
    selection_id AS selectionId, stake_cents AS stakeCents, odds, policy, stamp, placed_at_ms AS placedAtMs,
    ledger_seq AS ledgerSeq, funds, verdict, reason, game_clock_ms AS gameClockMs, final_at_ms AS finalAtMs, outcome,
    payout_cents AS payoutCents, settled_at_ms AS settledAtMs FROM bets_by_user_and_id WHERE user_id = ? ORDER BY stamp DESC LIMIT ?`)
  const unsettled =
    db.prepare(`SELECT user_id AS userId, bet_id AS betId, ledger_seq AS ledgerSeq FROM bets_by_user_and_id
    WHERE settled_at_ms IS NULL AND funds = 'debited' AND shard_of(user_id) = ?`)
  const exposure = db.prepare(`SELECT COUNT(*) AS openBets, COALESCE(SUM(stake_cents), 0) AS openStakesCents,
    COALESCE(SUM(stake_cents * odds / 1000), 0) AS potentialPayoutCents FROM bets_by_user_and_id
    WHERE game_id = ? AND market_id = ? AND settled_at_ms IS NULL AND funds = 'debited' AND shard_of(user_id) = ?`)
  // Writes are queued and committed together: one transaction per burst instead of one per bet,
  // which is what a settlement storm (thousands of bets resulted at once) needs.
  const queued: (() => void)[] = []
  const commit = db.transaction(() => {
    for (const write of queued.splice(0)) write()
  })
  let scheduled = false
  let closed = false
  const flush = () => {
    scheduled = false
    if (queued.length > 0 && !closed) commit()
  }
  const enqueue = (write: () => void) => {
    // A write that races the shutdown is dropped: the projection is rebuilt from the ledger at start.
    if (closed) return
    queued.push(write)
    if (queued.length >= WRITES_PER_TRANSACTION_MAX) flush()
    else if (!scheduled) {
      scheduled = true
      setImmediate(flush)
    }
  }
  return {
    placed: (row) => enqueue(() => insert.run(row)),
    finalized: (userId, betId, verdict, atMs) =>
      enqueue(() =>
        finalize.run(
          verdict.accepted ? 'accepted' : 'rejected',
          verdict.reason,
          verdict.gameClockMs,
          atMs,
          userId,
          betId,
        ),
      ),
    settled: (userId, betId, outcome, payoutCents, atMs) =>
      enqueue(() => settle.run(outcome, payoutCents, atMs, userId, betId)),
    unsettled(shard) {
      flush()
      return unsettled.all(shard) as { userId: string; betId: string; ledgerSeq: number }[]
    },
    history(userId, limit = HISTORY_ROWS_MAX) {
      flush()
      return history.all(userId, Math.min(limit, HISTORY_ROWS_MAX)) as BetRow[]
    },
    exposure(gameId, marketId, shard) {
      flush()
      return {
        gameId,
        marketId,
        ...(exposure.get(gameId, marketId, shard) as Omit<Exposure, 'gameId' | 'marketId'>),
      }
    },
    close() {
      flush()
      closed = true
      db.close()
    },
  }
}
