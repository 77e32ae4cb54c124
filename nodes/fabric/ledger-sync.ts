/**
 * The ledger over JetStream: appends entries to their user's shard subject with a message id scoped
 * by kind and user (protocol/ids.ts, "Id namespaces"; a retried append is stored once, and one user's id
 * never deduplicates another's), and folds every shard in stream order.
 *
 * Every node that folds computes the same result for every entry (see ledger.ts), so an API node
 * learns a bet's funds verdict by folding up to the bet's own sequence: no lock, no
 * compare-and-set. One ordered consumer covers the region's ledger stream; stream sequences grow,
 * so each shard's fold sees its entries in order.
 */

import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import {
  BETS_PER_BATCH_MAX,
  type BetBatch,
  type BetEntry,
  createLedgerFold,
  type FoldResult,
  type LedgerEntry,
  type LedgerFold,
  parseLedgerMessage,
  type SettlementBatch,
  type SettlementEntry,
} from '../../ledger/index.ts'
import { DERIVED_ID_SEPARATOR, entryKeyOf } from '../../protocol/ids.ts'
import { createGroupCommit, type Placed } from './group-commit.ts'
import type { FollowerView, StreamMessage } from './stream-follower.ts'
import { LEDGER_MESSAGE_BYTES_MAX, names } from './streams.ts'
import { realTimers, type Timers } from './timers.ts'
import type { FabricTransport } from './transport.ts'

export const DEFAULT_SHARDS = 8
export const SHARDS_MAX = 256
export const APPEND_TIMEOUT_MS = 2_000
/** Results kept per shard for late waiters; older ones are read back from the fold's bet records. */
export const RECENT_RESULTS_MAX = 100_000
export const WAITERS_MAX = 10_000

/** FNV-1a over the user id: a stable shard every node agrees on. */
export function shardOf(userId: string, shards: number): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < userId.length; i++) {
    hash ^= userId.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash % shards
}

export interface LedgerSyncOptions {
  /** The ledger stream (transport.ts: NATS, or memory in the simulator). */
  readonly transport: FabricTransport
  readonly region: string
  readonly shards: number
  readonly log: Logger
  /** The timers of read-back deadlines (timers.ts); default the real ones. */
  readonly timers?: Timers
}

export type LedgerListener = (
  shard: number,
  seq: number,
  result: FoldResult,
  entry: LedgerEntry | null,
) => void

export interface LedgerSync {
  readonly shards: number
  fold(shard: number): LedgerFold
  foldFor(userId: string): LedgerFold
  /** Append durably; resolves with the entry's stream sequence (the original one for a duplicate). */
  append(entry: LedgerEntry): Promise<number>
  /**
   * Append a bet by group commit (group-commit.ts): alone when its shard is idle, else with the bets
   * that arrive while the shard's append is in flight. Resolves with its message's sequence and its
   * place in it; rejects with GroupCommitFullError when too many bets already wait for the shard.
   */
  appendBet(entry: BetEntry): Promise<Placed>
  /** Messages and bets the group commit appended, for the bets-per-message figure. */
  betBatches(): { messages: number; items: number }
  /**
   * Append settlements of bets of one shard as one message (see ledger.ts); its id is derived from
   * what it holds, so a retried batch is stored once. Resolves with its stream sequence.
   */
  appendSettlements(shard: number, settlements: readonly SettlementEntry[]): Promise<number>
  /**
   * Resolves with the fold's result for the `index`-th entry (default the first) of the message at
   * `seq`, once the fold has reached it.
   */
  resultAt(seq: number, timeoutMs: number, index?: number): Promise<FoldResult>
  onEntry(listener: LedgerListener): () => void
  lastSeq(): number
  /** How its reading of the stream goes: consumers replaced, holes, phase (stream-follower.ts). */
  readonly follower: FollowerView
  /** Why this node's folds are not the stream's (stream-follower.ts), or null while they are. */
  diverged(): string | null
  /** Record that the folds were found not to be the stream's (an append acknowledged at a
   * sequence where the fold holds another entry). */
  markDiverged(reason: string): void
  caughtUp(): boolean
  close(): Promise<void>
}

/** An entry as the read-back knows it: whose, and its id. */
export interface EntryRef {
  readonly userId: string
  readonly id: string
}

const refName = (ref: EntryRef | null) => (ref === null ? 'a malformed entry' : `${ref.userId}/${ref.id}`)

