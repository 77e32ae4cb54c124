/**
 * What a chaos run records, and the files it records it in: the client-side history of every
 * placement, answer, status, deposit and fault; the trader's own log of what it committed; the
 * final state collected from every node; and the run's timeline marks. The checker (checker.ts)
 * reads nothing else, so these types are the contract between the runner and the checker.
 *
 * Everything here is read back from files that a crashed or buggy runner may have half written, so
 * every value is validated field by field before it is trusted. A line or document that fails is
 * reported with its line number and what is wrong; it is never dropped silently, because a lost
 * history line could hide exactly the bet the checker should have caught.
 *
 * Records keyed by ids (balances, bets, verdicts) are rebuilt as null-prototype objects, so that an
 * id such as `constructor` or `__proto__` is an ordinary key and never reaches a prototype.
 *
 * A bet id is its user's own: two users may each hold a bet of one id, and they are two bets. So
 * every event about a bet names its user, and every per-bet record is keyed by the bet's key,
 * `betKeyOf(userId, betId)` (protocol/ids.ts), as the ledger fold keys it.
 */

import { createReadStream, createWriteStream, type WriteStream } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import {
  isStampKey,
  ODDS_MAX,
  ODDS_MIN,
  ODDS_POLICIES,
  type OddsPolicy,
  type RejectReason,
} from '../../crdt/index.ts'
import { type LedgerSnapshot, SETTLEMENT_OUTCOMES, type SettlementOutcome } from '../../ledger/index.ts'
import {
  anchored,
  BET_ID_LENGTH_MAX,
  BET_ID_SOURCE,
  betKeyOf,
  ENTRY_ID_PATTERN,
  entryKeyParts,
  GAME_ID_SOURCE,
  isUserId,
  NODE_ID_SOURCE,
  USER_ID_SOURCE,
} from '../../protocol/ids.ts'

// ---------------------------------------------------------------------------------------------
// Limits

/** One history line; the largest real event (a refused answer with its message) is far smaller. */
export const HISTORY_LINE_CHARS_MAX = 16_384
/**
 * One node's final state is one line, and holds every bet of the run: about 300 characters a bet
 * (ledger and verdict), so this allows some 800,000 bets while keeping a garbage line bounded.
 */
export const FINAL_STATE_LINE_CHARS_MAX = 256 * 1024 * 1024
/** Problems kept with their text per file; further ones are only counted. */
export const PROBLEMS_KEPT_MAX = 100
/** Free-text fields (error messages, fault details). */
export const TEXT_LENGTH_MAX = 1_000
/** Ids of bets, as the wire allows them. */
export { BET_ID_LENGTH_MAX }
/** Ids of users, games, markets, selections and nodes. */
export const ID_LENGTH_MAX = 64
/** Error and refusal codes. */
export const CODE_LENGTH_MAX = 64

export const REJECT_REASONS: readonly RejectReason[] = [
  'UNKNOWN_MARKET',
  'UNKNOWN_SELECTION',
  'MARKET_NOT_OPEN',
  'SELECTION_NOT_OFFERED',
  'PRICE_CHANGED',
  'VOIDED',
]

/** Faults the runner injects; a new kind of fault is added here so that the files stay checked. */
export type FaultKind = 'partition' | 'kill' | 'pause' | 'delay' | 'loss' | 'skew' | 'hostile' | 'heal'
export const FAULT_KINDS: readonly FaultKind[] = [
  'partition',
  'kill',
  'pause',
  'delay',
  'loss',
  'skew',
  'hostile',
  'heal',
]

export type MarketStatus = 'open' | 'suspended' | 'closed'
export const MARKET_STATUSES: readonly MarketStatus[] = ['open', 'suspended', 'closed']

export type NodeKind = 'api' | 'settlement' | 'gateway' | 'trader'
export const NODE_KINDS: readonly NodeKind[] = ['api', 'settlement', 'gateway', 'trader']

// ---------------------------------------------------------------------------------------------
// History events: what the clients did and saw, and what the runner did to the cluster

interface EventBase {
  /** Wall-clock ms at which the runner recorded the event. */
  readonly atMs: number
}

/** What names a bet in the history: its user and its id (a bet id is only unique per user). */
interface BetEventBase extends EventBase {
  readonly userId: string
  readonly betId: string
}

/** A client sent a placement. `via` is the gateway or API node it went through. */
export interface PlaceEvent extends BetEventBase {
  readonly type: 'place'
  readonly gameId: string
  readonly marketId: string
  readonly selectionId: string
  readonly stakeCents: number
  /** Decimal odds in thousandths the bettor took. */
  readonly odds: number
  readonly policy: OddsPolicy
  readonly via: string
}

/** The placement was durably booked and judged on the answering node's replica. */
export interface ProvisionalAnswer extends BetEventBase {
  readonly type: 'answer'
  readonly kind: 'provisional'
  readonly stamp: string
  readonly accepted: boolean
  readonly reason: RejectReason | null
  readonly odds: number | null
  readonly gameClockMs: number | null
  readonly balanceCents: number
}

