/**
 * The ledger over JetStream: appends entries to their user's shard subject with a message id scoped
 * by kind and user (protocol/ids.ts, "Id namespaces"; a retried append is stored once, and one user's id
 * never deduplicates another's), and folds each shard it serves in its stream's order.
 *
 * Each shard is a stream of its own (`LEDGER_<REGION>_<SHARD>`), with its own leader and its own
 * sequences. A node serves a set of shards (default: all): it follows, folds and appends to those
 * alone, and never opens a consumer on another (`ledger_shard_messages_read_total` counts what it
 * reads, per shard). Every node that folds a shard computes the same result for every entry (see
 * ledger/), so an API node learns a bet's funds verdict by folding up to the bet's own sequence: no
 * lock, no compare-and-set, and two nodes serving one shard need no coordination.
 */

import { createHash } from 'node:crypto'
import type { Logger } from 'pino'
import {
  type AllowanceEntry,
  BETS_PER_BATCH_MAX,
  type BetBatch,
  type BetEntry,
  type BetState,
  createLedgerFold,
  type FoldResult,
  type LedgerEntry,
  type LedgerFold,
  parseLedgerMessage,
  type SettlementBatch,
  type SettlementEntry,
} from '../../ledger/index.ts'
import { DERIVED_ID_SEPARATOR, entryKeyOf } from '../../protocol/ids.ts'
import { DEFAULT_SHARDS, parseShardSet, SHARDS_MAX, shardOf } from '../../protocol/shards.ts'
import { createGroupCommit, type Placed } from './group-commit.ts'
import {
  checkpointToRestore,
  deleteCheckpoint,
  encodeCheckpoint,
  messageDigest,
  putCheckpoint,
} from './ledger-checkpoints.ts'
import type { FollowerView, StreamMessage } from './stream-follower.ts'
import { LEDGER_MESSAGE_BYTES_MAX, names } from './streams.ts'
import { realTimers, type Timers } from './timers.ts'
import type { FabricTransport } from './transport.ts'

export { DEFAULT_SHARDS, SHARDS_MAX, shardOf }
export const APPEND_TIMEOUT_MS = 2_000
/** The wait before an append that found no stream leader is tried again, within APPEND_TIMEOUT_MS. */
export const APPEND_RETRY_MS = 100
/**
 * What JetStream answers when a stream has no leader to take a message (the NATS client reports the
 * request's 503 "no responders" as `jetstream is not enabled`): nothing was stored.
 */
const NO_LEADER = /no responders|jetstream is not enabled/i
/** A read-back still waiting for its sequence after this checks the shard's consumer (stream-watchdog.ts). */
export const NUDGE_AFTER_MS = 150
/**
 * Results kept per shard for late waiters: an append's acknowledgement comes within its deadline,
 * and this is about a minute of one shard's messages at 1,000 bets/s over eight shards. It was
 * 100,000: a heap snapshot of an API node 4.5 minutes into 1,000 bets/s found a third or more of
 * its 491 MiB in the kept results (each with a hidden class of its own). A waiter for a result no
 * longer kept is refused at once, and its caller answers "retry with the same id".
 */
export const RECENT_RESULTS_MAX = 8_192
export const WAITERS_MAX = 10_000

/** An entry for a shard this node does not serve: the caller routed it wrong. */
export class ShardNotServedError extends Error {
  constructor(readonly shard: number) {
    super(`this node does not serve ledger shard ${shard}`)
    this.name = 'ShardNotServedError'
  }
}

