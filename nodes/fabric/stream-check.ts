/**
 * The check of what a follower handled against what the stream holds: a sequence must name the
 * same message for everyone (stream-follower.ts tells where it did not). The check keeps digests
 * of the last DIGESTS_KEPT messages handled, compares the last one with the stream's every
 * `verifyEveryMs`, and audits them all (AUDIT_BATCH per round) when asked to, once the follower has
 * caught up, when the stream's leader changes, or when the stream cannot be reached. A mismatch marks the follower diverged
 * for good.
 */

import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream'
import type { Logger } from 'pino'
import { within } from './deadline.ts'
import { DigestRing } from './digest-ring.ts'

/** How often the last message handled is compared with what the stream holds at its sequence. */
export const VERIFY_EVERY_MS = 2_000
/** How long a node must stay past the stream's last sequence before it counts as diverged. */
export const AHEAD_CONFIRM_MS = 2 * VERIFY_EVERY_MS
/** Messages whose digests are kept for an audit (24 bytes each: digest-ring.ts). */
export const DIGESTS_KEPT = 50_000
/** Messages an audit compares per check, and how many requests it has in flight at once. */
export const AUDIT_BATCH = 1_000
const AUDIT_CONCURRENCY = 25

export interface StreamCheckOptions {
  readonly js: JetStreamClient
  readonly stream: string
  readonly log: Logger
  /** The sequence of the last message handled (0 before the first). */
  readonly lastSeq: () => number
  /**
   * The highest sequence the stream acknowledged one of this node's appends at: the stream must
   * reach it too, or it lost an acknowledged message (default: appends are not watched).
   */
  readonly acknowledgedThrough?: () => number
  /** The clock of AHEAD_CONFIRM_MS; Date.now unless given. */
  readonly now?: () => number
  /**
   * Whether the follower has read everything the stream held when it started: the first round
   * after that audits everything read so far (default: never caught up, no such audit).
   */
  readonly caughtUp?: () => boolean
}

export interface StreamCheck {
  /** Keep the digest of a message just handled. */
  record(seq: number, data: Uint8Array): void
  /**
   * Compare again everything handled lately: from the oldest digest kept, or from `from` (what
   * came from one source since then).
   */
  audit(from?: number): void
  /** True while an audit has sequences left to compare. */
  auditing(): boolean
  /** One round of checks (see verify below); no answer tells nothing. */
  verify(): Promise<void>
  /** Why what was handled is not what the stream holds, or null while it is. */
  diverged(): string | null
}

