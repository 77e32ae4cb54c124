/**
 * Every code a client, an operator or a supervisor can get from the fabric, in one registry: what
 * it means, whether to retry, and how it travels (the HTTP status of the gateway's HTTP API, a
 * WebSocket close code, a process exit code). docs/errors.md is generated from this file
 * (`npx tsx scripts/errors-docs.ts`), and a test checks that it is current.
 */

import type { LedgerRejectReason } from '../ledger/index.ts'

export interface CodeInfo {
  readonly meaning: string
  readonly retry: string
  /** The HTTP status, for a code that answers an HTTP request of the gateway. */
  readonly http?: number
}

/** Codes of the bet API (`{ ok: false, error: { code, message } }` on NATS) and of its HTTP twin. */
export const API_ERRORS = {
  BAD_REQUEST: {
    meaning: 'not JSON, too large, or a field is missing or invalid (the message lists them)',
    retry: 'no: fix the request',
    http: 400,
  },
  STAKE_LIMIT: { meaning: 'the stake is outside `--stake-cents-min`..`--stake-cents-max`', retry: 'no' },
  USER_STAKE_LIMIT: {
    meaning:
      "the user's open stakes would pass `--user-open-stake-cents-max`, by this node's fold or at the bet's place in the ledger (exact)",
    retry: 'after a settlement',
  },
  MARKET_LIABILITY_LIMIT: {
    meaning:
      "the market's potential loss would pass `--market-liability-cents-max`: the user's ledger shard holds its share of the limit plus what other shards gave it, and the other shards had too little to spare when asked (the ledger fold enforces each shard's part, so the shards together never pass the limit)",
    retry: 'no; a retry may pass once bets on the market settle',
  },
  MARKET_ALLOWANCE_MOVING: {
    meaning:
      "the user's ledger shard has used its share of the market's liability limit and is asking the other shards for some of theirs; nothing was placed",
    retry: 'yes, in a moment, with the same bet id',
  },
  ALLOWANCE_SHORT: {
    meaning:
      '(between API nodes, on `allowance.grant`) the shard asked has no unused liability allowance on the market to give',
    retry: 'ask another shard',
  },
  UNKNOWN_GAME: { meaning: 'this node has no replica of the game', retry: 'later' },
  GAME_ARCHIVED: {
    meaning:
      'the match is over and archived (`--archive-after-ms` after it ended): its markets take no bets; its bets still answer lookups',
    retry: 'no',
  },
  REPLICA_STALE: {
    meaning: 'a writer of the game has been silent longer than `--stale-ms-max`',
    retry: 'later, with the same bet id',
  },
  CLOCK_DRIFT: {
    meaning:
      "this node's clock is further than the drift bound (5 s) from a writer's or its region's; nothing was placed",
    retry: 'later, with the same bet id',
  },
  LEDGER_UNAVAILABLE: {
    meaning:
      'JetStream did not acknowledge the bet, or this node could not read it back in time: the bet may stand',
    retry: 'yes, with the same bet id: the answer tells whether it stands',
  },
  INSUFFICIENT_FUNDS: {
    meaning: "the balance at the bet's position in the ledger did not cover the stake",
    retry: 'no',
  },
  LEDGER_LIMIT: {
    meaning: "the user's potential payout over open bets would pass what the ledger keeps exactly",
    retry: 'after a settlement',
  },
  BET_ID_REUSED: {
    meaning: 'this user already placed another bet under this id',
    retry: 'no: use a new id',
  },
  OVERLOADED: {
    meaning: 'too many bets await their final verdict on this node',
    retry: 'yes, with the same bet id',
  },
  WRONG_REGION: {
    meaning: "in a super-cluster: the user's ledger lives in another region",
    retry: 'yes, to `bets.place.<home region>.<shard>`',
  },
  WRONG_SHARD: {
    meaning: "this node does not serve the user's ledger shard (the request went to another shard's subject)",
    retry: "yes, to the subject of the user's shard (protocol/shards.ts, `shardOf`)",
  },
  INTERNAL: {
    meaning: 'the node failed unexpectedly while placing the bet (a bug; it is logged): the bet may stand',
    retry: 'yes, with the same bet id',
  },
} as const satisfies Record<string, CodeInfo>

export type ApiErrorCode = keyof typeof API_ERRORS

/**
 * Codes of the gateway: its `error` frames (the frame was refused, the connection goes on) and the
 * answers of its HTTP API (those with an HTTP status).
 */