/** `refused`: a coded refusal (the bet never entered the book); `error`: anything else coded. */
export interface RefusedAnswer extends BetEventBase {
  readonly type: 'answer'
  readonly kind: 'refused' | 'error'
  readonly code: string
  readonly message: string
}

/** No answer within the client's deadline: the bet may or may not be in the book. */
export interface TimeoutAnswer extends BetEventBase {
  readonly type: 'answer'
  readonly kind: 'timeout'
}

export type AnswerEvent = ProvisionalAnswer | RefusedAnswer | TimeoutAnswer

export interface FinalStatusEvent extends BetEventBase {
  readonly type: 'status'
  readonly status: 'final'
  readonly stamp: string
  readonly accepted: boolean
  readonly reason: RejectReason | null
  readonly odds: number | null
  readonly gameClockMs: number | null
}

export interface SettledStatusEvent extends BetEventBase {
  readonly type: 'status'
  readonly status: 'settled'
  readonly outcome: SettlementOutcome
  readonly payoutCents: number
  readonly balanceCents: number
}

export type StatusEvent = FinalStatusEvent | SettledStatusEvent

export interface FaultEvent extends EventBase {
  readonly type: 'fault'
  readonly kind: FaultKind
  /** What the fault hit: a node id, a server, a link such as `region-a|region-b`. */
  readonly target: string
  readonly phase: 'start' | 'end'
  readonly detail?: string
}

/** A deposit the runner requested; `acknowledged` once the ledger confirmed it durable. */
export interface DepositEvent extends EventBase {
  readonly type: 'deposit'
  readonly userId: string
  readonly amountCents: number
  readonly acknowledged: boolean
}

export type HistoryEvent = PlaceEvent | AnswerEvent | StatusEvent | FaultEvent | DepositEvent

// ---------------------------------------------------------------------------------------------
// The trader's log: what the writer of each game committed, the truth acceptances are checked against

export interface MarketStateEntry {
  readonly stamp: string
  readonly status: MarketStatus
  /** Decimal odds in thousandths per selection id. */
  readonly prices: Readonly<Record<string, number>>
}

/** Bets on the market stamped in [from, to] are void. */
export interface VoidWindow {
  readonly marketId: string
  readonly from: string
  readonly to: string
}

export interface AgreedResult {
  readonly marketId: string
  readonly winners: readonly string[]
}

export interface TraderGameLog {
  /** Per market id, every state the trader committed, in stamp order. */
  readonly markets: Readonly<Record<string, readonly MarketStateEntry[]>>
  readonly voids: readonly VoidWindow[]
  readonly results: readonly AgreedResult[]
}

export interface TraderLog {
  readonly games: Readonly<Record<string, TraderGameLog>>
}

// ---------------------------------------------------------------------------------------------
// Final state of every node, collected once the run has quiesced

export interface LedgerBetView {
  readonly userId: string
  readonly stakeCents: number
  /** The odds the bettor took. */
  readonly odds: number
  readonly marketId: string
  readonly stamp: string
  /** The fold's bet status: 'open', 'rejected' (refused for funds) or 'settled'. */
  readonly status: string
  readonly payoutCents?: number
  readonly outcome?: string
  /** The odds the payout was computed at (the odds the bet stands at, for a won bet). */
  readonly settledOdds?: number
}

export interface LedgerTotalsView {
  readonly depositsCents: number
  readonly withdrawalsCents: number
  readonly stakesCents: number
  readonly payoutsCents: number
}

export interface LedgerView {
  readonly balances: Readonly<Record<string, number>>
  /** Per bet key (`betKeyOf(userId, betId)`); each bet's userId is its key's. */
  readonly bets: Readonly<Record<string, LedgerBetView>>
  /** How many settlement entries the fold applied per bet key (a correct fold never exceeds 1). */
  readonly settlementsPerBet: Readonly<Record<string, number>>
  readonly totals: LedgerTotalsView
}

/** A replica's verdict on one bet, judged on the node's replica at collection time. */
export interface VerdictView {
  readonly accepted: boolean
  readonly reason: string | null
  readonly gameClockMs: number | null
  readonly final: boolean
}

export interface ReplicaView {
  readonly stateHash: string
  /** Per bet key. */
  readonly verdicts: Readonly<Record<string, VerdictView>>
}

export interface NodeFinalState {
  readonly node: string
  readonly kind: NodeKind
  /** The region whose ledger the node folds; absent in a one-region run. */
  readonly region?: string
  readonly ledger?: LedgerView
  /** Per game id. */
  readonly replicas?: Readonly<Record<string, ReplicaView>>
}

/** The run's timeline: its bounds, and when the last fault healed (null when none was injected). */
export interface RunMarks {
  readonly startedAtMs: number
  readonly endedAtMs: number
  readonly healedAtMs: number | null
}

// ---------------------------------------------------------------------------------------------
// Validation

/** A validated value, or what is wrong with the input. */
export type Parsed<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly problem: string }

