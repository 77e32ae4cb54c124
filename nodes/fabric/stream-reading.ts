/**
 * One ordered consumer of a stream, and the reading of it in sequence order: opened right after
 * the last message handled, read until its messages end, it skips a sequence, or its supervisor
 * abandons it (stream-follower.ts says why a consumer needs one). A message at or before the last
 * one handled is passed over; a consumer that delivers past the next sequence has a hole, and what
 * it delivered is not handled, unless the stream no longer holds the sequences skipped (a purge
 * removed them).
 */

import { type ConsumerMessages, DeliverPolicy, type JetStreamClient, type JsMsg } from '@nats-io/jetstream'
import type { Logger } from 'pino'
import { within } from './deadline.ts'

/**
 * Opening a consumer that takes longer than this has failed: it is abandoned (and closed if it
 * ever opens) and another is tried. Every request it makes has its own timeout; this bounds them
 * all together, so that nothing the client library does can leave the follower waiting for good.
 */
export const OPEN_TIMEOUT_MS = 15_000

/** A stored stream message as a reader sees it (a JetStream `JsMsg` is one). */
export interface StreamMessage {
  readonly subject: string
  readonly seq: number
  readonly data: Uint8Array
  readonly headers?: { get(name: string): string } | undefined
  json<T = unknown>(): T
  string(): string
}

/** The stream a follower reads, and where it tells what went wrong. */
export interface StreamSource {
  readonly js: JetStreamClient
  readonly stream: string
  readonly filterSubject?: string | undefined
  readonly log: Logger
}

/** Where a follower's reading stands; its consumers, its watchdog and its supervisor share it. */
export interface ReadingPosition {
  /** The next sequence to handle. */
  next: number
  /** The sequence of the last message handled (0 before the first). */
  lastSeq: number
  /** True once everything the stream held at the start has been handled. */
  caughtUp: boolean
  /** How many times a consumer skipped a sequence. */
  holes: number
  /** When the last message was handled or the last consumer opened. */
  progressAt: number
  /** Set once the follower closes: no reading goes on after it. */
  closed: boolean
}

/** One consumer, and the way to stop reading it whatever its iterator does. */
export interface Reading {
  readonly messages: ConsumerMessages
  info(): Promise<{ num_pending: number }>
  /** Stop reading it now: the read in progress ends even if the iterator never does. */
  abandon(): void
  /** Set while a read waits, to end that wait. */
  wake: (() => void) | null
  abandoned: boolean
}

