/**
 * Follow a stream from a sequence on, in order, for as long as the node runs, whatever happens to
 * the servers. An ordered consumer is an ephemeral, single-replica consumer: when the server that
 * holds it dies the consumer dies with it, and the client library does not always notice (seen in
 * chaos runs: a nats-server killed and restarted left some nodes' consumers silent for good, their
 * replicas behind and their verdicts never final). So the follower supervises it: when the
 * consumer's messages end or fail, or a check finds it gone, holding messages it does not deliver,
 * or silent while the stream holds messages past the last one handled (seen after a partition
 * healed: the consumer reported nothing pending), a new ordered consumer starts right after the
 * last message handled. Nothing is skipped and nothing handled twice: a message at or before the
 * last one handled is passed over, and a consumer that skips a sequence (seen after a partition
 * healed: a consumer on a server whose copy of the stream had a hole, and two nodes' ledger folds
 * disagreed by one entry) is replaced, without handling what it delivered, until one delivers the
 * missing message; unless the stream's leader no longer holds the sequences skipped (a purge
 * removed an archived game's messages: archive.ts), which are then passed over.
 *
 * A sequence must also name the same message for everyone. After a partition healed, nodes were
 * seen to have read different messages under the same sequences (one node's ledger held bets at
 * 101-116 that another's never saw, and the other way round): the fold was then wrong for good,
 * whatever came after. So every `verifyEveryMs` the follower asks the stream (its leader answers)
 * for the message at the last sequence it handled and compares it with what it handled; and when
 * the stream's leader changes, a consumer is replaced or a check cannot reach the stream, it
 * audits everything it handled lately (the last DIGESTS_KEPT messages, AUDIT_BATCH per check),
 * since a deposed leader may have served messages the stream does not hold. A mismatch marks the
 * follower diverged; the node then stops, and its supervisor starts it again to rebuild from the
 * log (node-main.ts).
 *
 * The parts: stream-reading.ts opens one consumer and reads it in order, stream-watchdog.ts finds
 * a consumer gone or stalled, stream-check.ts compares what was handled with what the stream holds,
 * and this module supervises them, replacing each consumer that ends.
 */

import type { JetStreamClient } from '@nats-io/jetstream'
import type { Logger } from 'pino'
import { createDirectReader } from './direct-reading.ts'
import { createStreamCheck, type StreamCheck, VERIFY_EVERY_MS, verifyEvery } from './stream-check.ts'
import {
  openReading,
  type Reading,
  type ReadingPosition,
  readInOrder,
  type StreamMessage,
  type StreamSource,
} from './stream-reading.ts'
import { STALL_CHECK_MS, watchConsumer } from './stream-watchdog.ts'

export { AUDIT_BATCH, DIGESTS_KEPT, VERIFY_EVERY_MS } from './stream-check.ts'
export { OPEN_TIMEOUT_MS, type StreamMessage } from './stream-reading.ts'
export { STALL_CHECK_MS } from './stream-watchdog.ts'

/** How long a nudge reads on by direct gets (unless one such reading runs already). */
export const NUDGE_DIRECT_READ_MS = 500
/** Reading on by direct gets (direct-reading.ts) is logged at most this often per stream. */
export const DIRECT_LOG_EVERY_MS = 5_000

/** Backoff between consumer restarts that fail, up to the last value. */
export const RESTART_BACKOFF_MS: readonly number[] = [100, 250, 500, 1_000, 2_000]

/** What the follower is doing, for whoever diagnoses a node that fell behind. */
export type FollowerPhase = 'opening' | 'consuming' | 'backing off' | 'closed'

export interface FollowOptions {
  readonly js: JetStreamClient
  readonly stream: string
  /**
   * Must cover every subject the stream holds: the stall check compares with its last sequence,
   * and a message arriving past the next sequence is a hole.
   */
  readonly filterSubject?: string
  /** The first sequence to deliver. */
  readonly startSeq: number
  /** Called for each message in stream order; it must not throw (log and carry on instead). */
  readonly onMessage: (message: StreamMessage) => void
  readonly log: Logger
  readonly stallCheckMs?: number
  /** 0 turns the check against the stream off (VERIFY_EVERY_MS by default). */
  readonly verifyEveryMs?: number
  /** The highest sequence the stream acknowledged one of this node's appends at (stream-check.ts). */
  readonly acknowledgedThrough?: () => number
}

/** What a follower tells about itself, without the means to stop it. */
export type FollowerView = Omit<StreamFollower, 'close'>

export interface StreamFollower {
  /** The sequence of the last message handled (0 before the first). */
  lastSeq(): number
  /** True once everything the stream held at the start has been handled. */
  caughtUp(): boolean
  /** How many times the consumer was replaced. */
  restarts(): number
  /** How many times a consumer skipped a sequence (and was replaced). */
  holes(): number
  phase(): FollowerPhase
  /** Milliseconds since the last message handled or the last consumer opened. */
  idleMs(): number
  /** Why what this follower handled is not what the stream holds, or null while it is. */
  diverged(): string | null
  /**
   * True while what it handled lately is being compared again with the stream (after a consumer
   * was replaced, the stream's leader changed or the stream could not be reached): until that ends,
   * a state folded from it may still turn out not to be the stream's.
   */
  auditing(): boolean
  /**
   * The node awaits a message the stream acknowledged: make sure the consumer is still there (it
   * is replaced at once if it does not answer), rather than wait for the next stall check, and
   * read on by direct gets meanwhile, for NUDGE_DIRECT_READ_MS.
   */
  nudge(): void
  close(): Promise<void>
}

