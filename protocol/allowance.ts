/**
 * Moving a market's liability allowance between ledger shards, between API nodes: a node whose
 * shard has used its allowance asks a node serving another shard for some of that shard's unused
 * allowance (`allowance.grant[.<region>].<shard>`, queue group `bets-api`). The giving node appends
 * a grant to its shard and, once its fold applied it, the receipt to the asking shard; the reply
 * says how much moved and where the receipt is. The ledger fold enforces every step (ledger/), so a
 * node's answer never decides alone.
 */

import { isEntryId } from '../ledger/guards.ts'
import { MARKET_LIABILITY_CENTS_MAX } from '../ledger/index.ts'
import type { ApiError } from './errors.ts'
import { SHARDS_MAX } from './shards.ts'

export const ALLOWANCE_REQUEST_BYTES_MAX = 1024

export interface AllowanceRequest {
  /** Names the transfer: its grant and its receipt carry it, so a retry moves nothing twice. */
  readonly transferId: string
  readonly gameId: string
  readonly marketId: string
  /** The asking shard, where the receipt goes. */
  readonly toShard: number
  /** The most to move; the giving shard moves less when it has less to spare. */
  readonly wantCents: number
}

export type AllowanceReply =
  | {
      readonly ok: true
      readonly grantedCents: number
      /** Where the receipt stands in the asking shard's stream. */
      readonly receiptSeq: number
    }
  | { readonly ok: false; readonly error: ApiError }

/** A request as sent, validated; or the problems with it. */
export function parseAllowanceRequest(value: unknown): AllowanceRequest | string[] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return ['not an object']
  const raw = value as Record<string, unknown>
  const problems: string[] = []
  for (const key of ['transferId', 'gameId', 'marketId'] as const)
    if (!isEntryId(raw[key])) problems.push(`${key} is not an id`)
  const { toShard, wantCents } = raw
  if (!Number.isSafeInteger(toShard) || (toShard as number) < 0 || (toShard as number) >= SHARDS_MAX)
    problems.push(`toShard must be an integer 0-${SHARDS_MAX - 1}`)
  if (
    !Number.isSafeInteger(wantCents) ||
    (wantCents as number) < 1 ||
    (wantCents as number) > MARKET_LIABILITY_CENTS_MAX
  )
    problems.push(`wantCents must be an integer 1-${MARKET_LIABILITY_CENTS_MAX}`)
  if (problems.length > 0) return problems
  return {
    transferId: raw.transferId as string,
    gameId: raw.gameId as string,
    marketId: raw.marketId as string,
    toShard: toShard as number,
    wantCents: wantCents as number,
  }
}
