/**
 * The gateway's WebSocket protocol, version 1 (docs/gateway.md): every frame is one JSON object
 * with a `type`. Frames from clients are untrusted and checked against the schemas below before
 * anything reads them; frames to clients are checked too, once per serialization (a delta is
 * serialized once per game, not once per client), so a bug cannot put a malformed frame on the
 * wire.
 */

import { Ajv, type ValidateFunction } from 'ajv'
import { ID_SOURCE, ODDS_POLICIES, type RejectReason } from '../crdt/index.ts'
import type { SettlementOutcome } from '../ledger/index.ts'
import { type ErrorCode as ApiErrorCode, BET_TERM_KEYS, type PlacedTerms } from '../protocol/bets.ts'
import { CLOSE_CODES, type GatewayErrorCode } from '../protocol/errors.ts'
import { BET_ID_SOURCE, GAME_ID_SOURCE } from '../protocol/ids.ts'

export const PROTOCOL_VERSION = 1
export const WS_PATH = `/v${PROTOCOL_VERSION}/ws`

/** Close codes the gateway uses, by name (protocol/errors.ts explains each). */
export const CLOSE = Object.fromEntries(
  Object.entries(CLOSE_CODES).map(([name, { code }]) => [name, code]),
) as { readonly [K in keyof typeof CLOSE_CODES]: (typeof CLOSE_CODES)[K]['code'] }

/** Codes of `error` frames and HTTP answers (protocol/errors.ts). */
export type { GatewayErrorCode }

const ID = { type: 'string', pattern: `^(?:${ID_SOURCE})$` } as const
const GAME_ID = { type: 'string', pattern: `^(?:${GAME_ID_SOURCE})$` } as const
const REF = { type: 'string', maxLength: 64 } as const
const BET_ID = { type: 'string', pattern: `^(?:${BET_ID_SOURCE})$` } as const
const CENTS = { type: 'integer', minimum: 0 } as const
/** A bet's terms (protocol/bets.ts), each key's schema: a placement's and a standing bet's. */
const TERMS = {
  gameId: GAME_ID,
  marketId: ID,
  selectionId: ID,
  stakeCents: { type: 'integer', minimum: 1, maximum: 1_000_000_000 },
  odds: { type: 'integer', minimum: 1001, maximum: 1_000_000 },
  policy: { enum: ODDS_POLICIES },
} as const satisfies Record<(typeof BET_TERM_KEYS)[number], unknown>

// ---- client -> gateway ------------------------------------------------------------------------

export interface SubscribeFrame {
  readonly type: 'subscribe'
  readonly ref?: string
  readonly gameId: string
  /** Resume after this point of an earlier subscription (same gateway epoch). */
  readonly resume?: { readonly epoch: string; readonly seq: number }
}
export interface UnsubscribeFrame {
  readonly type: 'unsubscribe'
  readonly ref?: string
  readonly gameId: string
}
export interface PlaceFrame extends PlacedTerms {
  readonly type: 'place'
  readonly ref?: string
  readonly betId: string
}
export interface PingFrame {
  readonly type: 'ping'
  readonly ref?: string
}
export type ClientFrame = SubscribeFrame | UnsubscribeFrame | PlaceFrame | PingFrame

const clientSchema = {
  oneOf: [
    {
      type: 'object',
      additionalProperties: false,
      required: ['type', 'gameId'],
      properties: {
        type: { const: 'subscribe' },
        ref: REF,
        gameId: GAME_ID,
        resume: {
          type: 'object',
          additionalProperties: false,
          required: ['epoch', 'seq'],
          properties: { epoch: { type: 'string', maxLength: 64 }, seq: { type: 'integer', minimum: 0 } },
        },
      },
    },
    {
      type: 'object',
      additionalProperties: false,
      required: ['type', 'gameId'],
      properties: { type: { const: 'unsubscribe' }, ref: REF, gameId: GAME_ID },
    },
    {
      type: 'object',
      additionalProperties: false,
      required: ['type', 'betId', ...BET_TERM_KEYS],
      properties: { type: { const: 'place' }, ref: REF, betId: BET_ID, ...TERMS },
    },
    {
      type: 'object',
      additionalProperties: false,
      required: ['type'],
      properties: { type: { const: 'ping' }, ref: REF },
    },
  ],
} as const

// ---- gateway -> client ------------------------------------------------------------------------