/** The consumer being read and how its supervision goes. */
interface Supervision {
  current: Reading | null
  phase: FollowerPhase
  restarts: number
}

export async function followStream(options: FollowOptions): Promise<StreamFollower> {
  const { js, stream, log } = options
  const source: StreamSource = { js, stream, log, filterSubject: options.filterSubject }
  const position: ReadingPosition = {
    next: options.startSeq,
    lastSeq: 0,
    caughtUp: false,
    holes: 0,
    progressAt: Date.now(),
    closed: false,
  }
  const supervision: Supervision = { current: null, phase: 'opening', restarts: 0 }
  const check = createStreamCheck({
    js,
    stream,
    log,
    lastSeq: () => position.lastSeq,
    caughtUp: () => position.caughtUp,
    ...(options.acknowledgedThrough ? { acknowledgedThrough: options.acknowledgedThrough } : {}),
  })
  const handle = (message: StreamMessage) => {
    check.record(message.seq, message.data)
    options.onMessage(message)
  }
  const direct = createDirectReader(source, position, handle)
  let directSince = 0
  let loggedAt = 0
  /** Read on by direct gets for `ms`; what they deliver is audited, as a deposed leader's might be. */
  const readDirectly = async (ms: number) => {
    const from = position.next
    const handled = await direct.readFor(ms)
    if (handled === 0) return
    check.audit(from)
    directSince += handled
    if (Date.now() - loggedAt < DIRECT_LOG_EVERY_MS) return
    loggedAt = Date.now()
    log.info({ stream, handled: directSince, lastSeq: position.lastSeq }, 'read on by direct gets')
    directSince = 0
  }

  // The first consumer must open, or the node cannot start: let that failure reach the caller.
  supervision.current = await openReading(source, position)
  const following = superviseConsumers({ source, position, supervision, check, handle, readDirectly })
  const watchdog = watchConsumer({
    source,
    position,
    watched: () => supervision.current,
    stallCheckMs: options.stallCheckMs ?? STALL_CHECK_MS,
  })
  const stopVerifying = verifyEvery(check, options.verifyEveryMs ?? VERIFY_EVERY_MS, {
    stream,
    log,
    closed: () => position.closed,
  })

  return {
    lastSeq: () => position.lastSeq,
    caughtUp: () => position.caughtUp,
    restarts: () => supervision.restarts,
    holes: () => position.holes,
    phase: () => supervision.phase,
    idleMs: () => Date.now() - position.progressAt,
    diverged: () => check.diverged(),
    auditing: () => check.auditing(),
    nudge() {
      watchdog.nudge()
      // A consumer on a server cut off says nothing until the check above gives up on it: the
      // awaited message may be read directly meanwhile (a consumer that delivers it first wins).
      // Every waiting read-back nudges; one reading serves them all.
      if (!position.closed && !direct.busy()) void readDirectly(NUDGE_DIRECT_READ_MS)
    },
    async close() {
      if (position.closed) return
      position.closed = true
      watchdog.stop()
      stopVerifying()
      await supervision.current?.messages.close()
      await following
    },
  }
}

/**
 * Read consumer after consumer until the follower closes: when one ends, fails or is abandoned,
 * start another right after the last message handled, backing off while opening fails.
 */
async function superviseConsumers(parts: {
  readonly source: StreamSource
  readonly position: ReadingPosition
  readonly supervision: Supervision
  readonly check: StreamCheck
  readonly handle: (message: StreamMessage) => void
  /** Read on by direct gets for `ms` (direct-reading.ts). */
  readonly readDirectly: (ms: number) => Promise<void>
}): Promise<void> {
  const { source, position, supervision, readDirectly } = parts
  let attempt = 0
  while (!position.closed) {
    try {
      if (supervision.current === null) {
        supervision.phase = 'opening'
        supervision.current = await openReading(source, position, readDirectly)
      }
      if (position.closed) {
        // Not close(): it waits for the messages' reader to finish, and nothing reads them yet.
        supervision.current.messages.stop()
        break
      }
      attempt = 0
      position.progressAt = Date.now()
      supervision.phase = 'consuming'
      await readInOrder(supervision.current, source, position, parts.handle)
    } catch (error) {
      if (!position.closed)
        source.log.warn({ err: error, stream: source.stream }, 'stream consumer failed; starting another')
    }
    supervision.current = null
    if (position.closed) break
    supervision.restarts++
    // What the replaced consumer delivered may have come from a server the others had left.
    parts.check.audit()
    supervision.phase = 'backing off'
    await readDirectly(RESTART_BACKOFF_MS[Math.min(attempt++, RESTART_BACKOFF_MS.length - 1)] as number)
  }
  supervision.phase = 'closed'
}