/**
 * Reading the node's own appends back: each folded message's results (one per entry it holds),
 * kept for late waiters, and the check that the fold holds, at the sequence the stream
 * acknowledged, the very entries this node appended there (or the fold is not the stream's).
 */
export function createReadBack(context: {
  readonly log: Logger
  readonly stream: string
  readonly timers: Timers
  readonly foldedThrough: () => number
}) {
  const recent = new Map<number, readonly FoldResult[]>()
  const waiters = new Map<number, ((results: readonly FoldResult[]) => void)[]>()
  /** What this node appended, by the sequence the stream acknowledged. */
  const expected = new Map<number, readonly EntryRef[]>()
  let diverged: string | null = null

  function markDiverged(reason: string): void {
    if (diverged !== null) return
    diverged = reason
    context.log.error({ stream: context.stream }, `ledger diverged: ${reason}`)
  }

  function compare(seq: number, appended: readonly EntryRef[], folded: readonly FoldResult[]): void {
    appended.forEach((ref, i) => {
      const result = folded[i]
      const held =
        result?.entryId == null || result.userId == null
          ? null
          : { userId: result.userId, id: result.entryId }
      if (held === null || held.userId !== ref.userId || held.id !== ref.id)
        markDiverged(
          `the stream acknowledged ${refName(ref)} at ${seq}, where the fold holds ${refName(held)}`,
        )
    })
  }

  return {
    markDiverged,
    diverged: () => diverged,
    /** The fold reached `seq`, with these results for the entries of its message. */
    folded(seq: number, results: readonly FoldResult[]): void {
      recent.set(seq, results)
      if (recent.size > RECENT_RESULTS_MAX) recent.delete(recent.keys().next().value as number)
      for (const resolve of waiters.get(seq) ?? []) resolve(results)
      waiters.delete(seq)
      const appended = expected.get(seq)
      if (appended === undefined) return
      expected.delete(seq)
      compare(seq, appended, results)
    },
    /** This node appended these entries as one message, and the stream acknowledged it at `seq`. */
    expectAt(seq: number, appended: readonly EntryRef[]): void {
      const known = recent.get(seq)
      if (known !== undefined) {
        compare(seq, appended, known)
        return
      }
      if (context.foldedThrough() >= seq) return
      expected.set(seq, appended)
      if (expected.size > RECENT_RESULTS_MAX) expected.delete(expected.keys().next().value as number)
    },
    /** The result of the `index`-th entry of the message at `seq`, once the fold has reached it. */
    async resultAt(seq: number, timeoutMs: number, index = 0): Promise<FoldResult> {
      const results = recent.get(seq) ?? (await waitFor(seq, timeoutMs))
      const result = results[index]
      if (result === undefined) throw new RangeError(`the message at ${seq} holds no entry ${index}`)
      return result
    },
  }

  function waitFor(seq: number, timeoutMs: number): Promise<readonly FoldResult[]> {
    if (waiters.size >= WAITERS_MAX) return Promise.reject(new Error('too many waiters'))
    return new Promise((resolve, reject) => {
      const waiter = (results: readonly FoldResult[]) => {
        cancel()
        resolve(results)
      }
      const cancel = context.timers.setTimeout(() => {
        // A waiter that gave up is forgotten, so that slow folds cannot fill WAITERS_MAX for good.
        const list = (waiters.get(seq) ?? []).filter((each) => each !== waiter)
        if (list.length === 0) waiters.delete(seq)
        else waiters.set(seq, list)
        reject(new Error(`ledger fold did not reach ${seq} in ${timeoutMs} ms`))
      }, timeoutMs)
      waiters.set(seq, [...(waiters.get(seq) ?? []), waiter])
    })
  }
}

/** The id of a batch of one shard's entries, scoped by its kind, shard and users (protocol/ids.ts). */
function batchIdOf(kind: 'settlements' | 'bets', shard: number, entries: readonly EntryRef[]): string {
  const digest = createHash('sha256')
  for (const { userId, id } of entries) digest.update(userId).update('\n').update(id).update('\n')
  return [kind, shard, digest.digest('base64url')].join(DERIVED_ID_SEPARATOR)
}

/** Bets wait at most this many per shard for the shard's append in flight (group-commit.ts). */
export const BETS_QUEUED_PER_SHARD_MAX = 10_000
/** Room left in a batch message for its envelope (type, id and brackets), in bytes. */
export const BATCH_ENVELOPE_BYTES = 256