export const GATEWAY_ERRORS = {
  BAD_FRAME: {
    meaning: 'not JSON, not an object, an unknown `type`, a missing, extra or invalid field',
    retry: 'no: fix the frame',
  },
  FRAME_TOO_LARGE: { meaning: 'a frame over `frame-bytes-max`', retry: 'no: send smaller frames' },
  RATE_LIMITED: {
    meaning: "over the connection's or the user's token bucket; `retryAfterMs` says when a frame will pass",
    retry: 'after `retryAfterMs`',
  },
  TOO_MANY_SUBSCRIPTIONS: { meaning: 'over `subscriptions-per-connection-max`', retry: 'no' },
  UNKNOWN_GAME: { meaning: "the gateway's replica has no such game", retry: 'later' },
  NOT_SUBSCRIBED: { meaning: '`unsubscribe` of a game the connection does not follow', retry: 'no' },
  BET_UNAVAILABLE: {
    meaning:
      'no API node answered within `answer-within-ms`, or its ledger append was not acknowledged: the bet may stand (as a refusal: no API node serves the shard now, or `placements-in-flight-max` was reached, and nothing was placed)',
    retry: 'yes, with the same bet id: the answer tells its status',
  },
  UNAUTHORIZED: { meaning: 'no token, or one that does not verify', retry: 'log in again', http: 401 },
  TOKEN_EXPIRED: { meaning: 'the token has expired', retry: 'refresh the token', http: 401 },
  FORBIDDEN: {
    meaning: 'the token is valid but names another user than the resource',
    retry: 'no',
    http: 403,
  },
  NOT_FOUND: { meaning: 'no such resource (or the demo login is off)', retry: 'no', http: 404 },
  UNAVAILABLE: {
    meaning: 'the gateway cannot answer now (its settlement query had no answer)',
    retry: 'later',
    http: 503,
  },
} as const satisfies Record<string, CodeInfo>

export type GatewayErrorCode = keyof typeof GATEWAY_ERRORS

/** WebSocket close codes of the gateway. */
export const CLOSE_CODES = {
  GOING_AWAY: { code: 1001, meaning: 'the gateway is shutting down', retry: 'reconnect' },
  TOO_BIG: {
    code: 1009,
    meaning: 'a frame larger than `frame-bytes-hard-max` (closed before it is read)',
    retry: 'send smaller frames',
  },
  UNAUTHORIZED: {
    code: 4001,
    meaning:
      'no token, a malformed one, a bad signature, a wrong `iss`/`aud`, or a `sub` that is not a user id',
    retry: 'log in again',
  },
  TOKEN_EXPIRED: { code: 4002, meaning: 'the token has expired', retry: 'refresh the token, reconnect' },
  ORIGIN_NOT_ALLOWED: { code: 4003, meaning: '`Origin` is not allowed', retry: 'no' },
  SLOW_CONSUMER: {
    code: 4008,
    meaning: 'too slow: the send buffer passed `close-bytes`, or the client lagged over `lagging-ms-max`',
    retry: 'reconnect and resume',
  },
  TOO_MANY_CONNECTIONS_FOR_USER: {
    code: 4009,
    meaning: 'the user holds `connections-per-user-max` sockets',
    retry: 'close another tab',
  },
  GATEWAY_FULL: {
    code: 4010,
    meaning: 'the gateway holds `connections-max` sockets',
    retry: 'reconnect later',
  },
  FLOODING: { code: 4029, meaning: '`flood-close-after` rate-limited frames in a row', retry: 'slow down' },
  TOO_MANY_UPGRADES: {
    code: 4030,
    meaning:
      'too many connection attempts: over `user-upgrades-per-second` (and `-burst`) for the user, or `ip-upgrades-per-second` (and `-burst`) for the client address (an IPv6 /64); the reason says in how many ms one will pass',
    retry: 'reconnect after that long, backing off further each time',
  },
} as const

/** How a refusal of the ledger fold reaches a client. */
export const LEDGER_REFUSALS: Readonly<Partial<Record<LedgerRejectReason, ApiErrorCode>>> = {
  INSUFFICIENT_FUNDS: 'INSUFFICIENT_FUNDS',
  USER_STAKE_LIMIT: 'USER_STAKE_LIMIT',
  MARKET_LIABILITY_LIMIT: 'MARKET_LIABILITY_LIMIT',
  LEDGER_LIMIT: 'LEDGER_LIMIT',
}

/** Exit codes of every node process. */
export const EXIT_CODES = {
  0: { meaning: 'stopped on SIGINT or SIGTERM, after a graceful shutdown', retry: 'no' },
  1: {
    meaning: 'bad configuration (one line per problem), or a shutdown that passed its deadline',
    retry: 'fix the configuration',
  },
  75: {
    meaning: "the node's derived state was found not to be its streams' (a fold or replica diverged)",
    retry: 'yes: its supervisor starts it again and it rebuilds from the log',
  },
} as const

export interface ApiError {
  readonly code: ApiErrorCode
  readonly message: string
}

export function apiError(code: ApiErrorCode, message: string): { ok: false; error: ApiError } {
  return { ok: false, error: { code, message } }
}