/** Thrown inside the validators only, and turned into a `Parsed` problem at their entry points. */
class FormatProblem extends Error {}

type Raw = Record<string, unknown>

/** Any id or code the history holds: bets, users, games, markets, selections, nodes, codes. */
const ID_PATTERN = anchored([BET_ID_SOURCE, USER_ID_SOURCE, GAME_ID_SOURCE, NODE_ID_SOURCE].join('|'))

function fail(path: string, expected: string, value: unknown): never {
  const shown = JSON.stringify(value)
  const text = shown === undefined ? 'nothing' : shown.length > 60 ? `${shown.slice(0, 60)}...` : shown
  throw new FormatProblem(`${path}: expected ${expected}, got ${text}`)
}

function asRecord(value: unknown, path: string): Raw {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail(path, 'an object', value)
  return value as Raw
}

/** An own data property only, so inherited values never pass for fields. */
function field(raw: Raw, key: string): unknown {
  return Object.getOwnPropertyDescriptor(raw, key)?.value
}

function onlyKeys(raw: Raw, path: string, allowed: readonly string[]): void {
  for (const key of Object.keys(raw)) {
    if (!allowed.includes(key)) throw new FormatProblem(`${path}: unknown field ${JSON.stringify(key)}`)
  }
}

function readId(raw: Raw, key: string, path: string, lengthMax = ID_LENGTH_MAX): string {
  const value = field(raw, key)
  if (typeof value !== 'string' || value.length > lengthMax || !ID_PATTERN.test(value)) {
    fail(`${path}.${key}`, `an id of 1-${lengthMax} characters of A-Z a-z 0-9 _ . : -`, value)
  }
  return value
}

function isId(value: string, lengthMax = ID_LENGTH_MAX): boolean {
  return value.length <= lengthMax && ID_PATTERN.test(value)
}

/**
 * A bet's key as the fold and the node states hold it: `bet/<userId>/<betId>` (protocol/ids.ts).
 * The id is held to the ledger's grammar, not the client's: the fold keeps any entry id the stream
 * carried, and a node state must still be read whole.
 */
export function isBetKey(value: string): boolean {
  const { type, userId, id } = entryKeyParts(value)
  return type === 'bet' && isUserId(userId) && ENTRY_ID_PATTERN.test(id)
}

/** What the keys of a record must be. */
interface KeyRule {
  readonly test: (key: string) => boolean
  readonly expected: string
}

const ID_KEYS: KeyRule = {
  test: (key) => isId(key),
  expected: `ids of at most ${ID_LENGTH_MAX} characters`,
}
const BET_KEYS: KeyRule = { test: isBetKey, expected: 'bet keys, bet/<userId>/<betId>' }

function readText(raw: Raw, key: string, path: string, lengthMax: number): string {
  const value = field(raw, key)
  if (typeof value !== 'string' || value.length > lengthMax)
    fail(`${path}.${key}`, `text of at most ${lengthMax}`, value)
  return value
}

function readStamp(raw: Raw, key: string, path: string): string {
  const value = field(raw, key)
  if (!isStampKey(value)) fail(`${path}.${key}`, 'an encoded HLC stamp', value)
  return value
}

function readBoolean(raw: Raw, key: string, path: string): boolean {
  const value = field(raw, key)
  if (typeof value !== 'boolean') fail(`${path}.${key}`, 'a boolean', value)
  return value
}

function readMs(raw: Raw, key: string, path: string): number {
  const value = field(raw, key)
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    fail(`${path}.${key}`, 'a non-negative number of ms', value)
  }
  return value
}

/** Cents that can never be negative: amounts, stakes, payouts. */
function readCents(raw: Raw, key: string, path: string): number {
  const value = field(raw, key)
  if (!Number.isSafeInteger(value) || (value as number) < 0) fail(`${path}.${key}`, 'whole cents >= 0', value)
  return value as number
}

/** Cents as a node reported them: a broken node may report a negative balance, which the checker must see. */
function readSignedCents(raw: Raw, key: string, path: string): number {
  const value = field(raw, key)
  if (!Number.isSafeInteger(value)) fail(`${path}.${key}`, 'whole cents', value)
  return value as number
}

function isOddsValue(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= ODDS_MIN && (value as number) <= ODDS_MAX
}

function readOdds(raw: Raw, key: string, path: string): number {
  const value = field(raw, key)
  if (!isOddsValue(value)) fail(`${path}.${key}`, `odds in thousandths, ${ODDS_MIN}-${ODDS_MAX}`, value)
  return value
}

function readNullableOdds(raw: Raw, key: string, path: string): number | null {
  return field(raw, key) === null ? null : readOdds(raw, key, path)
}

function readGameClock(raw: Raw, key: string, path: string): number | null {
  const value = field(raw, key)
  if (value === null) return null
  if (typeof value !== 'number' || !Number.isFinite(value))
    fail(`${path}.${key}`, 'a game clock in ms or null', value)
  return value
}

