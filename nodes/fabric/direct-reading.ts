/**
 * Reading on while no consumer can be opened. nats-server places every consumer through its meta
 * group, and while that group has no leader (seen for about 15 s when a server was cut off from the
 * other two: the meta group re-formed, and after the heal again) every consumer creation is refused
 * as "temporarily unavailable", and so is every request the stream's leader answers. The streams
 * go on taking appends all the while, since each has a group of its own: an API node saw its bets
 * acknowledged and could answer none, since it answers a bet once its follower has handled the
 * entry. Direct gets (`allow_direct`, on every stream the nodes create; nats-server 2.9 has them)
 * are answered by any replica of the stream on its own, with no meta group. So between tries at
 * opening a consumer, the follower reads on by direct gets of the next sequences, in order.
 *
 * A replica answering a direct get may be behind the stream's leader: a sequence it does not hold
 * yet is "not found", and the reading stops there and asks again a little later. What it handles is
 * checked against the stream's leader like anything a replaced consumer delivered (stream-check.ts
 * audits it once the leader answers again). A sequence removed by a purge (an archived game's
 * messages, archive.ts) reads as "not found" too: the reading waits there for a consumer, which
 * passes over it.
 */

import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream'
import { within } from './deadline.ts'
import type { ReadingPosition, StreamMessage, StreamSource } from './stream-reading.ts'

/** Sequences asked for at once after the first; the first not answered ends the round. */
export const DIRECT_READ_BATCH = 32
/** A direct get not answered within this is taken as not answered. */
export const DIRECT_GET_MS = 500
/** The wait before asking again for a sequence no replica held yet, or after a failed round. */
export const DIRECT_POLL_MS = 50

/** The way to read one stream by direct gets, made once per follower. */
export interface DirectReader {
  /**
   * Handle the messages past the last one handled, in order, until `ms` have passed or the
   * follower closes; resolves with how many it handled. One reading runs at a time: called while
   * one runs, it waits `ms` and handles nothing.
   */
  readFor(ms: number): Promise<number>
  /** Whether a reading runs now. */
  busy(): boolean
}

export function createDirectReader(
  source: StreamSource,
  position: ReadingPosition,
  handle: (message: StreamMessage) => void,
): DirectReader {
  let manager: Promise<JetStreamManager> | null = null
  // No request at creation: the account check it makes by default needs the meta group.
  const jsm = () => {
    manager ??= managerOf(source.js)
    return manager
  }

  async function get(seq: number): Promise<StreamMessage | null> {
    try {
      const message = await within(
        jsm().then((m) => m.direct.getMessage(source.stream, { seq })),
        DIRECT_GET_MS,
        `a direct get of ${source.stream} ${seq}`,
      )
      if (message === null || message.seq !== seq) return null
      return {
        subject: message.subject,
        seq,
        data: message.data,
        headers: message.header,
        json: () => message.json(),
        string: () => message.string(),
      }
    } catch {
      // No replica answered (none reachable, or the stream does not allow direct gets).
      return null
    }
  }

  /** Handle `message` if it is the next one; false if it is not there or not the next. */
  function take(message: StreamMessage | null): boolean {
    // A consumer may have opened meanwhile and moved on: what it handled is not handled again.
    if (message === null || position.closed || message.seq !== position.next) return false
    position.next = message.seq + 1
    position.lastSeq = message.seq
    position.progressAt = Date.now()
    handle(message)
    return true
  }

  /**
   * One round: the next sequence alone (a stream with nothing new costs one request a round), and
   * when it is there the DIRECT_READ_BATCH after it at once, handled in order up to the first missing.
   */
  async function round(): Promise<number> {
    if (!take(await get(position.next))) return 0
    const from = position.next
    const got = await Promise.all(Array.from({ length: DIRECT_READ_BATCH }, (_, i) => get(from + i)))
    let handled = 1
    for (const message of got) {
      if (!take(message)) break
      handled++
    }
    return handled
  }

  /** One reading at a time: another asked for meanwhile waits its time out instead. */
  let reading = false

  return {
    async readFor(ms) {
      if (reading) {
        await new Promise((resolve) => setTimeout(resolve, ms))
        return 0
      }
      reading = true
      try {
        return await readUntil(Date.now() + ms)
      } finally {
        reading = false
      }
    },
    busy: () => reading,
  }

  async function readUntil(until: number): Promise<number> {
    let handled = 0
    while (!position.closed && Date.now() < until) {
      const read = await round()
      handled += read
      if (read <= DIRECT_READ_BATCH)
        await new Promise((resolve) => setTimeout(resolve, Math.min(DIRECT_POLL_MS, until - Date.now())))
    }
    return handled
  }
}

function managerOf(js: JetStreamClient): Promise<JetStreamManager> {
  return js.jetstreamManager(false)
}