export interface MarketView {
  readonly marketId: string
  readonly name: string
  readonly selections: readonly { readonly id: string; readonly name: string }[]
  readonly status: 'open' | 'suspended' | 'closed'
  /** Decimal odds in thousandths per selection id. */
  readonly prices: Readonly<Record<string, number>>
  /** `pending`, `agreed` (with winners) or `review` (writers disagree: nobody is paid yet). */
  readonly result:
    | { readonly state: 'pending' | 'review' }
    | { readonly state: 'agreed'; readonly winners: readonly string[] }
  /** When the market's current status was set (wall ms of its stamp). */
  readonly sinceMs: number
}

export interface ClockView {
  readonly period: number
  readonly running: boolean
  /** The game clock at `atMs`; a running clock has moved on by `now - atMs` since. */
  readonly clockMs: number
  readonly atMs: number
}

export interface GameView {
  readonly gameId: string
  readonly clock: ClockView | null
  /** Points won per side, from the agreed results of the point-winner markets. */
  readonly score: Readonly<Record<string, number>>
  /** Markets not yet closed, and the most recently closed few. */
  readonly markets: readonly MarketView[]
}

export interface HelloFrame {
  readonly type: 'hello'
  readonly protocol: number
  readonly userId: string
  readonly epoch: string
  readonly serverTimeMs: number
  readonly limits: Readonly<Record<string, number>>
}
export interface SnapshotFrame {
  readonly type: 'snapshot'
  readonly ref?: string
  readonly gameId: string
  readonly epoch: string
  readonly seq: number
  readonly view: GameView
}
export interface DeltaFrame {
  readonly type: 'delta'
  readonly gameId: string
  readonly epoch: string
  readonly seq: number
  readonly clock?: ClockView | null
  readonly score?: Readonly<Record<string, number>>
  /** Markets that are new or changed, whole. */
  readonly markets?: readonly MarketView[]
  /** Markets that left the view. */
  readonly removed?: readonly string[]
  /** Wall ms at which the gateway saw the change (for latency figures). */
  readonly atMs: number
}
/** After a resume: the missed deltas (perhaps none) were sent; the client is at `seq`. */
export interface SubscribedFrame {
  readonly type: 'subscribed'
  readonly ref?: string
  readonly gameId: string
  readonly epoch: string
  readonly seq: number
}
export interface UnsubscribedFrame {
  readonly type: 'unsubscribed'
  readonly ref?: string
  readonly gameId: string
}

interface BetFrameBase {
  readonly type: 'bet'
  readonly ref?: string
  readonly betId: string
  /** Wall ms at which the gateway passed this status on. */
  readonly atMs: number
}
export interface ProvisionalBetFrame extends BetFrameBase {
  readonly status: 'provisional'
  readonly stamp: string
  readonly accepted: boolean
  readonly reason: RejectReason | null
  readonly odds: number | null
  readonly gameClockMs: number | null
  readonly balanceCents: number
}
export interface FinalBetFrame extends BetFrameBase {
  readonly status: 'final'
  readonly stamp: string
  readonly accepted: boolean
  readonly reason: RejectReason | null
  readonly odds: number | null
  readonly gameClockMs: number | null
  readonly finalAtMs: number
  readonly balanceCents: number
}
export interface SettledBetFrame extends BetFrameBase {
  readonly status: 'settled'
  readonly outcome: SettlementOutcome
  readonly payoutCents: number
  readonly balanceCents: number
}
/** The bet never entered the book: refused before or by the ledger (a coded reason). */
export interface RefusedBetFrame extends BetFrameBase {
  readonly status: 'refused'
  readonly code: ApiErrorCode | 'BET_UNAVAILABLE'
  readonly message: string
  /**
   * With BET_ID_REUSED: the bet that stands under the id. The refusal is of this placement's body
   * only; the standing bet's statuses go on (its answer, if not passed yet, came just before).
   */
  readonly standing?: StandingBetView
}
type BetFields<F> = Omit<F, 'type' | 'betId' | 'atMs' | 'ref' | 'standing'>
/** The bet booked under a reused id: its terms, and its own answer as a `bet` frame holds it. */
export interface StandingBetView {
  readonly terms: PlacedTerms
  readonly reply: BetFields<ProvisionalBetFrame> | BetFields<RefusedBetFrame>
}
export type BetFrame = ProvisionalBetFrame | FinalBetFrame | SettledBetFrame | RefusedBetFrame

