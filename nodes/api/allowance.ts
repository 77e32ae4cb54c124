/**
 * The market liability escrow on an API node: a bounded counter over the region's ledger shards.
 * Each shard holds a share of every market's limit (`--market-liability-cents-max` / shards), and
 * its fold refuses a bet past that share plus the allowance transfers moved (ledger/state.ts), so
 * the shards together never pass the limit, whatever the interleaving and with no lock.
 *
 * Taking: a bet that would pass its shard's allowance is refused MARKET_ALLOWANCE_MOVING (nothing is
 * placed) while this node asks the other shards, one after another, for their unused allowance,
 * until it holds enough for the bet or every shard has answered that it has none to spare. Then
 * bets on the market are refused MARKET_LIABILITY_LIMIT for SHORT_HOLD_MS before it asks again.
 *
 * Giving: a request on a shard this node serves is answered from the shard's fold: a grant of at
 * most its unused allowance, appended to the shard; once the fold applied it, the receipt, appended
 * to the asking shard (written blind: this node need not serve it). A retried request of the same
 * transfer finds the applied grant and writes its receipt again, which the asking shard's fold
 * counts once. A grant whose receipt is never written (both nodes die between the two appends)
 * strands its allowance: the market then takes less than its limit, never more.
 */

import type { Logger } from 'pino'
import { type AllowanceGrantEntry, BOOK_USER_ID } from '../../ledger/index.ts'
import type { AllowanceReply, AllowanceRequest } from '../../protocol/allowance.ts'
import { apiError, type PlaceBetReply } from '../../protocol/bets.ts'
import { APPEND_TIMEOUT_MS, type LedgerSync } from '../fabric/ledger-sync.ts'

/** Markets this node moves allowance for at once; past it a bet waits for one to finish. */
export const ALLOWANCE_MOVES_MAX = 1_000
/** How long a market every shard had nothing to spare for is refused before the shards are asked again. */
export const SHORT_HOLD_MS = 1_000
/** Markets remembered as short at once; the oldest is forgotten past it (it is asked again). */
export const SHORT_MARKETS_MAX = 10_000
/** A giving node appends the grant, reads it back and appends the receipt: each within its deadline. */
export const ASK_TIMEOUT_MS = 3 * APPEND_TIMEOUT_MS
/** Tries of one shard, same transfer id, when its answer did not come or said the ledger failed. */
export const ASK_ATTEMPTS = 2

export type Ask = (shard: number, request: AllowanceRequest, timeoutMs: number) => Promise<unknown>

export interface AllowanceOptions {
  readonly ledger: LedgerSync
  /** Each shard's share of a market's liability limit. */
  readonly shareCents: number
  /** Sends a request to a node serving `shard`, and resolves with its (untrusted) answer. */
  readonly ask: Ask
  readonly log: Logger
  /** Waits for this node's fold to reach an entry (the bet service's fold wait). */
  readonly foldWaitMs: number
  readonly now?: () => number
}

export interface Allowances {
  /**
   * Null when the shard's allowance on the market covers `cents` more liability; otherwise the
   * coded refusal, having started to ask the other shards for more when that may help.
   */
  check(shard: number, gameId: string, marketId: string, cents: number): PlaceBetReply | null
  /** Answer another node's request for allowance of `shard`, a shard this node serves. */
  give(shard: number, request: AllowanceRequest): Promise<AllowanceReply>
  /** Transfers this node asked for, by how they ended. */
  stats(): Readonly<Record<'moved' | 'short' | 'failed', number>>
}

