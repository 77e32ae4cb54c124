/**
 * Settlement: for every open bet, once its verdict is final, refund it if it was rejected or
 * voided; once its market's result is agreed and final and its correction deadline final too, pay
 * it if it won. Each settlement is one ledger entry whose id is derived from the bet id, so any
 * number of settlement nodes may race: the ledger fold ignores a second settlement of a bet
 * forever after. A bet is paid at most once.
 *
 * Settlements decided in one pass are appended in batches, one ledger message per shard holding as
 * many as fit (ledger/entries.ts): a market of 10,000 bets is a hundred appends, not 10,000. A batch's id
 * is derived from what it holds, so JetStream stores a retried batch once.
 *
 * A market under review (writers disagree on its result) is held, not paid.
 */

import type { Logger } from 'pino'
import {
  type BetTerms,
  correctionDeadline,
  type GameState,
  isFinal,
  judge,
  resultOf,
  voidAt,
} from '../../crdt/index.ts'
import {
  type BetEntry,
  SETTLEMENTS_PER_BATCH_MAX,
  type SettlementEntry,
  type SettlementOutcome,
} from '../../ledger/index.ts'
import type { FinalStatus } from '../../protocol/bets.ts'
import { settlementIdOf } from '../../protocol/ids.ts'
import { createFinalityQueue, type FinalityQueue } from '../fabric/finality-queue.ts'
import { type LedgerSync, shardOf } from '../fabric/ledger-sync.ts'
import type { ReplicaSync } from '../fabric/replica-sync.ts'
import { LEDGER_MESSAGE_BYTES_MAX } from '../fabric/streams.ts'
import type { Projection } from './projection.ts'

/** Settlement batches in flight at once; what does not fit waits for the next pass. */
export const BATCHES_IN_FLIGHT_MAX = 64
/** Room left in a batch message for its envelope (type, id and brackets), in bytes. */
const BATCH_ENVELOPE_BYTES = 256

export interface SettlerStats {
  settled: number
  held: number
  appendFailures: number
}

export interface Settler {
  readonly stats: SettlerStats
  /** Look at every open bet and settle what can be; cheap to call often. */
  pass(): void
  openBets(): number
  close(): void
}

export interface SettlerOptions {
  readonly replicas: ReplicaSync
  readonly ledger: LedgerSync
  readonly projection: Projection
  readonly log: Logger
  readonly publishFinal?: (userId: string, status: FinalStatus) => void
  readonly now?: () => number
}

/** Bet ids are the client's, unique per user only (protocol/ids.ts, "Id namespaces"). */
const betKey = (userId: string, betId: string) => `${userId}/${betId}`
/** Every game has markets of the same ids (`p5-winner`): a market is known by its game too. */
const marketKey = (gameId: string, marketId: string) => `${gameId}/${marketId}`

