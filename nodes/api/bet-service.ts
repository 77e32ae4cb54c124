/**
 * Bet acceptance. Any number of API nodes serve `bets.place` in one queue group and need no
 * coordination: each request is validated, stamped by this node's clock, judged on its replica,
 * appended to the user's ledger shard (the stake debit is the bet record; the bet id is the
 * message id, so a retry is stored once), and folded up to its own entry for the funds verdict.
 * The reply is the provisional verdict; the final one is published on the user's status subject
 * as soon as every writer's watermark has passed the bet's stamp.
 *
 * Nothing is accepted that is not durable: if the ledger append is not acknowledged, the bet is
 * refused with LEDGER_UNAVAILABLE. A replica whose writers have gone quiet is stale and refuses.
 */

import type { Logger } from 'pino'
import {
  activeWriters,
  type BetTerms,
  encodeStamp,
  type Hlc,
  isFinal,
  judge,
  type Replica,
  stampWall,
  watermarkOf,
} from '../../crdt/index.ts'
import { type BetState, type LedgerRejectReason, liabilityCents } from '../../ledger/index.ts'
import {
  apiError,
  type FinalStatus,
  type PlaceBetReply,
  type PlaceBetRequest,
  type ProvisionalReply,
  parsePlaceBet,
  REQUEST_BYTES_MAX,
  type RefusedReply,
  sameTerms,
  termsOf,
} from '../../protocol/bets.ts'
import { API_ERRORS, type ApiError, LEDGER_REFUSALS } from '../../protocol/errors.ts'
import { createFinalityQueue, type FinalityQueue } from '../fabric/finality-queue.ts'
import type { LedgerSync } from '../fabric/ledger-sync.ts'
import type { ReplicaSync } from '../fabric/replica-sync.ts'
import { createRefusalWindow } from './refusal-window.ts'

export interface BetLimits {
  readonly stakeCentsMin: number
  readonly stakeCentsMax: number
  /** Open stakes one user may hold at once. */
  readonly userOpenStakeCentsMax: number
  /**
   * What the book may lose on one market: the winnings of its open bets at the odds offered at
   * their stamps. Each ledger shard holds an equal allowance of it, which its fold enforces.
   */
  readonly marketLiabilityCentsMax: number
  /** A replica whose slowest active writer's watermark is older than this refuses bets. */
  readonly staleMsMax: number
  readonly foldWaitMs: number
  /** Bets waiting for a final verdict; past this the node refuses new ones (OVERLOADED). */
  readonly pendingFinalMax: number
  /**
   * Placements of one user the ledger may refuse per minute on this node; past it, the node
   * refuses, without writing them, the user's placements its fold says the ledger would refuse.
   */
  readonly refusedPerUserPerMinuteMax: number
  /** Users whose refusals this node counts at once (refusal-window.ts). */
  readonly refusalUsersMax: number
}

export const DEFAULT_BET_LIMITS: BetLimits = {
  stakeCentsMin: 10,
  stakeCentsMax: 100_000,
  userOpenStakeCentsMax: 500_000,
  marketLiabilityCentsMax: 10_000_000,
  staleMsMax: 2_000,
  foldWaitMs: 2_000,
  pendingFinalMax: 50_000,
  refusedPerUserPerMinuteMax: 30,
  refusalUsersMax: 100_000,
}

export interface BetServiceOptions {
  readonly replicas: ReplicaSync
  readonly ledger: LedgerSync
  readonly hlc: Hlc
  readonly log: Logger
  readonly publishStatus: (userId: string, status: FinalStatus) => void
  readonly limits?: Partial<BetLimits>
  readonly now?: () => number
  /** In a super-cluster: whether the user's ledger lives in this node's region. */
  readonly homeHere?: (userId: string) => boolean
}

interface PendingBet {
  readonly betId: string
  readonly userId: string
  readonly stamp: string
  readonly terms: BetTerms
}

export interface BetService {
  place(data: Uint8Array): Promise<PlaceBetReply>
  pendingFinal(): number
  close(): void
}