function readOneOf<T extends string>(raw: Raw, key: string, path: string, allowed: readonly T[]): T {
  const value = field(raw, key)
  if (!allowed.includes(value as T)) fail(`${path}.${key}`, `one of ${allowed.join(', ')}`, value)
  return value as T
}

function readReason(raw: Raw, key: string, path: string): RejectReason | null {
  return field(raw, key) === null ? null : readOneOf(raw, key, path, REJECT_REASONS)
}

/** A verdict must be consistent with itself: accepted exactly when it has no reason. */
function readVerdictFields(raw: Raw, path: string) {
  const accepted = readBoolean(raw, 'accepted', path)
  const reason = readReason(raw, 'reason', path)
  if (accepted !== (reason === null))
    fail(`${path}.reason`, accepted ? 'null when accepted' : 'a reason', reason)
  return {
    accepted,
    reason,
    odds: readNullableOdds(raw, 'odds', path),
    gameClockMs: readGameClock(raw, 'gameClockMs', path),
  }
}

/** An id-keyed record rebuilt on a null prototype, each value validated. */
function readMap<T>(
  value: unknown,
  path: string,
  keys: KeyRule,
  item: (value: unknown, path: string, key: string) => T,
): Record<string, T> {
  const raw = asRecord(value, path)
  const out: Record<string, T> = Object.create(null)
  for (const [key, entry] of Object.entries(raw)) {
    if (!keys.test(key)) fail(path, `keys that are ${keys.expected}`, key)
    out[key] = item(entry, `${path}.${key}`, key)
  }
  return out
}

function readArray<T>(value: unknown, path: string, item: (value: unknown, path: string) => T): T[] {
  if (!Array.isArray(value)) fail(path, 'an array', value)
  return value.map((entry, index) => item(entry, `${path}[${index}]`))
}

function parsing<T>(read: () => T): Parsed<T> {
  try {
    return { ok: true, value: read() }
  } catch (error) {
    if (error instanceof FormatProblem) return { ok: false, problem: error.message }
    throw error
  }
}

// ---- history events -----------------------------------------------------------------------------

/** The user and id that name the bet an event is about. */
function readBetNames(raw: Raw, path: string): { userId: string; betId: string } {
  return { userId: readId(raw, 'userId', path), betId: readId(raw, 'betId', path, BET_ID_LENGTH_MAX) }
}

const BET_EVENT_KEYS = ['type', 'atMs', 'userId', 'betId']

const PLACE_KEYS = [
  ...BET_EVENT_KEYS,
  'gameId',
  'marketId',
  'selectionId',
  'stakeCents',
  'odds',
  'policy',
  'via',
]

function readPlace(raw: Raw, atMs: number): PlaceEvent {
  onlyKeys(raw, 'place', PLACE_KEYS)
  const stakeCents = readCents(raw, 'stakeCents', 'place')
  if (stakeCents === 0) fail('place.stakeCents', 'a positive stake', stakeCents)
  return {
    type: 'place',
    atMs,
    ...readBetNames(raw, 'place'),
    gameId: readId(raw, 'gameId', 'place'),
    marketId: readId(raw, 'marketId', 'place'),
    selectionId: readId(raw, 'selectionId', 'place'),
    stakeCents,
    odds: readOdds(raw, 'odds', 'place'),
    policy: readOneOf(raw, 'policy', 'place', ODDS_POLICIES),
    via: readId(raw, 'via', 'place'),
  }
}

function readAnswer(raw: Raw, atMs: number): AnswerEvent {
  const names = readBetNames(raw, 'answer')
  const kind = readOneOf(raw, 'kind', 'answer', ['provisional', 'refused', 'error', 'timeout'] as const)
  const path = `answer(${kind})`
  switch (kind) {
    case 'provisional': {
      const keys = [...BET_EVENT_KEYS, 'kind', 'stamp', 'accepted', 'reason', 'odds', 'gameClockMs']
      onlyKeys(raw, path, [...keys, 'balanceCents'])
      const stamp = readStamp(raw, 'stamp', path)
      const verdict = readVerdictFields(raw, path)
      return {
        type: 'answer',
        atMs,
        ...names,
        kind,
        stamp,
        ...verdict,
        balanceCents: readSignedCents(raw, 'balanceCents', path),
      }
    }
    case 'refused':
    case 'error': {
      onlyKeys(raw, path, [...BET_EVENT_KEYS, 'kind', 'code', 'message'])
      const code = readText(raw, 'code', path, CODE_LENGTH_MAX)
      return {
        type: 'answer',
        atMs,
        ...names,
        kind,
        code,
        message: readText(raw, 'message', path, TEXT_LENGTH_MAX),
      }
    }
    case 'timeout':
      onlyKeys(raw, path, [...BET_EVENT_KEYS, 'kind'])
      return { type: 'answer', atMs, ...names, kind }
  }
}