export function createSettler(options: SettlerOptions): Settler {
  const { ledger, log, projection, replicas } = options
  const now = options.now ?? Date.now
  /** Per game, open bets whose verdict is not yet final, by stamp. */
  const undecided = new Map<string, FinalityQueue<BetEntry>>()
  /** Per game and market (marketKey), accepted bets waiting for the result, by betKey. */
  const awaiting = new Map<
    string,
    { gameId: string; marketId: string; bets: Map<string, { bet: BetEntry; odds: number }> }
  >()
  /** Open bets, by betKey. */
  const unsettled = new Set<string>()
  /** Settlements decided and not yet appended, per shard, in the order they were decided. */
  const pending = new Map<number, SettlementEntry[]>()
  const stats: SettlerStats = { settled: 0, held: 0, appendFailures: 0 }
  let inFlight = 0

  const stopLedger = ledger.onEntry((_shard, seq, result, entry) => {
    if (entry?.type === 'bet' && (result.status === 'applied' || result.status === 'rejected')) {
      const { id: betId, type: _type, ...rest } = entry
      projection.placed({
        betId,
        ...rest,
        ledgerSeq: seq,
        funds: result.status === 'applied' ? 'debited' : 'refused',
      })
      if (result.status === 'applied') {
        unsettled.add(betKey(entry.userId, betId))
        const queue = undecided.get(entry.gameId) ?? createFinalityQueue<BetEntry>()
        queue.add(entry)
        undecided.set(entry.gameId, queue)
      }
    }
    if (entry?.type === 'settlement' && (result.status === 'applied' || result.status === 'ignored')) {
      const bet = ledger.foldFor(entry.userId).bet(entry.userId, entry.betId)
      if (bet?.status === 'settled')
        projection.settled(entry.userId, entry.betId, bet.outcome, bet.payoutCents, now())
      unsettled.delete(betKey(entry.userId, entry.betId))
    }
  })

  function settle(bet: BetEntry, outcome: SettlementOutcome, odds?: number): void {
    const entry: SettlementEntry = {
      type: 'settlement',
      id: settlementIdOf(bet.id),
      betId: bet.id,
      userId: bet.userId,
      outcome,
      ...(odds ? { odds } : {}),
    }
    const shard = shardOf(bet.userId, ledger.shards)
    const list = pending.get(shard) ?? []
    list.push(entry)
    pending.set(shard, list)
  }

  /** Take the next batch off a shard's pending list: as many as fit in one ledger message. */
  function nextBatch(list: SettlementEntry[]): SettlementEntry[] {
    let bytes = BATCH_ENVELOPE_BYTES
    let count = 0
    while (count < list.length && count < SETTLEMENTS_PER_BATCH_MAX) {
      const size = JSON.stringify(list[count]).length + 1
      if (bytes + size > LEDGER_MESSAGE_BYTES_MAX) break
      bytes += size
      count++
    }
    return list.splice(0, Math.max(count, 1))
  }

  /** Append what is pending, one batch per message, up to BATCHES_IN_FLIGHT_MAX at once. */
  function flush(): void {
    for (const [shard, decided] of pending) {
      // Bets another settlement node settled meanwhile need nothing more from this one.
      const list = decided.filter((entry) => unsettled.has(betKey(entry.userId, entry.betId)))
      pending.set(shard, list)
      while (list.length > 0 && inFlight < BATCHES_IN_FLIGHT_MAX) {
        const batch = nextBatch(list)
        inFlight++
        ledger
          .appendSettlements(shard, batch)
          .then(() => {
            stats.settled += batch.length
          })
          .catch((error) => {
            stats.appendFailures++
            // Back on the list: the next pass appends them again; the fold pays each bet once.
            const again = pending.get(shard) ?? []
            again.push(...batch)
            pending.set(shard, again)
            log.warn({ err: error, shard, settlements: batch.length }, 'settlement append failed; will retry')
          })
          .finally(() => {
            inFlight--
          })
      }
      if (list.length === 0) pending.delete(shard)
    }
  }

  /** Bets whose verdict turned final: refund the rejected, park the accepted until the result. */
  function decideFinal(gameId: string): void {
    const replica = replicas.replica(gameId)
    const queue = undecided.get(gameId)
    if (replica === undefined || queue === undefined) return
    for (const bet of queue.drain((stamp) => isFinal(replica.game, stamp))) {
      if (!unsettled.has(betKey(bet.userId, bet.id))) continue
      const { final: _final, ...verdict } = judge(replica.game, bet as BetTerms)
      projection.finalized(bet.userId, bet.id, verdict, now())
      // The accepting API node announces the final verdict too; announcing it here as well means a
      // bettor still hears it if that node died first. Clients de-duplicate by bet id and status.
      options.publishFinal?.(bet.userId, {
        betId: bet.id,
        status: 'final',
        stamp: bet.stamp,
        verdict,
        finalAtMs: now(),
        balanceCents: ledger.foldFor(bet.userId).balance(bet.userId),
      })
      if (!verdict.accepted) {
        settle(bet, verdict.reason === 'VOIDED' ? 'void' : 'rejected')
        continue
      }
      const key = marketKey(gameId, bet.marketId)
      const market = awaiting.get(key) ?? { gameId, marketId: bet.marketId, bets: new Map() }
      market.bets.set(betKey(bet.userId, bet.id), { bet, odds: verdict.odds ?? bet.odds })
      awaiting.set(key, market)
    }
  }

  /**
   * Accepted bets that a void window added later covers (a feed correction, a trader takeover):
   * refund them once the void is final, whether or not a result ever comes.
   */
  function refundVoided(game: GameState, marketId: string, bets: Map<string, { bet: BetEntry }>): void {
    if ((game.markets.get(marketId)?.voids.length ?? 0) === 0) return
    for (const [id, { bet }] of bets) {
      const verdict = judge(game, bet as BetTerms)
      const window = voidAt(game, bet.marketId, bet.stamp)
      if (verdict.reason !== 'VOIDED' || window === null || !isFinal(game, window.stamp)) continue
      bets.delete(id)
      if (unsettled.has(betKey(bet.userId, bet.id))) settle(bet, 'void')
    }
  }

  /**
   * Markets whose result is agreed and final, and past the correction deadline: pay the winners,
   * close the losers.
   */
  function settleResults(): void {
    let held = 0
    for (const [key, market] of awaiting) {
      const { marketId } = market
      const replica = replicas.replica(market.gameId)
      if (replica === undefined) continue
      refundVoided(replica.game, marketId, market.bets)
      const result = resultOf(replica.game, marketId)
      if (result.state === 'review') held += market.bets.size
      if (result.state !== 'agreed' || !isFinal(replica.game, result.stamp)) continue
      // A correction may still void bets until the deadline: pay only once it is final too.
      const deadline = correctionDeadline(replica.game, marketId)
      if (deadline !== null && !isFinal(replica.game, deadline)) continue
      for (const { bet, odds } of market.bets.values()) {
        if (unsettled.has(betKey(bet.userId, bet.id)))
          settle(bet, result.winners.includes(bet.selectionId) ? 'won' : 'lost', odds)
      }
      awaiting.delete(key)
    }
    stats.held = held
  }

  return {
    stats,
    pass() {
      for (const gameId of undecided.keys()) decideFinal(gameId)
      settleResults()
      flush()
    },
    openBets: () => unsettled.size,
    close: stopLedger,
  }
}