export function createAllowances(options: AllowanceOptions): Allowances {
  const { ledger, shareCents, ask, log, foldWaitMs } = options
  const now = options.now ?? Date.now
  const newTransferId = () => `a${crypto.randomUUID().replaceAll('-', '')}`
  /** Shard and market keys this node is moving allowance to. */
  const moving = new Set<string>()
  /** Shard and market keys every other shard had nothing for, until when. */
  const short = new Map<string, number>()
  const counts = { moved: 0, short: 0, failed: 0 }

  const unused = (shard: number, gameId: string, marketId: string) => {
    const fold = ledger.fold(shard)
    return shareCents + fold.allowanceMoved(gameId, marketId) - fold.marketLiability(gameId, marketId)
  }

  function check(shard: number, gameId: string, marketId: string, cents: number): PlaceBetReply | null {
    const missing = cents - unused(shard, gameId, marketId)
    if (missing <= 0) return null
    const limit = (what: string) =>
      apiError('MARKET_LIABILITY_LIMIT', `the market's liability would pass its limit: ${what}`)
    if (cents > shareCents * ledger.shards) return limit('this bet alone is larger')
    if (ledger.shards === 1) return limit('the one ledger shard holds all of it')
    const key = `${shard} ${gameId} ${marketId}`
    const wait = apiError(
      'MARKET_ALLOWANCE_MOVING',
      `ledger shard ${shard} has used its share of the market's liability limit and is asking the other shards for more; nothing was placed: retry in a moment with the same bet id`,
    )
    if (moving.has(key)) return wait
    if ((short.get(key) ?? 0) > now()) return limit('no other ledger shard had any to spare')
    if (moving.size >= ALLOWANCE_MOVES_MAX) return wait
    short.delete(key)
    moving.add(key)
    gather(shard, gameId, marketId, missing)
      .then((ended) => {
        counts[ended] += 1
        if (ended !== 'short') return
        short.set(key, now() + SHORT_HOLD_MS)
        if (short.size > SHORT_MARKETS_MAX) short.delete(short.keys().next().value as string)
      })
      .finally(() => moving.delete(key))
    return wait
  }

  /** Ask the other shards in turn, from the next one on, until `missing` cents have moved here. */
  async function gather(
    shard: number,
    gameId: string,
    marketId: string,
    missing: number,
  ): Promise<'moved' | 'short' | 'failed'> {
    let still = missing
    let failed = false
    for (let step = 1; step < ledger.shards && still > 0; step++) {
      const from = (shard + step) % ledger.shards
      // Half a share at least, so that a busy market does not ask for every bet.
      const request: AllowanceRequest = {
        transferId: newTransferId(),
        gameId,
        marketId,
        toShard: shard,
        wantCents: Math.max(still, Math.ceil(shareCents / 2)),
      }
      const moved = await askShard(from, request)
      if (moved === null) failed = true
      else still -= moved
    }
    if (still <= 0) return 'moved'
    return failed ? 'failed' : 'short'
  }

  /** Cents that moved from `from` and that this node's fold now holds; 0 for none, null on failure. */
  async function askShard(from: number, request: AllowanceRequest): Promise<number | null> {
    for (let attempt = 1; attempt <= ASK_ATTEMPTS; attempt++) {
      let answer: unknown
      try {
        answer = await ask(from, request, ASK_TIMEOUT_MS)
      } catch (error) {
        log.warn({ err: error, from, transferId: request.transferId }, 'asking a shard for allowance failed')
        continue
      }
      const reply = readReply(answer)
      if (reply === 'short') return 0
      if (reply === null) continue
      try {
        await ledger.resultAt(request.toShard, reply.receiptSeq, foldWaitMs)
      } catch (error) {
        log.warn(
          { err: error, transferId: request.transferId },
          'an allowance receipt was not folded in time',
        )
      }
      return reply.grantedCents
    }
    return null
  }

  async function give(shard: number, request: AllowanceRequest): Promise<AllowanceReply> {
    if (!ledger.serves(shard))
      return apiError('WRONG_SHARD', `ledger shard ${shard} is not served by this node`)
    if (request.toShard === shard || request.toShard >= ledger.shards)
      return apiError('BAD_REQUEST', `toShard must be another of the region's ${ledger.shards} shards`)
    const known = ledger.fold(shard).transfer('allowance-grant', request.transferId)
    if (known?.type === 'allowance-grant') return deliver(shard, known)
    const cents = Math.min(request.wantCents, unused(shard, request.gameId, request.marketId))
    if (cents < 1)
      return apiError('ALLOWANCE_SHORT', `shard ${shard} has no allowance on the market to spare`)
    const entry: AllowanceGrantEntry = {
      type: 'allowance-grant',
      id: request.transferId,
      userId: BOOK_USER_ID,
      gameId: request.gameId,
      marketId: request.marketId,
      toShard: request.toShard,
      cents,
      shareCents,
    }
    try {
      const seq = await ledger.appendTransfer(shard, entry)
      const result = await ledger.resultAt(shard, seq, foldWaitMs)
      const applied = ledger.fold(shard).transfer('allowance-grant', request.transferId)
      if (applied?.type === 'allowance-grant') return deliver(shard, applied)
      if (result.status === 'rejected' && result.reason === 'ALLOWANCE_SHORT')
        return apiError('ALLOWANCE_SHORT', `shard ${shard}'s allowance went to bets first`)
      return apiError(
        'LEDGER_UNAVAILABLE',
        `the grant was ${result.status}: ask again with the same transfer id`,
      )
    } catch (error) {
      log.warn({ err: error, transferId: request.transferId }, 'granting allowance failed')
      return apiError(
        'LEDGER_UNAVAILABLE',
        'the ledger did not take the grant: ask again with the same transfer id',
      )
    }
  }

  /** Write the receipt of an applied grant to the shard it names: again for a retry, counted once. */
  async function deliver(shard: number, grant: AllowanceGrantEntry): Promise<AllowanceReply> {
    try {
      const receiptSeq = await ledger.appendTransfer(grant.toShard, {
        type: 'allowance-receipt',
        id: grant.id,
        userId: BOOK_USER_ID,
        gameId: grant.gameId,
        marketId: grant.marketId,
        fromShard: shard,
        cents: grant.cents,
      })
      return { ok: true, grantedCents: grant.cents, receiptSeq }
    } catch (error) {
      log.warn({ err: error, transferId: grant.id }, 'writing an allowance receipt failed')
      return apiError(
        'LEDGER_UNAVAILABLE',
        'the grant stands but its receipt was not written: ask again with the same transfer id',
      )
    }
  }

  return { check, give, stats: () => ({ ...counts }) }
}

/** A reply as this node reads it: the receipt, 'short', or null for a failure worth another try. */
function readReply(answer: unknown): { grantedCents: number; receiptSeq: number } | 'short' | null {
  if (typeof answer !== 'object' || answer === null) return null
  const reply = answer as Record<string, unknown>
  if (reply.ok === true && Number.isSafeInteger(reply.grantedCents) && Number.isSafeInteger(reply.receiptSeq))
    return { grantedCents: reply.grantedCents as number, receiptSeq: reply.receiptSeq as number }
  const code = (reply.error as { code?: unknown } | undefined)?.code
  return code === 'ALLOWANCE_SHORT' ? 'short' : null
}