function readStatus(raw: Raw, atMs: number): StatusEvent {
  const names = readBetNames(raw, 'status')
  const status = readOneOf(raw, 'status', 'status', ['final', 'settled'] as const)
  const path = `status(${status})`
  if (status === 'final') {
    onlyKeys(raw, path, [...BET_EVENT_KEYS, 'status', 'stamp', 'accepted', 'reason', 'odds', 'gameClockMs'])
    const stamp = readStamp(raw, 'stamp', path)
    return { type: 'status', atMs, ...names, status, stamp, ...readVerdictFields(raw, path) }
  }
  onlyKeys(raw, path, [...BET_EVENT_KEYS, 'status', 'outcome', 'payoutCents', 'balanceCents'])
  return {
    type: 'status',
    atMs,
    ...names,
    status,
    outcome: readOneOf(raw, 'outcome', path, SETTLEMENT_OUTCOMES),
    payoutCents: readCents(raw, 'payoutCents', path),
    balanceCents: readSignedCents(raw, 'balanceCents', path),
  }
}

function readFault(raw: Raw, atMs: number): FaultEvent {
  onlyKeys(raw, 'fault', ['type', 'atMs', 'kind', 'target', 'phase', 'detail'])
  const fault = {
    type: 'fault' as const,
    atMs,
    kind: readOneOf(raw, 'kind', 'fault', FAULT_KINDS),
    target: readText(raw, 'target', 'fault', TEXT_LENGTH_MAX),
    phase: readOneOf(raw, 'phase', 'fault', ['start', 'end'] as const),
  }
  return field(raw, 'detail') === undefined
    ? fault
    : { ...fault, detail: readText(raw, 'detail', 'fault', TEXT_LENGTH_MAX) }
}

function readDeposit(raw: Raw, atMs: number): DepositEvent {
  onlyKeys(raw, 'deposit', ['type', 'atMs', 'userId', 'amountCents', 'acknowledged'])
  const amountCents = readCents(raw, 'amountCents', 'deposit')
  if (amountCents === 0) fail('deposit.amountCents', 'a positive amount', amountCents)
  return {
    type: 'deposit',
    atMs,
    userId: readId(raw, 'userId', 'deposit'),
    amountCents,
    acknowledged: readBoolean(raw, 'acknowledged', 'deposit'),
  }
}

/** Validate one history event; unknown fields are refused so that a misspelt field is caught. */
export function parseHistoryEvent(value: unknown): Parsed<HistoryEvent> {
  return parsing(() => {
    const raw = asRecord(value, 'event')
    const type = readOneOf(raw, 'type', 'event', ['place', 'answer', 'status', 'fault', 'deposit'] as const)
    const atMs = readMs(raw, 'atMs', type)
    switch (type) {
      case 'place':
        return readPlace(raw, atMs)
      case 'answer':
        return readAnswer(raw, atMs)
      case 'status':
        return readStatus(raw, atMs)
      case 'fault':
        return readFault(raw, atMs)
      case 'deposit':
        return readDeposit(raw, atMs)
    }
  })
}

// ---- trader log -------------------------------------------------------------------------------

function readMarketEntries(value: unknown, path: string): MarketStateEntry[] {
  const entries = readArray(value, path, (item, at) => {
    const raw = asRecord(item, at)
    onlyKeys(raw, at, ['stamp', 'status', 'prices'])
    return {
      stamp: readStamp(raw, 'stamp', at),
      status: readOneOf(raw, 'status', at, MARKET_STATUSES),
      prices: readMap(field(raw, 'prices'), `${at}.prices`, ID_KEYS, (odds, oddsPath) =>
        isOddsValue(odds) ? odds : fail(oddsPath, `odds in thousandths, ${ODDS_MIN}-${ODDS_MAX}`, odds),
      ),
    }
  })
  // The checker finds the state at a stamp by binary search, which needs strict stamp order.
  for (let i = 1; i < entries.length; i++) {
    const [before, after] = [entries[i - 1] as MarketStateEntry, entries[i] as MarketStateEntry]
    if (before.stamp >= after.stamp) fail(`${path}[${i}].stamp`, `a stamp after ${before.stamp}`, after.stamp)
  }
  return entries
}

function readVoid(value: unknown, path: string): VoidWindow {
  const raw = asRecord(value, path)
  onlyKeys(raw, path, ['marketId', 'from', 'to'])
  const from = readStamp(raw, 'from', path)
  const to = readStamp(raw, 'to', path)
  if (to < from) fail(`${path}.to`, `a stamp at or after ${from}`, to)
  return { marketId: readId(raw, 'marketId', path), from, to }
}

function readResults(value: unknown, path: string): AgreedResult[] {
  const results = readArray(value, path, (item, at) => {
    const raw = asRecord(item, at)
    onlyKeys(raw, at, ['marketId', 'winners'])
    const winners = readArray(field(raw, 'winners'), `${at}.winners`, (winner, winnerPath) =>
      typeof winner === 'string' && isId(winner) ? winner : fail(winnerPath, 'a selection id', winner),
    )
    return { marketId: readId(raw, 'marketId', at), winners }
  })
  const seen = new Set<string>()
  for (const result of results) {
    if (seen.has(result.marketId)) fail(path, 'one agreed result per market', result.marketId)
    seen.add(result.marketId)
  }
  return results
}