export interface LedgerSyncOptions {
  /** The ledger stream (transport.ts: NATS, or memory in the simulator). */
  readonly transport: FabricTransport
  readonly region: string
  /** The region's shard count, fixed when the region was created. */
  readonly shards: number
  /** The shards this node serves, sorted and each once (protocol/shards.ts); default all. */
  readonly served?: readonly number[]
  readonly log: Logger
  /** Messages read, per shard (the proof that a node reads only the shards it serves). */
  readonly onRead?: (shard: number) => void
  /** The clock of append deadlines; default Date.now (the simulator passes its own). */
  readonly now?: () => number
  /** The timers of read-back deadlines (timers.ts); default the real ones. */
  readonly timers?: Timers
  /**
   * Ledger checkpoints (ledger-checkpoints.ts): start each shard from its checkpoint in the
   * snapshot bucket when it has a usable one, instead of from the stream's first entry, and keep
   * what writeCheckpoint needs. Off in the simulator.
   */
  readonly checkpoints?: boolean
  /**
   * With `checkpoints`: when writeCheckpoint replaces this node's own previous checkpoint, purge
   * the shard's stream below that one's sequence (the region's ledger stays within its byte budget).
   * One writer per shard: see docs/operations.md.
   */
  readonly purge?: boolean
}

export type LedgerListener = (
  shard: number,
  seq: number,
  result: FoldResult,
  entry: LedgerEntry | null,
) => void