export function createStreamCheck(options: StreamCheckOptions): StreamCheck {
  const { js, stream, log } = options
  /** Digests of the last DIGESTS_KEPT messages handled. */
  const digests = new DigestRing(DIGESTS_KEPT)
  /** The first sequence an audit has yet to compare, while one runs. */
  let auditFrom: number | null = null
  let diverged: string | null = null
  /** The stream leader last heard of; a new one starts an audit. */
  let leader: string | null = null
  /** Since when the stream's last sequence has been below the one handled (`seq`); null while not. */
  let ahead: { seq: number; sinceMs: number } | null = null
  let auditedCaughtUp = false
  const clock = options.now ?? Date.now
  const streamApi = streamApiOf(js)

  function audit(from?: number): void {
    const oldest = digests.oldest()
    if (oldest === undefined) return
    const start = Math.max(oldest, from ?? oldest)
    auditFrom = Math.min(auditFrom ?? start, start)
  }

  function divergedAt(seq: number): void {
    diverged = `the stream's message ${seq} is not the one this node handled under that sequence`
    log.error({ stream, seq }, `stream diverged: ${diverged}`)
  }

  /** Whether the stream holds, at `seq`, the message this node handled there; null: cannot tell now. */
  async function sameAt(seq: number): Promise<boolean | null> {
    const stored = await (await streamApi()).getMessage(stream, { seq })
    return stored === null ? null : (digests.matches(seq, stored.data) ?? null)
  }

  /** Compare `from`-`to` (where digests are still kept), AUDIT_CONCURRENCY at a time; the first that differs. */
  async function auditBatch(from: number, to: number): Promise<number | undefined> {
    const seqs = Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i)
    for (let i = 0; i < seqs.length; i += AUDIT_CONCURRENCY) {
      const part = seqs.slice(i, i + AUDIT_CONCURRENCY).filter((seq) => digests.has(seq))
      const same = await Promise.all(part.map((seq) => sameAt(seq)))
      const bad = part.find((_, j) => same[j] === false)
      if (bad !== undefined) return bad
    }
    return undefined
  }

  /**
   * One round of checks: the last message handled; a change of stream leader (which starts an
   * audit of what was handled lately: a deposed leader may have served messages the stream does
   * not hold); and the next part of a running audit. No answer tells nothing.
   */
  async function verify(): Promise<void> {
    if (diverged !== null) return
    // What a node read at start may have come from leaders since deposed, and the leader it first
    // sees may already be another: no change of leader would then start an audit. A node restarted
    // to rebuild read two leaders' differing messages under the same sequences this way after a
    // partition healed (nats-server 2.9.10), so everything read up to the catch-up is audited once.
    if (!auditedCaughtUp && options.caughtUp?.()) {
      auditedCaughtUp = true
      audit()
    }
    const info = await (await streamApi()).info(stream)
    const now = info.cluster?.leader ?? null
    if (leader !== null && now !== null && now !== leader) audit()
    if (now !== null) leader = now
    // The stream never loses its last message (no limits drop any, and a purge removes only an
    // archived game's messages below its marker, which stays), so a node that handled a sequence the
    // stream does not reach read a message the stream never kept: a deposed leader's, seen after a
    // partition on nats-server 2.9.10 (a node one message ahead of the stream for good, its fold
    // holding a bet no other node's did). A leader just elected may not have applied its last
    // entries yet, so it must hold for AHEAD_CONFIRM_MS; the comparisons go first, and name the
    // sequence where they can.
    // Likewise a stream that stays below an append it acknowledged lost it (seen after a partition
    // healed: a settlement acknowledged by the deposed leader, which no later append overwrote).
    const acknowledged = options.acknowledgedThrough?.() ?? 0
    const handled = Math.max(options.lastSeq(), acknowledged)
    const at = clock()
    if (info.state.last_seq >= handled) ahead = null
    else if (ahead === null || ahead.seq !== handled) ahead = { seq: handled, sinceMs: at }
    if (digests.has(options.lastSeq()) && (await sameAt(options.lastSeq())) === false)
      return divergedAt(options.lastSeq())
    if (auditFrom !== null) {
      const to = Math.min(options.lastSeq(), auditFrom + AUDIT_BATCH - 1)
      const bad = await auditBatch(auditFrom, to)
      if (bad !== undefined) return divergedAt(bad)
      auditFrom = to >= options.lastSeq() ? null : to + 1
    }
    if (ahead !== null && at - ahead.sinceMs >= AHEAD_CONFIRM_MS) {
      diverged =
        handled > options.lastSeq()
          ? `the stream acknowledged an append of this node's at ${handled}, past its last sequence, ${info.state.last_seq}`
          : `this node handled sequence ${handled}, past the stream's last, ${info.state.last_seq}`
      log.error({ stream, seq: handled, streamLastSeq: info.state.last_seq }, `stream diverged: ${diverged}`)
    }
  }

  return {
    record(seq, data) {
      digests.record(seq, data)
    },
    audit,
    auditing: () => auditFrom !== null,
    verify,
    diverged: () => diverged,
  }
}

/**
 * Run the check every `everyMs` (0: never), one round at a time. A round that cannot reach the
 * stream starts an audit, unless the follower has closed. Returns the way to stop.
 */
export function verifyEvery(
  check: StreamCheck,
  everyMs: number,
  context: { readonly stream: string; readonly log: Logger; readonly closed: () => boolean },
): () => void {
  if (!(everyMs > 0)) return () => {}
  let verifying = false
  const verifier = setInterval(() => {
    if (verifying) return
    verifying = true
    within(check.verify(), 2 * everyMs, 'checking against the stream')
      .catch((error: unknown) => {
        // The stream could not be reached: its servers may have been stopped or cut off, and
        // come back with a leader that holds other messages than the ones handled meanwhile
        // (seen when every server of a region was paused). Audit what was handled lately.
        context.log.debug(
          { err: error, stream: context.stream },
          'could not check against the stream; auditing',
        )
        if (!context.closed() && !check.auditing()) check.audit()
      })
      .finally(() => {
        verifying = false
      })
  }, everyMs)
  verifier.unref()
  return () => clearInterval(verifier)
}

/**
 * The stream API of `js`'s connection, made once: one request per message asked about or stream
 * described (`js.streams.get` describes the stream first, so each of its answers cost two).
 */
export function streamApiOf(js: JetStreamClient): () => Promise<JetStreamManager['streams']> {
  let manager: Promise<JetStreamManager> | null = null
  return async () => {
    // No account lookup first (false): the requests themselves fail as they would.
    manager ??= js.jetstreamManager(false)
    return (await manager).streams
  }
}