export function parseTraderLog(value: unknown): Parsed<TraderLog> {
  return parsing(() => {
    const raw = asRecord(value, 'traderLog')
    onlyKeys(raw, 'traderLog', ['games'])
    const games = readMap(field(raw, 'games'), 'games', ID_KEYS, (game, path) => {
      const gameRaw = asRecord(game, path)
      onlyKeys(gameRaw, path, ['markets', 'voids', 'results'])
      return {
        markets: readMap(field(gameRaw, 'markets'), `${path}.markets`, ID_KEYS, readMarketEntries),
        voids: readArray(field(gameRaw, 'voids'), `${path}.voids`, readVoid),
        results: readResults(field(gameRaw, 'results'), `${path}.results`),
      }
    })
    return { games }
  })
}

// ---- final states -----------------------------------------------------------------------------

function readLedgerBet(value: unknown, path: string): LedgerBetView {
  const raw = asRecord(value, path)
  const optional = ['payoutCents', 'outcome', 'settledOdds']
  onlyKeys(raw, path, ['userId', 'stakeCents', 'odds', 'marketId', 'stamp', 'status', ...optional])
  const bet: LedgerBetView = {
    userId: readId(raw, 'userId', path),
    stakeCents: readCents(raw, 'stakeCents', path),
    odds: readOdds(raw, 'odds', path),
    marketId: readId(raw, 'marketId', path),
    stamp: readText(raw, 'stamp', path, ID_LENGTH_MAX),
    status: readId(raw, 'status', path),
  }
  const extra: { payoutCents?: number; outcome?: string; settledOdds?: number } = {}
  if (field(raw, 'payoutCents') !== undefined) extra.payoutCents = readCents(raw, 'payoutCents', path)
  if (field(raw, 'outcome') !== undefined) extra.outcome = readId(raw, 'outcome', path)
  if (field(raw, 'settledOdds') !== undefined) extra.settledOdds = readOdds(raw, 'settledOdds', path)
  return { ...bet, ...extra }
}

function readLedger(value: unknown, path: string): LedgerView {
  const raw = asRecord(value, path)
  onlyKeys(raw, path, ['balances', 'bets', 'settlementsPerBet', 'totals'])
  const totals = asRecord(field(raw, 'totals'), `${path}.totals`)
  const flows = ['depositsCents', 'withdrawalsCents', 'stakesCents', 'payoutsCents']
  onlyKeys(totals, `${path}.totals`, flows)
  const [depositsCents, withdrawalsCents, stakesCents, payoutsCents] = flows.map((key) =>
    readSignedCents(totals, key, `${path}.totals`),
  ) as [number, number, number, number]
  return {
    balances: readMap(field(raw, 'balances'), `${path}.balances`, ID_KEYS, (cents, at) =>
      Number.isSafeInteger(cents) ? (cents as number) : fail(at, 'whole cents', cents),
    ),
    bets: readMap(field(raw, 'bets'), `${path}.bets`, BET_KEYS, (bet, at, key) => {
      const view = readLedgerBet(bet, at)
      const owner = entryKeyParts(key).userId
      return view.userId === owner ? view : fail(`${at}.userId`, `${owner}, the user of its key`, view.userId)
    }),
    settlementsPerBet: readMap(
      field(raw, 'settlementsPerBet'),
      `${path}.settlementsPerBet`,
      BET_KEYS,
      (count, at) =>
        Number.isSafeInteger(count) && (count as number) >= 0
          ? (count as number)
          : fail(at, 'a count', count),
    ),
    totals: { depositsCents, withdrawalsCents, stakesCents, payoutsCents },
  }
}

function readVerdictView(value: unknown, path: string): VerdictView {
  const raw = asRecord(value, path)
  onlyKeys(raw, path, ['accepted', 'reason', 'gameClockMs', 'final'])
  const reason = field(raw, 'reason')
  if (reason !== null && (typeof reason !== 'string' || !isId(reason, CODE_LENGTH_MAX))) {
    fail(`${path}.reason`, 'a reason code or null', reason)
  }
  return {
    accepted: readBoolean(raw, 'accepted', path),
    reason,
    gameClockMs: readGameClock(raw, 'gameClockMs', path),
    final: readBoolean(raw, 'final', path),
  }
}

function readReplica(value: unknown, path: string): ReplicaView {
  const raw = asRecord(value, path)
  onlyKeys(raw, path, ['stateHash', 'verdicts'])
  return {
    stateHash: readText(raw, 'stateHash', path, 256),
    verdicts: readMap(field(raw, 'verdicts'), `${path}.verdicts`, BET_KEYS, readVerdictView),
  }
}

