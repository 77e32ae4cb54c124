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
 * missing message.
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
 */

import { createHash } from 'node:crypto'
import { type ConsumerMessages, DeliverPolicy, type JetStreamClient, type JsMsg } from '@nats-io/jetstream'
import type { Logger } from 'pino'

/** How often a silent consumer is checked; twice this without progress while it has messages restarts it. */
export const STALL_CHECK_MS = 2_000
/** Backoff between consumer restarts that fail, up to the last value. */
export const RESTART_BACKOFF_MS: readonly number[] = [100, 250, 500, 1_000, 2_000]
/**
 * Opening a consumer that takes longer than this has failed: it is abandoned (and closed if it
 * ever opens) and another is tried. Every request it makes has its own timeout; this bounds them
 * all together, so that nothing the client library does can leave the follower waiting for good.
 */
export const OPEN_TIMEOUT_MS = 15_000

/** How often the last message handled is compared with what the stream holds at its sequence. */
export const VERIFY_EVERY_MS = 5_000
/** Messages whose digests are kept for an audit (about 60 bytes each). */
export const DIGESTS_KEPT = 50_000
/** Messages an audit compares per check, and how many requests it has in flight at once. */
export const AUDIT_BATCH = 1_000
const AUDIT_CONCURRENCY = 25

