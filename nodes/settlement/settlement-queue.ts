/**
 * Settlements decided and not yet appended, per shard, and their appends: one ledger message per
 * batch holding as many as fit (ledger/entries.ts), at most BATCHES_IN_FLIGHT_MAX at once. A batch
 * that fails goes back on its list for the next pass; the fold pays each bet once, so a batch
 * appended twice changes nothing.
 */

import type { Logger } from 'pino'
import {
  type BetEntry,
  SETTLEMENTS_PER_BATCH_MAX,
  type SettlementEntry,
  type SettlementOutcome,
} from '../../ledger/index.ts'
import { settlementIdOf } from '../../protocol/ids.ts'
import { type LedgerSync, shardOf } from '../fabric/ledger-sync.ts'
import { LEDGER_MESSAGE_BYTES_MAX } from '../fabric/streams.ts'

/** Settlement batches in flight at once; what does not fit waits for the next pass. */
export const BATCHES_IN_FLIGHT_MAX = 64
/** Room left in a batch message for its envelope (type, id and brackets), in bytes. */
const BATCH_ENVELOPE_BYTES = 256

export interface SettlementQueue {
  /** Decide a bet's settlement; it is appended by the next flush. */
  settle(bet: BetEntry, outcome: SettlementOutcome, odds?: number): void
  /** Append what is pending and still open, one batch per message. */
  flush(): void
}

export function createSettlementQueue(options: {
  readonly ledger: LedgerSync
  readonly log: Logger
  readonly stats: { settled: number; appendFailures: number }
  /** Whether a bet still needs settling (another node may have settled it meanwhile). */
  readonly isOpen: (userId: string, betId: string) => boolean
}): SettlementQueue {
  const { ledger, log, stats } = options
  /** Per shard, in the order they were decided. */
  const pending = new Map<number, SettlementEntry[]>()
  let inFlight = 0

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
      const list = decided.filter((entry) => options.isOpen(entry.userId, entry.betId))
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

  return { settle, flush }
}