export interface PongFrame {
  readonly type: 'pong'
  readonly ref?: string
  readonly serverTimeMs: number
}
export interface ErrorFrame {
  readonly type: 'error'
  readonly ref?: string
  readonly code: GatewayErrorCode
  readonly message: string
  readonly retryAfterMs?: number
}
export type ServerFrame =
  | HelloFrame
  | SnapshotFrame
  | DeltaFrame
  | SubscribedFrame
  | UnsubscribedFrame
  | BetFrame
  | PongFrame
  | ErrorFrame

const CLOCK = {
  type: ['object', 'null'],
  additionalProperties: false,
  required: ['period', 'running', 'clockMs', 'atMs'],
  properties: {
    period: { type: 'integer' },
    running: { type: 'boolean' },
    clockMs: { type: 'number' },
    atMs: { type: 'number' },
  },
} as const
const SCORE = { type: 'object', additionalProperties: { type: 'integer', minimum: 0 } } as const
const MARKET = {
  type: 'object',
  additionalProperties: false,
  required: ['marketId', 'name', 'selections', 'status', 'prices', 'result', 'sinceMs'],
  properties: {
    marketId: ID,
    name: { type: 'string' },
    selections: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'name'],
        properties: { id: ID, name: { type: 'string' } },
      },
    },
    status: { enum: ['open', 'suspended', 'closed'] },
    prices: { type: 'object', additionalProperties: { type: 'integer' } },
    result: {
      type: 'object',
      required: ['state'],
      properties: {
        state: { enum: ['pending', 'agreed', 'review'] },
        winners: { type: 'array', items: ID },
      },
    },
    sinceMs: { type: 'number' },
  },
} as const
const VERDICT_FIELDS = {
  stamp: { type: 'string' },
  accepted: { type: 'boolean' },
  reason: { type: ['string', 'null'] },
  odds: { type: ['integer', 'null'] },
  gameClockMs: { type: ['number', 'null'] },
  balanceCents: CENTS,
} as const
const REFUSAL_FIELDS = {
  status: { const: 'refused' },
  code: { type: 'string' },
  message: { type: 'string' },
} as const
const BET_BASE = { type: { const: 'bet' }, ref: REF, betId: BET_ID, atMs: { type: 'number' } } as const
const object = (required: readonly string[], properties: Record<string, unknown>) => ({
  type: 'object',
  additionalProperties: false,
  required,
  properties,
})

const serverSchema = {
  oneOf: [
    object(['type', 'protocol', 'userId', 'epoch', 'serverTimeMs', 'limits'], {
      type: { const: 'hello' },
      protocol: { const: PROTOCOL_VERSION },
      userId: { type: 'string' },
      epoch: { type: 'string' },
      serverTimeMs: { type: 'number' },
      limits: { type: 'object', additionalProperties: { type: 'number' } },
    }),
    object(['type', 'gameId', 'epoch', 'seq', 'view'], {
      type: { const: 'snapshot' },
      ref: REF,
      gameId: GAME_ID,
      epoch: { type: 'string' },
      seq: { type: 'integer', minimum: 0 },
      view: object(['gameId', 'clock', 'score', 'markets'], {
        gameId: GAME_ID,
        clock: CLOCK,
        score: SCORE,
        markets: { type: 'array', items: MARKET },
      }),
    }),
    object(['type', 'gameId', 'epoch', 'seq', 'atMs'], {
      type: { const: 'delta' },
      gameId: GAME_ID,
      epoch: { type: 'string' },
      seq: { type: 'integer', minimum: 1 },
      clock: CLOCK,
      score: SCORE,
      markets: { type: 'array', items: MARKET },
      removed: { type: 'array', items: ID },
      atMs: { type: 'number' },
    }),
    object(['type', 'gameId', 'epoch', 'seq'], {
      type: { const: 'subscribed' },
      ref: REF,
      gameId: GAME_ID,
      epoch: { type: 'string' },
      seq: { type: 'integer', minimum: 0 },
    }),
    object(['type', 'gameId'], { type: { const: 'unsubscribed' }, ref: REF, gameId: GAME_ID }),
    object(['type', 'betId', 'atMs', 'status', ...Object.keys(VERDICT_FIELDS)], {
      ...BET_BASE,
      status: { const: 'provisional' },
      ...VERDICT_FIELDS,
    }),
    object(['type', 'betId', 'atMs', 'status', 'finalAtMs', ...Object.keys(VERDICT_FIELDS)], {
      ...BET_BASE,
      status: { const: 'final' },
      ...VERDICT_FIELDS,
      finalAtMs: { type: 'number' },
    }),
    object(['type', 'betId', 'atMs', 'status', 'outcome', 'payoutCents', 'balanceCents'], {
      ...BET_BASE,
      status: { const: 'settled' },
      outcome: { enum: ['won', 'lost', 'void', 'rejected'] },
      payoutCents: CENTS,
      balanceCents: CENTS,
    }),
    object(['type', 'betId', 'atMs', 'status', 'code', 'message'], {
      ...BET_BASE,
      ...REFUSAL_FIELDS,
      standing: object(['terms', 'reply'], {
        terms: object(BET_TERM_KEYS, TERMS),
        reply: {
          oneOf: [
            object(['status', ...Object.keys(VERDICT_FIELDS)], {
              status: { const: 'provisional' },
              ...VERDICT_FIELDS,
            }),
            object(['status', 'code', 'message'], REFUSAL_FIELDS),
          ],
        },
      }),
    }),
    object(['type', 'serverTimeMs'], { type: { const: 'pong' }, ref: REF, serverTimeMs: { type: 'number' } }),
    object(['type', 'code', 'message'], {
      type: { const: 'error' },
      ref: REF,
      code: { type: 'string' },
      message: { type: 'string' },
      retryAfterMs: { type: 'integer', minimum: 0 },
    }),
  ],
} as const