/** What the follower is doing, for whoever diagnoses a node that fell behind. */
/** A stored stream message as a reader sees it (a JetStream `JsMsg` is one). */
export interface StreamMessage {
  readonly subject: string
  readonly seq: number
  readonly data: Uint8Array
  readonly headers?: { get(name: string): string } | undefined
  json<T = unknown>(): T
  string(): string
}

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
  close(): Promise<void>
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Settles like `promise`, or rejects once `ms` have passed. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms`)), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      },
    )
  })
}

/** One consumer, and the way to stop reading it whatever its iterator does. */
interface Reading {
  readonly messages: ConsumerMessages
  info(): Promise<{ num_pending: number }>
  /** Stop reading it now: the read in progress ends even if the iterator never does. */
  abandon(): void
  /** Set while a read waits, to end that wait. */
  wake: (() => void) | null
  abandoned: boolean
}

export async function followStream(options: FollowOptions): Promise<StreamFollower> {
  const { js, stream, log } = options
  const stallCheckMs = options.stallCheckMs ?? STALL_CHECK_MS
  let next = options.startSeq
  let lastSeq = 0
  let caughtUp = false
  let closed = false
  let restarts = 0
  let holes = 0
  let current: Reading | null = null
  let progressAt = Date.now()
  let phase: FollowerPhase = 'opening'
  /** Digests of the last DIGESTS_KEPT messages handled, for the checks against the stream. */
  const digests = new Map<number, string>()
  /** The first sequence an audit has yet to compare, while one runs. */
  let auditFrom: number | null = null
  let diverged: string | null = null

  /** Compare again, from the oldest digest kept, everything handled lately. */
  function audit(): void {
    const oldest = digests.keys().next().value
    if (oldest !== undefined) auditFrom = Math.min(auditFrom ?? oldest, oldest)
  }

  async function openConsumer(): Promise<Reading> {
    const consumer = await js.consumers.get(stream, {
      ...(options.filterSubject ? { filter_subjects: options.filterSubject } : {}),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: next,
    })
    const messages = await consumer.consume()
    if (!caughtUp && (await consumer.info(true)).num_pending === 0) caughtUp = true
    const reading: Reading = {
      messages,
      info: () => consumer.info(),
      abandon() {
        reading.abandoned = true
        messages.stop()
        reading.wake?.()
      },
      wake: null,
      abandoned: false,
    }
    return reading
  }

  /** Open a consumer at `next`; one that has not opened within OPEN_TIMEOUT_MS is given up. */
  function open(): Promise<Reading> {
    phase = 'opening'
    const opening = openConsumer()
    return within(opening, OPEN_TIMEOUT_MS, `opening a consumer on ${stream}`).catch((error: unknown) => {
      // Should it open after all, it must not deliver to anyone.
      opening.then((late) => late.messages.close()).catch(() => {})
      throw error
    })
  }

  /** Handle the consumer's messages in order until it ends, skips one, or is abandoned. */
  async function read(reading: Reading): Promise<void> {
    const iterator = reading.messages[Symbol.asyncIterator]()
    while (!closed && !reading.abandoned) {
      // A fresh promise per message: racing one long-lived promise would pile up its reactions.
      const step = await new Promise<IteratorResult<JsMsg> | null>((resolve, reject) => {
        reading.wake = () => resolve(null)
        iterator.next().then(resolve, reject)
      })
      reading.wake = null
      if (step === null || step.done) return
      const message = step.value
      if (message.seq < next) continue
      if (message.seq > next) {
        holes++
        log.error(
          { stream, expected: next, got: message.seq },
          'stream consumer skipped messages; starting another at the first one missing',
        )
        reading.abandon()
        return
      }
      next = message.seq + 1
      lastSeq = message.seq
      digests.set(message.seq, digestOf(message.data))
      if (digests.size > DIGESTS_KEPT) digests.delete(digests.keys().next().value as number)
      progressAt = Date.now()
      options.onMessage(message)
      if (message.info.pending === 0) caughtUp = true
    }
  }

  // The first consumer must open, or the node cannot start: let that failure reach the caller.
  current = await open()
  const following = (async () => {
    let attempt = 0
    while (!closed) {
      try {
        current ??= await open()
        if (closed) {
          await current.messages.close()
          break
        }
        attempt = 0
        progressAt = Date.now()
        phase = 'consuming'
        await read(current)
      } catch (error) {
        if (!closed) log.warn({ err: error, stream }, 'stream consumer failed; starting another')
      }
      current = null
      if (closed) break
      restarts++
      // What the replaced consumer delivered may have come from a server the others had left.
      audit()
      phase = 'backing off'
      await delay(RESTART_BACKOFF_MS[Math.min(attempt++, RESTART_BACKOFF_MS.length - 1)] as number)
    }
    phase = 'closed'
  })()

  let checking = false
  /** The stream's last sequence, or null when it cannot be read now (then it tells nothing). */
  const streamLastSeq = () =>
    js.streams
      .get(stream)
      .then((handle) => handle.info())
      .then(
        (info) => info.state.last_seq,
        () => null,
      )

  // A check that does not answer within two periods counts as a consumer gone.
  const watchdog = setInterval(() => {
    const watched = current
    if (watched === null || checking || Date.now() - progressAt < stallCheckMs) return
    checking = true
    within(Promise.all([watched.info(), streamLastSeq()]), 2 * stallCheckMs, 'checking the consumer')
      .then(
        ([{ num_pending }, streamSeq]) => {
          const behind = num_pending > 0 || (streamSeq !== null && streamSeq >= next)
          if (behind && Date.now() - progressAt >= 2 * stallCheckMs) {
            log.warn(
              { stream, pending: num_pending, streamSeq, next },
              'stream consumer stalled; starting another',
            )
            watched.abandon()
          }
        },
        (error: unknown) => {
          log.warn({ err: error, stream, next }, 'stream consumer is gone; starting another')
          watched.abandon()
        },
      )
      .finally(() => {
        checking = false
      })
  }, stallCheckMs)
  watchdog.unref()

  const verifyEveryMs = options.verifyEveryMs ?? VERIFY_EVERY_MS
  let verifying = false
  /** The stream leader last heard of; a new one starts an audit. */
  let leader: string | null = null

  function divergedAt(seq: number): void {
    diverged = `the stream's message ${seq} is not the one this node handled under that sequence`
    log.error({ stream, seq }, `stream diverged: ${diverged}`)
  }

  /** Whether the stream holds, at `seq`, the message this node handled there; null: cannot tell now. */
  async function sameAt(seq: number, digest: string): Promise<boolean | null> {
    const stored = await js.streams.get(stream).then((handle) => handle.getMessage({ seq }))
    return stored === null ? null : digestOf(stored.data) === digest
  }

  /**
   * One round of checks: the last message handled; a change of stream leader (which starts an
   * audit of what was handled lately: a deposed leader may have served messages the stream does
   * not hold); and the next part of a running audit. No answer tells nothing.
   */
  async function verify(): Promise<void> {
    if (diverged !== null) return
    const info = await js.streams.get(stream).then((handle) => handle.info())
    const now = info.cluster?.leader ?? null
    if (leader !== null && now !== null && now !== leader) audit()
    if (now !== null) leader = now
    const last = digests.get(lastSeq)
    if (last !== undefined && (await sameAt(lastSeq, last)) === false) return divergedAt(lastSeq)
    if (auditFrom === null) return
    const to = Math.min(lastSeq, auditFrom + AUDIT_BATCH - 1)
    const seqs = Array.from({ length: Math.max(0, to - auditFrom + 1) }, (_, i) => (auditFrom as number) + i)
    for (let i = 0; i < seqs.length; i += AUDIT_CONCURRENCY) {
      const part = seqs.slice(i, i + AUDIT_CONCURRENCY).filter((seq) => digests.has(seq))
      const same = await Promise.all(part.map((seq) => sameAt(seq, digests.get(seq) as string)))
      const bad = part.find((_, j) => same[j] === false)
      if (bad !== undefined) return divergedAt(bad)
    }
    auditFrom = to >= lastSeq ? null : to + 1
  }

  const verifier =
    verifyEveryMs > 0
      ? setInterval(() => {
          if (verifying) return
          verifying = true
          within(verify(), 2 * verifyEveryMs, 'checking against the stream')
            .catch((error: unknown) => {
              // The stream could not be reached: its servers may have been stopped or cut off, and
              // come back with a leader that holds other messages than the ones handled meanwhile
              // (seen when every server of a region was paused). Audit what was handled lately.
              log.debug({ err: error, stream }, 'could not check against the stream; auditing')
              if (!closed && auditFrom === null) audit()
            })
            .finally(() => {
              verifying = false
            })
        }, verifyEveryMs)
      : null
  verifier?.unref()

  return {
    lastSeq: () => lastSeq,
    caughtUp: () => caughtUp,
    restarts: () => restarts,
    holes: () => holes,
    phase: () => phase,
    idleMs: () => Date.now() - progressAt,
    diverged: () => diverged,
    async close() {
      if (closed) return
      closed = true
      clearInterval(watchdog)
      if (verifier) clearInterval(verifier)
      await current?.messages.close()
      await following
    },
  }
}

function digestOf(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('base64url')
}