export function parseNodeFinalState(value: unknown): Parsed<NodeFinalState> {
  return parsing(() => {
    const raw = asRecord(value, 'node')
    onlyKeys(raw, 'node', ['node', 'kind', 'region', 'ledger', 'replicas'])
    const node = readId(raw, 'node', 'node')
    const path = `node ${node}`
    const state: { -readonly [K in keyof NodeFinalState]: NodeFinalState[K] } = {
      node,
      kind: readOneOf(raw, 'kind', path, NODE_KINDS),
    }
    if (field(raw, 'region') !== undefined) state.region = readId(raw, 'region', path)
    if (field(raw, 'ledger') !== undefined) state.ledger = readLedger(field(raw, 'ledger'), `${path}.ledger`)
    if (field(raw, 'replicas') !== undefined) {
      state.replicas = readMap(field(raw, 'replicas'), `${path}.replicas`, ID_KEYS, readReplica)
    }
    return state
  })
}

export function parseRunMarks(value: unknown): Parsed<RunMarks> {
  return parsing(() => {
    const raw = asRecord(value, 'marks')
    onlyKeys(raw, 'marks', ['startedAtMs', 'endedAtMs', 'healedAtMs'])
    const startedAtMs = readMs(raw, 'startedAtMs', 'marks')
    const endedAtMs = readMs(raw, 'endedAtMs', 'marks')
    if (endedAtMs < startedAtMs) fail('marks.endedAtMs', `a time at or after ${startedAtMs}`, endedAtMs)
    const healedAtMs = field(raw, 'healedAtMs') === null ? null : readMs(raw, 'healedAtMs', 'marks')
    return { startedAtMs, endedAtMs, healedAtMs }
  })
}

// ---------------------------------------------------------------------------------------------
// From a ledger fold to its final-state view

/**
 * The ledger view of a fold's snapshot. `appliedSettlements` lists the bet key of every settlement
 * entry the fold applied, as the runner saw them go by (a ledger listener's results); without it,
 * each settled bet counts one settlement, which is all a snapshot can tell, and so the double-payout
 * check can then only fail on a fold that is itself broken.
 */
export function ledgerViewOf(snapshot: LedgerSnapshot, appliedSettlements?: Iterable<string>): LedgerView {
  const balances: Record<string, number> = Object.create(null)
  for (const { userId, balanceCents } of snapshot.balances) balances[userId] = balanceCents
  const bets: Record<string, LedgerBetView> = Object.create(null)
  const settlementsPerBet: Record<string, number> = Object.create(null)
  // Object literals whole rather than spread from a base: a snapshot holds every bet of the run.
  for (const bet of snapshot.bets) {
    const { userId, stakeCents, odds, marketId, stamp, status } = bet
    const key = betKeyOf(userId, bet.betId)
    if (bet.status !== 'settled') {
      bets[key] = { userId, stakeCents, odds, marketId, stamp, status }
      continue
    }
    const { payoutCents, outcome, settledOdds } = bet
    bets[key] = { userId, stakeCents, odds, marketId, stamp, status, payoutCents, outcome, settledOdds }
    if (appliedSettlements === undefined) settlementsPerBet[key] = 1
  }
  for (const key of appliedSettlements ?? []) settlementsPerBet[key] = (settlementsPerBet[key] ?? 0) + 1
  return { balances, bets, settlementsPerBet, totals: { ...snapshot.flows } }
}

// ---------------------------------------------------------------------------------------------
// Files

/** The files of one run directory. */
export const RUN_FILES = {
  history: 'history.jsonl',
  traderLog: 'trader-log.json',
  finalStates: 'final-states.jsonl',
  marks: 'marks.json',
} as const

export interface FileProblem {
  readonly file: string
  /** 1-based line of a JSON-lines file; 0 for a whole document. */
  readonly line: number
  readonly problem: string
}

/** The valid values of a JSON-lines file, and every line that was not one. */
export interface JsonLines<T> {
  readonly values: T[]
  /** The first PROBLEMS_KEPT_MAX problems. */
  readonly problems: FileProblem[]
  /** All problems, kept or not. */
  readonly problemCount: number
}

/** Parse one line into `values`, or say what is wrong with it. */
function lineProblem<T>(
  text: string,
  parse: (value: unknown) => Parsed<T>,
  values: T[],
  lineCharsMax: number,
): string | null {
  if (text.length > lineCharsMax) return `line longer than ${lineCharsMax} characters`
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return 'not JSON (a line cut short by a crash reads like this)'
  }
  const parsed = parse(value)
  if (!parsed.ok) return parsed.problem
  values.push(parsed.value)
  return null
}

function collector<T>(file: string, parse: (value: unknown) => Parsed<T>, lineCharsMax: number) {
  const values: T[] = []
  const problems: FileProblem[] = []
  let problemCount = 0
  let line = 0
  return {
    take(text: string): void {
      line++
      // Blank lines carry nothing; a partly written line is not blank and is reported below.
      if (text.trim() === '') return
      const problem = lineProblem(text, parse, values, lineCharsMax)
      if (problem === null) return
      problemCount++
      if (problems.length < PROBLEMS_KEPT_MAX) problems.push({ file, line, problem })
    },
    done: (): JsonLines<T> => ({ values, problems, problemCount }),
  }
}