export interface LedgerSync {
  readonly shards: number
  /** The shards this node serves, sorted. */
  readonly served: readonly number[]
  serves(shard: number): boolean
  /** The shard of a user's entries. */
  shardOf(userId: string): number
  /** A served shard's fold; throws ShardNotServedError for another. */
  fold(shard: number): LedgerFold
  /** The fold of a user's shard; throws ShardNotServedError when this node does not serve it. */
  foldFor(userId: string): LedgerFold
  /**
   * Append durably to the entry's shard; resolves with the entry's sequence in that shard's stream
   * (the original one for a duplicate).
   */
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
   * Append an allowance transfer to `shard`: a grant to the giving shard, which this node serves; a
   * receipt to the taking shard, which it need not serve (it writes there without reading).
   * Resolves with the entry's sequence in that shard's stream.
   */
  appendTransfer(shard: number, entry: AllowanceEntry): Promise<number>
  /**
   * Append settlements of bets of one shard as one message (see ledger/); its id is derived from
   * what it holds, so a retried batch is stored once. Resolves with its stream sequence.
   */
  appendSettlements(shard: number, settlements: readonly SettlementEntry[]): Promise<number>
  /**
   * Resolves with the fold's result for the `index`-th entry (default the first) of the message at
   * `seq` of `shard`'s stream, once the fold has reached it.
   */
  resultAt(shard: number, seq: number, timeoutMs: number, index?: number): Promise<FoldResult>
  onEntry(listener: LedgerListener): () => void
  /** The last sequence folded of a served shard's stream. */
  lastSeq(shard: number): number
  /**
   * Store the served shard's fold as its checkpoint (ledger-checkpoints.ts); resolves with the
   * sequence it stands at, or null when the fold has not moved since this node's last one.
   */
  writeCheckpoint(shard: number): Promise<number | null>
  /** Per served shard, the sequence its fold was restored from (0: folded from the first entry). */
  readonly restoredFrom: ReadonlyMap<number, number>
  /**
   * Delete the checkpoints of the shards whose fold was found not to be the stream's, before the
   * node exits to fold them again: one of them may hold what the fold got wrong, and the nodes
   * starting next must fold those shards from their first entry. Only while a stream still holds
   * its first entry: once purged below a checkpoint, the checkpoint is the only start there is (a
   * node that fell behind a purge meets a gap, and starts again from it). Resolves with how many
   * went.
   */
  dropDivergedCheckpoints(): Promise<number>
  /** How its reading of each served shard's stream goes (stream-follower.ts), by shard. */
  readonly followers: ReadonlyMap<number, FollowerView>
  /** Why this node's folds are not the streams' (stream-follower.ts), or null while they are. */
  diverged(): string | null
  /** Record that a shard's fold was found not to be its stream's (an append acknowledged at a
   * sequence where the fold holds another entry). */
  markDiverged(shard: number, reason: string): void
  /** Every served shard's fold has caught up with its stream. */
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
  /** The fold has not reached an awaited sequence within NUDGE_AFTER_MS: check its consumer now. */
  readonly nudge?: () => void
}) {
  const recent = new Map<number, readonly FoldResult[]>()
  const waiters = new Map<number, ((results: readonly FoldResult[]) => void)[]>()
  /** What this node appended, by the sequence the stream acknowledged. */
  const expected = new Map<number, readonly EntryRef[]>()
  /** The highest sequence an append of this node's was acknowledged at. */
  let acknowledgedThrough = 0
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
    acknowledgedThrough: () => acknowledgedThrough,
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
      acknowledgedThrough = Math.max(acknowledgedThrough, seq)
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
      const known = recent.get(seq)
      // Folded already and no longer kept: waiting would only run out the deadline.
      if (known === undefined && context.foldedThrough() >= seq)
        throw new RangeError(`the result at ${seq} is no longer kept`)
      const results = known ?? (await waitFor(seq, timeoutMs))
      const result = results[index]
      if (result === undefined) throw new RangeError(`the message at ${seq} holds no entry ${index}`)
      return result
    },
  }

  function waitFor(seq: number, timeoutMs: number): Promise<readonly FoldResult[]> {
    if (waiters.size >= WAITERS_MAX) return Promise.reject(new Error('too many waiters'))
    return new Promise((resolve, reject) => {
      const waiter = (results: readonly FoldResult[]) => {
        cancelWait()
        cancelNudge()
        resolve(results)
      }
      // The stream acknowledged `seq`: a consumer that has not delivered it in a moment may be on
      // a server that died or stopped, which the watchdog would find only seconds later.
      const cancelNudge =
        context.nudge && timeoutMs > NUDGE_AFTER_MS
          ? context.timers.setTimeout(() => context.nudge?.(), NUDGE_AFTER_MS)
          : () => {}
      const cancelWait = context.timers.setTimeout(() => {
        cancelNudge()
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

interface ShardSync {
  readonly fold: LedgerFold
  readonly readBack: ReturnType<typeof createReadBack>
  readonly follower: FollowerView & { close(): Promise<void> }
}

export async function createLedgerSync(options: LedgerSyncOptions): Promise<LedgerSync> {
  const { transport, region, shards, log } = options
  if (!Number.isSafeInteger(shards) || shards < 1 || shards > SHARDS_MAX)
    throw new RangeError(`shards must be 1..${SHARDS_MAX}`)
  const served = options.served ?? parseShardSet([], shards)
  if (
    served.length === 0 ||
    served.some((shard) => !Number.isSafeInteger(shard) || shard < 0 || shard >= shards)
  )
    throw new RangeError(`served shards must be a non-empty set within 0-${shards - 1}`)
  const listeners = new Set<LedgerListener>()
  const syncs = new Map<number, ShardSync>()
  const timers = options.timers ?? realTimers
  const clock = options.now ?? Date.now

  function sync(shard: number): ShardSync {
    const found = syncs.get(shard)
    if (found === undefined) throw new ShardNotServedError(shard)
    return found
  }

  /** The shard's fold restored from its checkpoint, if it has a usable one, and the open bets it holds. */
  async function restoredFold(shard: number, stream: string): Promise<LedgerFold | null> {
    if (!options.checkpoints) return null
    const checkpoint = await checkpointToRestore({
      store: transport.snapshots,
      shard,
      messageAt: (seq) => transport.messageAt(stream, seq),
      log,
    })
    if (checkpoint === null) return null
    try {
      const fold = createLedgerFold(checkpoint.snapshot)
      log.info(
        { shard, seq: checkpoint.seq, bets: fold.betsHeld() },
        'ledger shard restored from its checkpoint',
      )
      return fold
    } catch (error) {
      log.warn(
        { shard, err: error },
        'the ledger checkpoint does not restore; folding the shard from its first entry',
      )
      return null
    }
  }

  async function openShard(shard: number): Promise<ShardSync> {
    const stream = names.ledgerStream(region, shard)
    const fold = (await restoredFold(shard, stream)) ?? createLedgerFold()
    restoredFrom.set(shard, fold.lastSeq())
    // A listener learns of the bets still open at the checkpoint as if they had just been folded
    // (a settlement node settles them), before anything after it: in placement order.
    if (fold.lastSeq() > 0)
      for (const bet of fold.toJSON().bets)
        if (bet.status === 'open') held?.push(() => announceRestored(shard, fold, bet))
    // The follower is assigned below; the read-back only asks it once messages flow.
    let follower: ShardSync['follower'] | undefined
    const readBack = createReadBack({
      log,
      stream,
      timers,
      foldedThrough: () => fold.lastSeq(),
      nudge: () => follower?.nudge(),
    })
    follower = await transport.follow({
      stream,
      startSeq: fold.lastSeq() + 1,
      log: log.child({ shard }),
      onMessage: (message) => foldMessage(shard, fold, readBack, message),
      acknowledgedThrough: readBack.acknowledgedThrough,
    })
    return { fold, readBack, follower }
  }

  function announceRestored(shard: number, fold: LedgerFold, bet: BetState): void {
    const { betId, placedSeq, status: _status, ...terms } = bet
    const entry: BetEntry = { type: 'bet', id: betId, ...terms }
    const result: FoldResult = {
      entryId: betId,
      userId: bet.userId,
      balanceCents: fold.balance(bet.userId),
      status: 'applied',
      reason: null,
    }
    for (const listener of listeners) listener(shard, placedSeq, result, entry)
  }

  /**
   * The digest of the last message each shard folded, for its checkpoint (taken as it is folded:
   * the client library may reuse the memory a message arrived in).
   */
  const lastDigest = new Map<number, string>()
  const restoredFrom = new Map<number, number>()
  const checkpointed = new Map<number, number>()

  // A shard's follower delivers while the next shard's opens: its messages wait here until every
  // shard is open and the caller has had its turn to listen (onEntry), as it would with one stream.
  // A settlement node restarted on a ledger of several shards never settled the bets of the shards
  // it opened first, having folded them before its settler listened.
  let held: (() => void)[] | null = []

  function foldMessage(
    shard: number,
    fold: LedgerFold,
    readBack: ShardSync['readBack'],
    message: StreamMessage,
  ): void {
    if (held !== null) {
      held.push(() => foldMessage(shard, fold, readBack, message))
      return
    }
    options.onRead?.(shard)
    // The ledger is folded whole or not at all: entries gone before this node folded them (purged
    // below a checkpoint while it was behind, or never delivered) leave a fold that is not the
    // stream's. It exits and starts again from the shard's checkpoint.
    if (message.seq > fold.lastSeq() + 1) {
      readBack.markDiverged(
        `the stream delivered ${message.seq} after ${fold.lastSeq()}: entries in between are gone (purged below a checkpoint while this node was behind?)`,
      )
      return
    }
    let value: unknown = null
    try {
      value = message.json()
    } catch {
      // A malformed entry is folded as such: every node rejects it identically.
    }
    const results = fold.apply(value, message.seq)
    if (options.checkpoints) lastDigest.set(shard, messageDigest(message.data))
    readBack.folded(message.seq, results)
    if (listeners.size === 0) return
    const entries = parseLedgerMessage(value)
    results.forEach((result, i) => {
      for (const listener of listeners) listener(shard, message.seq, result, entries?.[i] ?? null)
    })
  }

  try {
    for (const shard of served) syncs.set(shard, await openShard(shard))
  } catch (error) {
    await Promise.all([...syncs.values()].map(({ follower }) => follower.close()))
    throw error
  }
  timers.setTimeout(() => {
    const waiting = held ?? []
    held = null
    for (const fold of waiting) fold()
  }, 0)

  async function appendMessage(
    shard: number,
    subject: string,
    body: unknown,
    msgId: string,
    entries: readonly EntryRef[],
  ): Promise<number> {
    // A shard this node does not serve is written to blind: only allowance receipts go there.
    const readBack = syncs.get(shard)?.readBack ?? null
    const data = JSON.stringify(body)
    // A stream between leaders (an election, a leader stepping down) has nobody to answer: nothing
    // was stored, so the append is tried again, same id, until its deadline.
    const deadline = clock() + APPEND_TIMEOUT_MS
    for (;;) {
      try {
        const ack = await transport.append(subject, data, {
          msgId,
          timeoutMs: Math.max(1, deadline - clock()),
        })
        readBack?.expectAt(ack.seq, entries)
        return ack.seq
      } catch (error) {
        if (
          !NO_LEADER.test(String((error as Error)?.message ?? error)) ||
          clock() + APPEND_RETRY_MS >= deadline
        )
          throw error
        await new Promise<void>((resolve) => timers.setTimeout(resolve, APPEND_RETRY_MS))
      }
    }
  }

  function appendOne(entry: LedgerEntry): Promise<number> {
    const shard = shardOf(entry.userId, shards)
    if (!syncs.has(shard)) return Promise.reject(new ShardNotServedError(shard))
    return appendMessage(shard, names.ledgerSubject(region, shard, entry.userId), entry, entryKeyOf(entry), [
      entry,
    ])
  }

  const bets = createGroupCommit<BetEntry>({
    shardOf: (bet) => shardOf(bet.userId, shards),
    bytesOf: (bet) => JSON.stringify(bet).length + 1,
    countMax: BETS_PER_BATCH_MAX,
    bytesMax: LEDGER_MESSAGE_BYTES_MAX - BATCH_ENVELOPE_BYTES,
    queuedMax: BETS_QUEUED_PER_SHARD_MAX,
    appendOne,
    appendMany(shard, batch) {
      const body: BetBatch = { type: 'bets', id: batchIdOf('bets', shard, batch), bets: batch }
      return appendMessage(shard, names.ledgerBatchSubject(region, shard, 'bets'), body, body.id, batch)
    },
  })

  const followers = new Map([...syncs].map(([shard, { follower }]) => [shard, follower as FollowerView]))
  return {
    shards,
    served,
    serves: (shard) => syncs.has(shard),
    shardOf: (userId) => shardOf(userId, shards),
    fold: (shard) => sync(shard).fold,
    foldFor: (userId) => sync(shardOf(userId, shards)).fold,
    append: appendOne,
    appendBet(entry) {
      const shard = shardOf(entry.userId, shards)
      return syncs.has(shard) ? bets.append(entry) : Promise.reject(new ShardNotServedError(shard))
    },
    betBatches: () => bets.stats(),
    appendTransfer(shard, entry) {
      if (!Number.isSafeInteger(shard) || shard < 0 || shard >= shards)
        return Promise.reject(new RangeError(`shard ${shard} is not one of the region's ${shards}`))
      if (entry.type === 'allowance-grant' && !syncs.has(shard))
        return Promise.reject(new ShardNotServedError(shard))
      const subject = names.ledgerSubject(region, shard, entry.userId)
      return appendMessage(shard, subject, entry, entryKeyOf(entry), [entry])
    },
    async appendSettlements(shard, settlements) {
      const batch: SettlementBatch = {
        type: 'settlements',
        id: batchIdOf('settlements', shard, settlements),
        settlements,
      }
      return appendMessage(
        shard,
        names.ledgerBatchSubject(region, shard, 'settlements'),
        batch,
        batch.id,
        settlements,
      )
    },
    resultAt: (shard, seq, timeoutMs, index) => sync(shard).readBack.resultAt(seq, timeoutMs, index),
    onEntry(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
    lastSeq: (shard) => sync(shard).fold.lastSeq(),
    restoredFrom,
    async writeCheckpoint(shard) {
      const { fold, readBack, follower } = sync(shard)
      // A fold that is not the stream's, or may turn out not to be, is nobody's to start from.
      if ((readBack.diverged() ?? follower.diverged()) !== null || follower.auditing()) return null
      const digest = lastDigest.get(shard)
      const seq = fold.lastSeq()
      // Nothing folded since the restore (or at all): the stored checkpoint stands.
      if (digest === undefined || seq === (checkpointed.get(shard) ?? restoredFrom.get(shard) ?? 0))
        return null
      // The snapshot and the digest of the same message, taken in one turn of the event loop.
      const bytes = await encodeCheckpoint({ shard, digest, snapshot: fold.toJSON() })
      const { written, previousSeq } = await putCheckpoint(transport.snapshots, shard, seq, bytes)
      if (!written) {
        log.info({ shard, seq, stored: previousSeq }, 'a newer ledger checkpoint is stored already')
        return null
      }
      const ownPrevious = checkpointed.get(shard)
      checkpointed.set(shard, seq)
      // The stream keeps what came after the checkpoint this one replaced, so a node a whole round
      // behind still folds on; only below it do entries go. Only when that checkpoint was this
      // node's own: one written by another node meanwhile is not known to be behind this one.
      const purgedBelow =
        options.purge && ownPrevious !== undefined && ownPrevious === previousSeq ? previousSeq : 0
      // A purge that fails is tried again below the next checkpoint: the log says so, not that the
      // checkpoint failed (it stands).
      const purged =
        purgedBelow > 1
          ? await transport
              .purge(names.ledgerStream(region, shard), names.ledgerShardSubject(region, shard), purgedBelow)
              .catch((error: unknown) => {
                log.warn(
                  { shard, purgedBelow, err: error },
                  'ledger checkpoint written; purging below the one before failed',
                )
                return 0
              })
          : 0
      log.info({ shard, seq, bytes: bytes.length, purgedBelow, purged }, 'ledger checkpoint written')
      return seq
    },
    async dropDivergedCheckpoints() {
      if (!options.checkpoints) return 0
      let dropped = 0
      for (const [shard, { readBack, follower }] of syncs) {
        if ((readBack.diverged() ?? follower.diverged()) === null) continue
        if ((await transport.messageAt(names.ledgerStream(region, shard), 1)) === null) {
          log.warn(
            { shard },
            'kept the ledger checkpoint of a diverged shard: its stream was purged below it',
          )
          continue
        }
        await deleteCheckpoint(transport.snapshots, shard)
        log.warn({ shard }, 'deleted the ledger checkpoint of a shard whose fold was not the stream’s')
        dropped++
      }
      return dropped
    },
    followers,
    diverged() {
      for (const [shard, { readBack, follower }] of syncs) {
        const reason = readBack.diverged() ?? follower.diverged()
        if (reason !== null) return `shard ${shard}: ${reason}`
      }
      return null
    },
    markDiverged: (shard, reason) => sync(shard).readBack.markDiverged(reason),
    caughtUp: () => [...syncs.values()].every(({ follower }) => follower.caughtUp()),
    async close() {
      await Promise.all([...syncs.values()].map(({ follower }) => follower.close()))
    },
  }
}

/** What a node's options say about its ledger: the region's shard count and the shards it serves. */
export interface NodeLedgerOptions {
  readonly region: string
  readonly shards: number
  readonly served?: readonly number[]
  readonly onLedgerRead?: (shard: number) => void
  /** Restore the shards from their checkpoints, and be able to write them (LedgerSyncOptions.checkpoints). */
  readonly ledgerCheckpoints?: boolean
  /** Purge below this node's own replaced checkpoints (LedgerSyncOptions.purge). */
  readonly ledgerPurge?: boolean
  readonly log: Logger
}

/** The ledger of an API or settlement node: the shards it serves, over its transport. */
export function createNodeLedger(
  transport: FabricTransport,
  options: NodeLedgerOptions,
): Promise<LedgerSync> {
  return createLedgerSync({
    transport,
    region: options.region,
    shards: options.shards,
    log: options.log,
    ...(options.served ? { served: options.served } : {}),
    ...(options.onLedgerRead ? { onRead: options.onLedgerRead } : {}),
    checkpoints: options.ledgerCheckpoints ?? false,
    purge: options.ledgerPurge ?? false,
  })
}