const ajv = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true })
const validateClient: ValidateFunction<ClientFrame> = ajv.compile<ClientFrame>(clientSchema)
const validateServer: ValidateFunction<ServerFrame> = ajv.compile<ServerFrame>(serverSchema)

function describeProblem(value: unknown): string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'a frame is a JSON object'
  const type = (value as { type?: unknown }).type
  const known = ['subscribe', 'unsubscribe', 'place', 'ping']
  if (typeof type !== 'string' || !known.includes(type))
    return `type must be one of ${known.join(', ')}; docs/gateway.md lists each frame's fields`
  // Of oneOf's branches, report the errors of the one whose type matched.
  const errors = (validateClient.errors ?? []).filter(
    (error) => error.schemaPath.startsWith(`#/oneOf/${known.indexOf(type)}/`) && error.keyword !== 'const',
  )
  const first = errors[0]
  if (first === undefined) return `a ${type} frame has other fields (docs/gateway.md)`
  const where = first.instancePath ? first.instancePath.slice(1) : type
  const extra =
    first.keyword === 'additionalProperties'
      ? ` ${String((first.params as { additionalProperty?: string }).additionalProperty).slice(0, 40)}`
      : ''
  return `${where}: ${first.message ?? 'invalid'}${extra}`
}

/** The `ref` of a frame, if it has a usable one: an error about the frame repeats it. */
function refOf(value: unknown): string | undefined {
  const ref = (value as { ref?: unknown } | null)?.ref
  return typeof ref === 'string' && ref.length <= REF.maxLength ? ref : undefined
}

/** Parse and check a client frame: the frame, or a sentence saying what is wrong with it. */
export function parseClientFrame(
  text: string,
): ClientFrame | { readonly problem: string; readonly ref: string | undefined } {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return { problem: 'the frame is not JSON', ref: undefined }
  }
  if (validateClient(value)) return value
  return { problem: describeProblem(value), ref: refOf(value) }
}

/** The `ref` of a frame that will not be handled (rate-limited): parsed only to answer it. */
export function peekRef(text: string): string | undefined {
  try {
    return refOf(JSON.parse(text))
  } catch {
    return undefined
  }
}

/** Serialize a frame for the wire, checking it against the protocol first. */
export function encodeFrame(frame: ServerFrame): Buffer {
  if (!validateServer(frame)) {
    const detail = JSON.stringify(validateServer.errors?.slice(0, 3))
    throw new TypeError(
      `gateway bug: a ${(frame as { type: string }).type} frame breaks the protocol: ${detail}`,
    )
  }
  return Buffer.from(JSON.stringify(frame))
}

/** For tests and clients: is this a frame the protocol allows from the gateway? */
export function isServerFrame(value: unknown): value is ServerFrame {
  return validateServer(value)
}
