/**
 * The api process's options (beside the common ones in nodes/fabric/node-main.ts). Every bound is
 * the ledger's own maximum: an option may tighten what the fold accepts, never loosen it, or a bet
 * the node took would be folded as MALFORMED.
 */

import { AMOUNT_CENTS_MAX, MARKET_LIABILITY_CENTS_MAX, STAKE_CENTS_MAX } from '../../ledger/index.ts'
import { defineOptions } from '../fabric/config.ts'
import { DEFAULT_BET_LIMITS } from './bet-limits.ts'

export const options = defineOptions({
  stakeCentsMin: {
    type: 'integer',
    default: DEFAULT_BET_LIMITS.stakeCentsMin,
    min: 1,
    max: STAKE_CENTS_MAX,
    env: 'API_STAKE_CENTS_MIN',
    flag: '--stake-cents-min',
    doc: 'smallest stake',
  },
  stakeCentsMax: {
    type: 'integer',
    default: DEFAULT_BET_LIMITS.stakeCentsMax,
    min: 1,
    max: STAKE_CENTS_MAX,
    env: 'API_STAKE_CENTS_MAX',
    flag: '--stake-cents-max',
    doc: 'largest stake',
  },
  userOpenStakeCentsMax: {
    type: 'integer',
    default: DEFAULT_BET_LIMITS.userOpenStakeCentsMax,
    min: 1,
    max: AMOUNT_CENTS_MAX,
    env: 'API_USER_OPEN_STAKE_CENTS_MAX',
    flag: '--user-open-stake-cents-max',
    doc: 'open stakes one user may hold',
  },
  marketLiabilityCentsMax: {
    type: 'integer',
    default: DEFAULT_BET_LIMITS.marketLiabilityCentsMax,
    min: 1,
    max: MARKET_LIABILITY_CENTS_MAX,
    env: 'API_MARKET_LIABILITY_CENTS_MAX',
    flag: '--market-liability-cents-max',
    doc: 'what the book may lose on one market; each ledger shard starts with an equal share and takes more from the others when it runs out',
  },
  staleMsMax: {
    type: 'integer',
    default: DEFAULT_BET_LIMITS.staleMsMax,
    min: 10,
    max: 600_000,
    env: 'API_STALE_MS_MAX',
    flag: '--stale-ms-max',
    doc: 'refuse bets when a writer has been silent this long',
  },
  refusedPerUserPerMinuteMax: {
    type: 'integer',
    default: DEFAULT_BET_LIMITS.refusedPerUserPerMinuteMax,
    min: 1,
    max: 100_000,
    env: 'API_REFUSED_PER_USER_PER_MINUTE_MAX',
    flag: '--refused-per-user-per-minute-max',
    doc: 'placements of one user the ledger may refuse per minute before the node stops writing those its fold refuses',
  },
})
