/**
 * The watchdog of a follower's consumer. A consumer can be gone without its messages ending, or
 * silent while the stream holds messages past the last one handled (stream-follower.ts tells where
 * both were seen); the watchdog asks, of a consumer that has handled nothing for a while, what it
 * still holds and what the stream holds, and abandons it when it is behind or does not answer, so
 * that its supervisor starts another.
 */

import { within } from './deadline.ts'
import type { Reading, ReadingPosition, StreamSource } from './stream-reading.ts'

/** How often a silent consumer is checked; twice this without progress while it has messages restarts it. */
export const STALL_CHECK_MS = 2_000

/**
 * A nudged consumer (one whose node waits for a message it should have delivered: its own append,
 * acknowledged) that does not answer its info within this is taken for gone and replaced. A
 * consumer lives on one server; when that server dies or stops, its info goes unanswered.
 */
export const NUDGE_ANSWER_MS = 500
/** Nudges within this of the last one are the same nudge. */
export const NUDGE_EVERY_MS = 250

export interface Watchdog {
  stop(): void
  /** Ask the consumer now whether it is still there, as a node waiting for a message does. */
  nudge(): void
}

export interface WatchdogOptions {
  readonly source: StreamSource
  readonly position: ReadingPosition
  /** The consumer being read now, or null between consumers. */
  readonly watched: () => Reading | null
  readonly stallCheckMs: number
}

/** The stream's last sequence, or null when it cannot be read now (then it tells nothing). */
function streamLastSeq({ js, stream }: StreamSource): Promise<number | null> {
  return js.streams
    .get(stream)
    .then((handle) => handle.info())
    .then(
      (info) => info.state.last_seq,
      () => null,
    )
}

/** Start checking every `stallCheckMs`, and whenever nudged. */
export function watchConsumer(options: WatchdogOptions): Watchdog {
  const { source, position, stallCheckMs } = options
  const { log, stream } = source
  let checking = false
  // A nudge asks on its own, also while a periodic check waits (up to two periods) for its answer.
  let nudging = false
  let nudgedAt = 0
  // A check that does not answer within two periods counts as a consumer gone.
  const watchdog = setInterval(() => {
    const watched = options.watched()
    if (watched === null || checking || Date.now() - position.progressAt < stallCheckMs) return
    checking = true
    within(Promise.all([watched.info(), streamLastSeq(source)]), 2 * stallCheckMs, 'checking the consumer')
      .then(
        ([{ num_pending }, streamSeq]) => {
          const behind = num_pending > 0 || (streamSeq !== null && streamSeq >= position.next)
          if (behind && Date.now() - position.progressAt >= 2 * stallCheckMs) {
            log.warn(
              { stream, pending: num_pending, streamSeq, next: position.next },
              'stream consumer stalled; starting another',
            )
            watched.abandon()
          }
        },
        (error: unknown) => {
          log.warn({ err: error, stream, next: position.next }, 'stream consumer is gone; starting another')
          watched.abandon()
        },
      )
      .finally(() => {
        checking = false
      })
  }, stallCheckMs)
  watchdog.unref()
  return {
    stop: () => clearInterval(watchdog),
    nudge() {
      const watched = options.watched()
      const now = Date.now()
      if (watched === null || nudging || now - nudgedAt < NUDGE_EVERY_MS) return
      nudgedAt = now
      nudging = true
      within(watched.info(), NUDGE_ANSWER_MS, 'the consumer answering')
        .catch((error: unknown) => {
          log.warn(
            { err: error, stream, next: position.next },
            'stream consumer does not answer while a message it should deliver is awaited; starting another',
          )
          watched.abandon()
        })
        .finally(() => {
          nudging = false
        })
    },
  }
}
