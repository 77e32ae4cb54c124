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
import type { BetEntry, FoldResult } from '../../ledger/index.ts'
import {
  apiError,
  type FinalStatus,
  type PlaceBetReply,
  type PlaceBetRequest,
  parsePlaceBet,
  REQUEST_BYTES_MAX,
  type RefusedReply,
} from '../../protocol/bets.ts'
import type { ApiError } from '../../protocol/errors.ts'
import { createFinalityQueue, type FinalityQueue } from '../fabric/finality-queue.ts'
import { GroupCommitFullError, type Placed } from '../fabric/group-commit.ts'
import type { LedgerSync } from '../fabric/ledger-sync.ts'
import type { ReplicaSync } from '../fabric/replica-sync.ts'
import { type Allowances, type Ask, createAllowances } from './allowance.ts'
import { createBetChecks } from './bet-checks.ts'
import { type BetLimits, DEFAULT_BET_LIMITS } from './bet-limits.ts'
import { createBetReplies, refusal } from './bet-replies.ts'
import { createRefusalWindow } from './refusal-window.ts'

export interface BetServiceOptions {
  readonly replicas: ReplicaSync
  readonly ledger: LedgerSync
  readonly hlc: Hlc
  readonly log: Logger
  readonly publishStatus: (userId: string, status: FinalStatus) => void
  readonly limits?: Partial<BetLimits>
  readonly now?: () => number
  /** Why this node does not book the user's entries (another region or shard), or null (api-node.ts). */
  readonly misrouted?: (userId: string) => ReturnType<typeof apiError> | null
  /** Asks a node serving another shard for market liability allowance (allowance.ts). */
  readonly askAllowance: Ask
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
  /** The market liability escrow: this node's side of allowance moves between shards. */
  readonly allowances: Allowances
  close(): void
}

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
  const allowances = createAllowances({
    ledger,
    shareCents: marketAllowanceCents,
    ask: options.askAllowance,
    log,
    foldWaitMs: limits.foldWaitMs,
    now,
  })
  const checks = createBetChecks({ limits, ledger, refusals, allowances })
  const { replyFor } = createBetReplies(options)
  const finals = createFinalAnnouncer({ ...options, now })
  const staleness = (gameId: string) =>
    stalenessOf(replicas.replica(gameId), gameId, now(), limits.staleMsMax)

  async function place(data: Uint8Array): Promise<PlaceBetReply> {
    const request = readPlaceBet(data)
    if ('ok' in request) return request
    const misrouted = options.misrouted?.(request.userId) ?? null
    if (misrouted !== null) return misrouted
    const known = ledger.foldFor(request.userId).bet(request.userId, request.betId)
    if (known !== null) {
      // A retry answers from the game's replica: an archived game's is loaded for it.
      if (replicas.replica(known.gameId) === undefined) await replicas.loadArchive(known.gameId)
      return replyFor(known, request)
    }
    const refused = checks.beforeStamp(request)
    if (refused !== null) return refused
    // A clock that cannot hold every stamp the replica holds would stamp a bet before a suspension
    // the node has applied: no bet is judged until it can (nodes/fabric/clock-guard.ts).
    const unsafe = replicas.clock.unsafe()
    if (unsafe !== null) return apiError('CLOCK_DRIFT', `${unsafe}; retry with the same bet id`)
    if (replicas.isArchived(request.gameId))
      return apiError('GAME_ARCHIVED', `${request.gameId} is over and archived`)
    const stale = staleness(request.gameId)
    if (stale !== null) {
      // A writer silent, or this node's consumer of the fabric stream gone with its server: the
      // follower asks its consumer now and replaces it if it does not answer (stream-watchdog.ts).
      replicas.follower.nudge()
      return apiError(replicas.replica(request.gameId) ? 'REPLICA_STALE' : 'UNKNOWN_GAME', stale)
    }
    if (finals.pending() >= limits.pendingFinalMax)
      return apiError('OVERLOADED', 'too many bets await their final verdict')
    return accept(request)
  }

  async function accept(request: PlaceBetRequest): Promise<PlaceBetReply> {
    const stamp = encodeStamp(hlc.now())
    const terms: BetTerms = { ...request, stamp }
    // Liability counts the price offered at the stamp, never the odds the client asked for.
    const offeredOdds = judge(replicas.replicaFor(request.gameId).game, terms).odds ?? undefined
    const overLiability = checks.liability(request, offeredOdds)
    if (overLiability !== null) return overLiability
    const written = await writeBet(ledger, log, limits.foldWaitMs, {
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
    if ('ok' in written) return written
    const { seq, result } = written
    const record = ledger.foldFor(request.userId).bet(request.userId, request.betId)
    if (record !== null && record.stamp !== stamp) return replyFor(record, request)
    if (result.status === 'conflict')
      return apiError('BET_ID_REUSED', `bet id ${request.betId} was used for another bet`)
    if (result.status === 'rejected') {
      // A stake the fold could not cover when checked was counted then (bet-checks.ts).
      if (result.reason !== 'INSUFFICIENT_FUNDS') refusals.record(request.userId)
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
    allowances,
    close() {
      finals.stop()
    },
  }
}

/**
 * Append a bet entry (by group commit: ledger-sync.ts) and read the fold's verdict on it back; a
 * coded refusal when too many bets already wait for the shard, the ledger did not acknowledge it,
 * the node could not read it back in time, or the acknowledged place holds another entry in this
 * node's fold (then the fold is not the stream's: the node is marked diverged).
 */
async function writeBet(
  ledger: LedgerSync,
  log: Logger,
  foldWaitMs: number,
  entry: BetEntry,
): Promise<{ seq: number; result: FoldResult } | RefusedReply> {
  let placed: Placed
  try {
    placed = await ledger.appendBet(entry)
  } catch (error) {
    if (error instanceof GroupCommitFullError)
      return apiError('OVERLOADED', `${error.message}; retry shortly`)
    log.warn({ err: error, betId: entry.id, shard: ledger.shardOf(entry.userId) }, 'ledger append failed')
    return apiError(
      'LEDGER_UNAVAILABLE',
      'the ledger did not acknowledge the bet; it may stand: retry with the same bet id to learn its status',
    )
  }
  const { seq, index } = placed
  let result: FoldResult
  try {
    result = await ledger.resultAt(ledger.shardOf(entry.userId), seq, foldWaitMs, index)
  } catch {
    return apiError(
      'LEDGER_UNAVAILABLE',
      'the ledger stored the bet but this node could not read it back in time; it may stand: retry with the same bet id',
    )
  }
  if (result.entryId !== entry.id || result.userId !== entry.userId) {
    ledger.markDiverged(
      ledger.shardOf(entry.userId),
      `bet ${entry.userId}/${entry.id} was acknowledged at ${seq}/${index}, where the fold holds ${result.userId}/${result.entryId}`,
    )
    return apiError(
      'LEDGER_UNAVAILABLE',
      'this node cannot read the bet back from the ledger; it may stand: retry with the same bet id',
    )
  }
  return { seq, result }
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
    if (queue === undefined) return
    const replica = replicas.replica(gameId)
    if (replica === undefined) return
    const drained = queue.drain((stamp) => isFinal(replica.game, stamp))
    // A game is heard 50 times a second; one whose bets are all final is not looked at again.
    if (queue.size() === 0) pending.delete(gameId)
    for (const bet of drained) {
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