const sameBet = (record: BetState, request: PlaceBetRequest) =>
  record.userId === request.userId && sameTerms(record, request)

export function createBetService(options: BetServiceOptions): BetService {
  const limits = { ...DEFAULT_BET_LIMITS, ...options.limits }
  const { replicas, ledger, hlc, log } = options
  const now = options.now ?? Date.now
  // The fold of each shard enforces its share, so the shares never sum past the limit.
  const marketAllowanceCents = Math.floor(limits.marketLiabilityCentsMax / ledger.shards)
  const refusals = createRefusalWindow({
    perMinuteMax: limits.refusedPerUserPerMinuteMax,
    usersMax: limits.refusalUsersMax,
    now,
  })
  const finals = createFinalAnnouncer({ ...options, now })
  const staleness = (gameId: string) =>
    stalenessOf(replicas.replica(gameId), gameId, now(), limits.staleMsMax)

  function checkLimits(request: PlaceBetRequest): PlaceBetReply | null {
    if (request.stakeCents < limits.stakeCentsMin || request.stakeCents > limits.stakeCentsMax) {
      return apiError('STAKE_LIMIT', `stake must be ${limits.stakeCentsMin}-${limits.stakeCentsMax} cents`)
    }
    const open = ledger.foldFor(request.userId).exposure(request.userId).openStakesCents
    if (open + request.stakeCents > limits.userOpenStakeCentsMax) {
      return apiError('USER_STAKE_LIMIT', `open stakes would pass ${limits.userOpenStakeCentsMax} cents`)
    }
    return null
  }

  /** A user past the refusal cap: what the fold already refuses is not written again. */
  function checkAbuse(request: PlaceBetRequest): PlaceBetReply | null {
    if (!refusals.abusing(request.userId)) return null
    if (ledger.foldFor(request.userId).balance(request.userId) >= request.stakeCents) return null
    refusals.record(request.userId)
    return apiError(
      'INSUFFICIENT_FUNDS',
      `the balance cannot cover the stake, and past ${limits.refusedPerUserPerMinuteMax} refused placements a minute nothing more is written: deposit, or wait`,
    )
  }

  /**
   * The market's liability as this node's fold of the user's shard holds it, with this bet counted
   * at the price offered at its stamp. The fold checks it again at the entry's position, so this
   * only spares the ledger an entry it would refuse.
   */
  function checkLiability(request: PlaceBetRequest, offeredOdds: number | undefined): PlaceBetReply | null {
    const held = ledger.foldFor(request.userId).marketLiability(request.gameId, request.marketId)
    if (held + liabilityCents({ stakeCents: request.stakeCents, offeredOdds }) <= marketAllowanceCents)
      return null
    return apiError(
      'MARKET_LIABILITY_LIMIT',
      `the market's liability on this user's ledger shard would pass its ${marketAllowanceCents} cents`,
    )
  }

  /**
   * The reply for a bet the ledger already holds (a retry, here or at another node). A retry with
   * other terms is refused, and told which bet stands under the id and what became of it.
   */
  function replyFor(record: BetState, request: PlaceBetRequest): PlaceBetReply {
    if (!sameBet(record, request)) {
      const terms = termsOf(record)
      return {
        ...apiError('BET_ID_REUSED', `bet id ${request.betId} was used for another bet`),
        standing: { terms, reply: standingReply(record, { ...request, ...terms }) },
      }
    }
    return standingReply(record, request)
  }

  function standingReply(record: BetState, request: PlaceBetRequest): ProvisionalReply | RefusedReply {
    if (record.status === 'rejected') return refusal(record.reason)
    const replica = replicas.replica(record.gameId)
    const terms = { ...request, stamp: record.stamp }
    const { final, ...verdict } = replica ? judge(replica.game, terms) : { final: false, ...unknownVerdict }
    const balanceCents = ledger.foldFor(record.userId).balance(record.userId)
    return {
      ok: true,
      betId: record.betId,
      status: 'provisional',
      stamp: record.stamp,
      verdict,
      final,
      balanceCents,
      ledgerSeq: record.placedSeq,
    }
  }

  async function place(data: Uint8Array): Promise<PlaceBetReply> {
    const request = readPlaceBet(data)
    if ('ok' in request) return request
    if (options.homeHere !== undefined && !options.homeHere(request.userId))
      return apiError(
        'WRONG_REGION',
        `user ${request.userId} is not homed in this region: send the bet to the home region`,
      )
    const known = ledger.foldFor(request.userId).bet(request.userId, request.betId)
    if (known !== null) return replyFor(known, request)
    const refused = checkLimits(request) ?? checkAbuse(request)
    if (refused !== null) return refused
    // A clock that cannot hold every stamp the replica holds would stamp a bet before a suspension
    // the node has applied: no bet is judged until it can (nodes/fabric/clock-guard.ts).
    const unsafe = replicas.clock.unsafe()
    if (unsafe !== null) return apiError('CLOCK_DRIFT', `${unsafe}; retry with the same bet id`)
    const stale = staleness(request.gameId)
    if (stale !== null)
      return apiError(replicas.replica(request.gameId) ? 'REPLICA_STALE' : 'UNKNOWN_GAME', stale)
    if (finals.pending() >= limits.pendingFinalMax)
      return apiError('OVERLOADED', 'too many bets await their final verdict')
    return accept(request)
  }

  async function accept(request: PlaceBetRequest): Promise<PlaceBetReply> {
    const stamp = encodeStamp(hlc.now())
    const terms: BetTerms = { ...request, stamp }
    // Liability counts the price offered at the stamp, never the odds the client asked for.
    const offeredOdds = judge(replicas.replicaFor(request.gameId).game, terms).odds ?? undefined
    const overLiability = checkLiability(request, offeredOdds)
    if (overLiability !== null) return overLiability
    let seq: number
    try {
      seq = await ledger.append({
        type: 'bet',
        id: request.betId,
        ...request,
        stamp,
        placedAtMs: now(),
        // The fold enforces both, so bets racing here or on other nodes cannot pass them together.
        openStakeLimitCents: limits.userOpenStakeCentsMax,
        ...(offeredOdds === undefined ? {} : { offeredOdds }),
        marketLiabilityLimitCents: marketAllowanceCents,
      })
    } catch (error) {
      log.warn({ err: error, betId: request.betId }, 'ledger append failed')
      return apiError(
        'LEDGER_UNAVAILABLE',
        'the ledger did not acknowledge the bet; it may stand: retry with the same bet id to learn its status',
      )
    }
    let result: Awaited<ReturnType<LedgerSync['resultAt']>>
    try {
      result = await ledger.resultAt(seq, limits.foldWaitMs)
    } catch {
      return apiError(
        'LEDGER_UNAVAILABLE',
        'the ledger stored the bet but this node could not read it back in time; it may stand: retry with the same bet id',
      )
    }
    if (result.entryId !== request.betId) {
      // The stream acknowledged the bet at a sequence where this node's fold holds another entry:
      // the fold is not the stream's, and nothing it says about this bet can be trusted.
      ledger.markDiverged(
        `bet ${request.betId} was acknowledged at ${seq}, where the fold holds ${result.entryId}`,
      )
      return apiError(
        'LEDGER_UNAVAILABLE',
        'this node cannot read the bet back from the ledger; it may stand: retry with the same bet id',
      )
    }
    const record = ledger.foldFor(request.userId).bet(request.userId, request.betId)
    if (record !== null && record.stamp !== stamp) return replyFor(record, request)
    if (result.status === 'conflict')
      return apiError('BET_ID_REUSED', `bet id ${request.betId} was used for another bet`)
    if (result.status === 'rejected') {
      refusals.record(request.userId)
      return refusal(result.reason)
    }
    const replica = replicas.replicaFor(request.gameId)
    const { final, ...verdict } = judge(replica.game, terms)
    if (!final) finals.await(request.gameId, { betId: request.betId, userId: request.userId, stamp, terms })
    else finals.announce(request.userId, { betId: request.betId, stamp, verdict }, result.balanceCents ?? 0)
    return {
      ok: true,
      betId: request.betId,
      status: 'provisional',
      stamp,
      verdict,
      final,
      balanceCents: result.balanceCents ?? 0,
      ledgerSeq: seq,
    }
  }

  return {
    place,
    pendingFinal: () => finals.pending(),
    close() {
      finals.stop()
    },
  }
}