export async function createLedgerSync(options: LedgerSyncOptions): Promise<LedgerSync> {
  const { transport, region, shards, log } = options
  if (!Number.isSafeInteger(shards) || shards < 1 || shards > SHARDS_MAX)
    throw new RangeError(`shards must be 1..${SHARDS_MAX}`)
  const folds = Array.from({ length: shards }, () => createLedgerFold())
  const listeners = new Set<LedgerListener>()
  const readBack = createReadBack({
    log,
    stream: names.ledgerStream(region),
    timers: options.timers ?? realTimers,
    foldedThrough: () => follower.lastSeq(),
  })

  function fold(message: StreamMessage): void {
    const shard = Number(message.subject.split('.')[2])
    const shardFold = Number.isSafeInteger(shard) && shard >= 0 && shard < shards ? folds[shard] : undefined
    if (shardFold === undefined) {
      log.error({ subject: message.subject }, 'ledger entry on a shard this node does not know')
      readBack.folded(message.seq, [
        { entryId: null, userId: null, balanceCents: null, status: 'rejected', reason: 'MALFORMED' },
      ])
      return
    }
    let value: unknown = null
    try {
      value = message.json()
    } catch {
      // A malformed entry is folded as such: every node rejects it identically.
    }
    const results = shardFold.apply(value, message.seq)
    readBack.folded(message.seq, results)
    if (listeners.size === 0) return
    const entries = parseLedgerMessage(value)
    results.forEach((result, i) => {
      for (const listener of listeners) listener(shard, message.seq, result, entries?.[i] ?? null)
    })
  }

  const follower = await transport.follow({
    stream: names.ledgerStream(region),
    startSeq: 1,
    log,
    onMessage: fold,
  })

  async function appendMessage(
    subject: string,
    body: unknown,
    msgId: string,
    entries: readonly EntryRef[],
  ): Promise<number> {
    const ack = await transport.append(subject, JSON.stringify(body), { msgId, timeoutMs: APPEND_TIMEOUT_MS })
    readBack.expectAt(ack.seq, entries)
    return ack.seq
  }

  const appendOne = (entry: LedgerEntry) =>
    appendMessage(
      names.ledgerSubject(region, shardOf(entry.userId, shards), entry.userId),
      entry,
      entryKeyOf(entry),
      [entry],
    )

  const bets = createGroupCommit<BetEntry>({
    shardOf: (bet) => shardOf(bet.userId, shards),
    bytesOf: (bet) => JSON.stringify(bet).length + 1,
    countMax: BETS_PER_BATCH_MAX,
    bytesMax: LEDGER_MESSAGE_BYTES_MAX - BATCH_ENVELOPE_BYTES,
    queuedMax: BETS_QUEUED_PER_SHARD_MAX,
    appendOne,
    appendMany(shard, batch) {
      const body: BetBatch = { type: 'bets', id: batchIdOf('bets', shard, batch), bets: batch }
      return appendMessage(names.ledgerBatchSubject(region, shard, 'bets'), body, body.id, batch)
    },
  })

  return {
    shards,
    fold: (shard) => folds[shard] as LedgerFold,
    foldFor: (userId) => folds[shardOf(userId, shards)] as LedgerFold,
    append: appendOne,
    appendBet: (entry) => bets.append(entry),
    betBatches: () => bets.stats(),
    async appendSettlements(shard, settlements) {
      if (!Number.isSafeInteger(shard) || shard < 0 || shard >= shards)
        throw new RangeError(`no shard ${shard}`)
      const batch: SettlementBatch = {
        type: 'settlements',
        id: batchIdOf('settlements', shard, settlements),
        settlements,
      }
      return appendMessage(
        names.ledgerBatchSubject(region, shard, 'settlements'),
        batch,
        batch.id,
        settlements,
      )
    },
    resultAt: (seq, timeoutMs, index) => readBack.resultAt(seq, timeoutMs, index),
    onEntry(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    lastSeq: () => follower.lastSeq(),
    follower,
    diverged: () => readBack.diverged() ?? follower.diverged(),
    markDiverged: (reason) => readBack.markDiverged(reason),
    caughtUp: () => follower.caughtUp(),
    close: () => follower.close(),
  }
}