export interface JsonLinesOptions {
  /** The name problems are reported under. */
  readonly file?: string
  /** Longer lines are reported, not parsed; HISTORY_LINE_CHARS_MAX unless told. */
  readonly lineCharsMax?: number
}

/** Validate JSON-lines text already in memory. */
export function parseJsonLines<T>(
  text: string,
  parse: (value: unknown) => Parsed<T>,
  options: JsonLinesOptions = {},
): JsonLines<T> {
  const lines = collector(options.file ?? '<text>', parse, options.lineCharsMax ?? HISTORY_LINE_CHARS_MAX)
  for (const line of text.split('\n')) lines.take(line)
  return lines.done()
}

/** Read and validate a JSON-lines file line by line, without holding the text in memory. */
export async function readJsonLines<T>(
  path: string,
  parse: (value: unknown) => Parsed<T>,
  options: JsonLinesOptions = {},
): Promise<JsonLines<T>> {
  const lines = collector(options.file ?? path, parse, options.lineCharsMax ?? HISTORY_LINE_CHARS_MAX)
  const input = createInterface({
    input: createReadStream(path, 'utf8'),
    crlfDelay: Number.POSITIVE_INFINITY,
  })
  for await (const line of input) lines.take(line)
  return lines.done()
}

export interface JsonLinesWriter<T> {
  /** Validate and append one value; an invalid value is a runner bug and throws. */
  append(value: T): void
  /** Flush and close the file. */
  close(): Promise<void>
}

/**
 * A JSON-lines file the runner appends to as events happen. Values are validated on the way in,
 * so a runner bug shows at the event that caused it rather than as a problem line at check time.
 */
export function createJsonLinesWriter<T>(
  path: string,
  parse: (value: unknown) => Parsed<T>,
): JsonLinesWriter<T> {
  const stream: WriteStream = createWriteStream(path, { flags: 'w', encoding: 'utf8' })
  let failure: Error | null = null
  stream.on('error', (error) => {
    failure = error
  })
  return {
    append(value) {
      if (failure !== null) throw failure
      const parsed = parse(value)
      if (!parsed.ok) throw new TypeError(`refusing to write an invalid record to ${path}: ${parsed.problem}`)
      stream.write(`${JSON.stringify(value)}\n`)
    },
    close() {
      return new Promise((resolve, reject) => {
        stream.end((error?: Error | null) => {
          const cause = error ?? failure
          if (cause) reject(cause)
          else resolve()
        })
      })
    },
  }
}

/** Validate and write a whole JSON document (the trader log, the marks). */
export async function writeJsonFile<T>(
  path: string,
  value: T,
  parse: (value: unknown) => Parsed<T>,
): Promise<void> {
  const parsed = parse(value)
  if (!parsed.ok) throw new TypeError(`refusing to write an invalid document to ${path}: ${parsed.problem}`)
  await writeFile(path, `${JSON.stringify(value)}\n`)
}

export async function readJsonFile<T>(
  path: string,
  parse: (value: unknown) => Parsed<T>,
): Promise<Parsed<T>> {
  let value: unknown
  try {
    value = JSON.parse(await readFile(path, 'utf8'))
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    return { ok: false, problem: code === undefined ? 'not JSON' : `cannot read: ${code}` }
  }
  return parse(value)
}

/** Everything a run directory holds, validated. */
export interface RunRecord {
  readonly history: HistoryEvent[]
  readonly traderLog: TraderLog | null
  readonly finalStates: NodeFinalState[]
  readonly marks: RunMarks | null
  /** Every file's problems; a run with problems cannot be checked with full confidence. */
  readonly problems: FileProblem[]
  readonly problemCount: number
}

export async function readRun(dir: string): Promise<RunRecord> {
  const history = await readJsonLines(join(dir, RUN_FILES.history), parseHistoryEvent)
  const finalStates = await readJsonLines(join(dir, RUN_FILES.finalStates), parseNodeFinalState, {
    lineCharsMax: FINAL_STATE_LINE_CHARS_MAX,
  })
  const traderLog = await readJsonFile(join(dir, RUN_FILES.traderLog), parseTraderLog)
  const marks = await readJsonFile(join(dir, RUN_FILES.marks), parseRunMarks)
  const documentProblems: FileProblem[] = []
  if (!traderLog.ok) documentProblems.push({ file: RUN_FILES.traderLog, line: 0, problem: traderLog.problem })
  if (!marks.ok) documentProblems.push({ file: RUN_FILES.marks, line: 0, problem: marks.problem })
  return {
    history: history.values,
    traderLog: traderLog.ok ? traderLog.value : null,
    finalStates: finalStates.values,
    marks: marks.ok ? marks.value : null,
    problems: [...documentProblems, ...history.problems, ...finalStates.problems],
    problemCount: documentProblems.length + history.problemCount + finalStates.problemCount,
  }
}