/** A placement's bytes as a request, or the coded refusal of bad ones. */
function readPlaceBet(data: Uint8Array): PlaceBetRequest | { ok: false; error: ApiError } {
  if (data.length > REQUEST_BYTES_MAX)
    return apiError('BAD_REQUEST', `a request is at most ${REQUEST_BYTES_MAX} bytes`)
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder().decode(data))
  } catch {
    return apiError('BAD_REQUEST', 'the request is not JSON')
  }
  const request = parsePlaceBet(value)
  return Array.isArray(request) ? apiError('BAD_REQUEST', request.join('; ')) : request
}

/** Why a replica is too stale to judge on (a writer silent longer than `staleMsMax`), or null. */
function stalenessOf(
  replica: Replica | undefined,
  gameId: string,
  nowMs: number,
  staleMsMax: number,
): string | null {
  if (replica === undefined) return `game ${gameId} is unknown here`
  for (const writer of activeWriters(replica.game)) {
    const watermark = watermarkOf(replica.game, writer)
    const ageMs = watermark === null ? Number.POSITIVE_INFINITY : nowMs - stampWall(watermark)
    if (ageMs > staleMsMax) return `writer ${writer} last heard ${Math.round(ageMs)} ms ago`
  }
  return null
}

/** Final verdicts: announced at once when final at placement, else when the replica makes them so. */
function createFinalAnnouncer(
  options: Pick<BetServiceOptions, 'replicas' | 'ledger' | 'publishStatus'> & { now: () => number },
) {
  const { replicas, ledger, now } = options
  /** Per game, bets whose final verdict is not yet published, by stamp. */
  const pending = new Map<string, FinalityQueue<PendingBet>>()
  const announce = (
    userId: string,
    bet: Pick<FinalStatus, 'betId' | 'stamp' | 'verdict'>,
    balanceCents: number,
  ) => options.publishStatus(userId, { ...bet, status: 'final', finalAtMs: now(), balanceCents })
  const stop = replicas.onChange(({ gameId }) => {
    const queue = pending.get(gameId)
    const replica = replicas.replica(gameId)
    if (queue === undefined || replica === undefined) return
    for (const bet of queue.drain((stamp) => isFinal(replica.game, stamp))) {
      const { final: _final, ...verdict } = judge(replica.game, bet.terms)
      announce(
        bet.userId,
        { betId: bet.betId, stamp: bet.stamp, verdict },
        ledger.foldFor(bet.userId).balance(bet.userId),
      )
    }
  })
  return {
    announce,
    await(gameId: string, bet: PendingBet): void {
      const queue = pending.get(gameId) ?? createFinalityQueue<PendingBet>()
      queue.add(bet)
      pending.set(gameId, queue)
    },
    pending(): number {
      let count = 0
      for (const queue of pending.values()) count += queue.size()
      return count
    },
    stop,
  }
}

/** The coded refusal for a bet the ledger fold refused (protocol/errors.ts maps the reasons). */
function refusal(reason: string | null): RefusedReply {
  const code = LEDGER_REFUSALS[reason as LedgerRejectReason] ?? 'INSUFFICIENT_FUNDS'
  return apiError(code, `the ledger refused the bet at its place in the ledger: ${API_ERRORS[code].meaning}`)
}

const unknownVerdict = { accepted: false, reason: 'UNKNOWN_MARKET' as const, odds: null, gameClockMs: null }