async function openConsumer(source: StreamSource, position: ReadingPosition): Promise<Reading> {
  const consumer = await source.js.consumers.get(source.stream, {
    ...(source.filterSubject ? { filter_subjects: source.filterSubject } : {}),
    deliver_policy: DeliverPolicy.StartSequence,
    opt_start_seq: position.next,
  })
  const messages = await consumer.consume()
  if (!position.caughtUp && (await consumer.info(true)).num_pending === 0) position.caughtUp = true
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

/**
 * One try at opening a consumer that has not opened within this is given up and another tried.
 * nats-server 2.9 places a consumer on one of the stream's replicas at random, a replica whose
 * server is down or paused included, and then the opening waits for an answer that never comes;
 * another try lands elsewhere two times in three. Opening takes milliseconds otherwise.
 */
export const OPEN_ATTEMPT_MS = 1_000

/**
 * Open a consumer at the next sequence, trying again (OPEN_ATTEMPT_MS each) until one opens or
 * OPEN_TIMEOUT_MS have passed; then the last failure is thrown. Between tries, `meanwhile` is
 * given the wait (the follower reads on by direct gets: direct-reading.ts).
 */
export async function openReading(
  source: StreamSource,
  position: ReadingPosition,
  meanwhile: (ms: number) => Promise<unknown> = sleep,
): Promise<Reading> {
  const deadline = Date.now() + OPEN_TIMEOUT_MS
  for (let attempt = 0; ; attempt++) {
    try {
      return await openOnce(source, position, Math.min(OPEN_ATTEMPT_MS, deadline - Date.now()))
    } catch (error) {
      // A refusal comes at once (no meta leader during an election): wait before the next try.
      const wait = OPEN_RETRY_MS[Math.min(attempt, OPEN_RETRY_MS.length - 1)] as number
      if (position.closed || deadline - Date.now() <= wait) throw error
      if (attempt === 0)
        source.log.warn({ err: error, stream: source.stream }, 'opening a consumer failed; trying again')
      await meanwhile(wait)
    }
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Waits between tries at opening a consumer, up to the last value. */
const OPEN_RETRY_MS: readonly number[] = [50, 100, 250, 500]

function openOnce(source: StreamSource, position: ReadingPosition, ms: number): Promise<Reading> {
  const opening = openConsumer(source, position)
  return within(opening, ms, `opening a consumer on ${source.stream}`).catch((error: unknown) => {
    // Should it open after all, it must not deliver to anyone.
    opening.then((late) => late.messages.close()).catch(() => {})
    throw error
  })
}

/** Sequences of a gap asked about at once. */
const GAP_CHECK_CONCURRENCY = 25

/**
 * Whether the stream holds none of `from`-`to`: a purge removed them (an archived game's updates,
 * archive.ts), and a consumer rightly passes over them. Its leader answers: a consumer on a server
 * whose copy of the stream has a hole skips messages the leader holds, and that is a hole. A gap
 * below the stream's first sequence is known at once; one inside it is asked message by message.
 * No answer is a hole: the consumer is replaced, and the gap asked about again.
 */
async function removedBetween(source: StreamSource, from: number, to: number): Promise<boolean> {
  try {
    const stream = await source.js.streams.get(source.stream)
    const first = Math.max(from, (await stream.info()).state.first_seq)
    for (let seq = first; seq <= to; seq += GAP_CHECK_CONCURRENCY) {
      const seqs = Array.from({ length: Math.min(GAP_CHECK_CONCURRENCY, to - seq + 1) }, (_, i) => seq + i)
      const held = await Promise.all(seqs.map((at) => stream.getMessage({ seq: at })))
      if (held.some((message) => message !== null)) return false
    }
    if (to - from + 1 >= GAP_LOG_MIN)
      source.log.info({ stream: source.stream, from, to }, 'passed over purged messages')
    return true
  } catch (error) {
    source.log.warn({ err: error, stream: source.stream, from, to }, 'could not ask the stream about a gap')
    return false
  }
}

/** A gap at least this long is logged when passed over (shorter ones are an archived game's usual). */
const GAP_LOG_MIN = 1_000

/**
 * Hand the consumer's messages to `handle` in order until it ends, skips one, or is abandoned;
 * the position has moved past a message before `handle` sees it.
 */
export async function readInOrder(
  reading: Reading,
  source: StreamSource,
  position: ReadingPosition,
  handle: (message: JsMsg) => void,
): Promise<void> {
  const iterator = reading.messages[Symbol.asyncIterator]()
  while (!position.closed && !reading.abandoned) {
    // A fresh promise per message: racing one long-lived promise would pile up its reactions.
    const step = await new Promise<IteratorResult<JsMsg> | null>((resolve, reject) => {
      reading.wake = () => resolve(null)
      iterator.next().then(resolve, reject)
    })
    reading.wake = null
    if (step === null || step.done) return
    const message = step.value
    if (message.seq < position.next) continue
    const removed =
      message.seq > position.next && (await removedBetween(source, position.next, message.seq - 1))
    if (position.closed || reading.abandoned) return
    if (message.seq > position.next && !removed) {
      position.holes++
      source.log.error(
        { stream: source.stream, expected: position.next, got: message.seq },
        'stream consumer skipped messages; starting another at the first one missing',
      )
      reading.abandon()
      return
    }
    position.next = message.seq + 1
    position.lastSeq = message.seq
    position.progressAt = Date.now()
    handle(message)
    if (message.info.pending === 0) position.caughtUp = true
  }
}
