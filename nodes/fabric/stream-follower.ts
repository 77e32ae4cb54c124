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
 */

import { type ConsumerMessages, DeliverPolicy, type JetStreamClient, type JsMsg } from '@nats-io/jetstream'
import type { Logger } from 'pino'

/** How often a silent consumer is checked; twice this without progress while it has messages restarts it. */
export const STALL_CHECK_MS = 2_000
/** Backoff between consumer restarts that fail, up to the last value. */
export const RESTART_BACKOFF_MS: readonly number[] = [100, 250, 500, 1_000, 2_000]

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
  readonly onMessage: (message: JsMsg) => void
  readonly log: Logger
  readonly stallCheckMs?: number
}

export interface StreamFollower {
  /** The sequence of the last message handled (0 before the first). */
  lastSeq(): number
  /** True once everything the stream held at the start has been handled. */
  caughtUp(): boolean
  /** How many times the consumer was replaced. */
  restarts(): number
  /** How many times a consumer skipped a sequence (and was replaced). */
  holes(): number
  close(): Promise<void>
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export async function followStream(options: FollowOptions): Promise<StreamFollower> {
  const { js, stream, log } = options
  const stallCheckMs = options.stallCheckMs ?? STALL_CHECK_MS
  let next = options.startSeq
  let lastSeq = 0
  let caughtUp = false
  let closed = false
  let restarts = 0
  let holes = 0
  let current: { messages: ConsumerMessages; info(): Promise<{ num_pending: number }> } | null = null
  let progressAt = Date.now()

  async function open(): Promise<NonNullable<typeof current>> {
    const consumer = await js.consumers.get(stream, {
      ...(options.filterSubject ? { filter_subjects: options.filterSubject } : {}),
      deliver_policy: DeliverPolicy.StartSequence,
      opt_start_seq: next,
    })
    const messages = await consumer.consume()
    if (!caughtUp && (await consumer.info(true)).num_pending === 0) caughtUp = true
    return { messages, info: () => consumer.info() }
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
        for await (const message of current.messages) {
          if (message.seq < next) continue
          if (message.seq > next) {
            holes++
            log.error(
              { stream, expected: next, got: message.seq },
              'stream consumer skipped messages; starting another at the first one missing',
            )
            current.messages.stop()
            break
          }
          next = message.seq + 1
          lastSeq = message.seq
          progressAt = Date.now()
          options.onMessage(message)
          if (message.info.pending === 0) caughtUp = true
        }
      } catch (error) {
        if (!closed) log.warn({ err: error, stream }, 'stream consumer failed; starting another')
      }
      current = null
      if (closed) break
      restarts++
      await delay(RESTART_BACKOFF_MS[Math.min(attempt++, RESTART_BACKOFF_MS.length - 1)] as number)
    }
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

  const watchdog = setInterval(() => {
    const watched = current
    if (watched === null || checking || Date.now() - progressAt < stallCheckMs) return
    checking = true
    Promise.all([watched.info(), streamLastSeq()])
      .then(
        ([{ num_pending }, streamSeq]) => {
          const behind = num_pending > 0 || (streamSeq !== null && streamSeq >= next)
          if (behind && Date.now() - progressAt >= 2 * stallCheckMs) {
            log.warn(
              { stream, pending: num_pending, streamSeq, next },
              'stream consumer stalled; starting another',
            )
            watched.messages.stop()
          }
        },
        (error: unknown) => {
          log.warn({ err: error, stream, next }, 'stream consumer is gone; starting another')
          watched.messages.stop()
        },
      )
      .finally(() => {
        checking = false
      })
  }, stallCheckMs)
  watchdog.unref()

  return {
    lastSeq: () => lastSeq,
    caughtUp: () => caughtUp,
    restarts: () => restarts,
    holes: () => holes,
    async close() {
      if (closed) return
      closed = true
      clearInterval(watchdog)
      await current?.messages.close()
      await following
    },
  }
}
