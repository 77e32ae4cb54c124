/**
 * What replica sync and the ledger need from the network, as a contract with two implementations:
 * NATS JetStream (below) for the product, and memory (memory-transport.ts) for the deterministic
 * simulator and fast tests. One conformance suite runs against both
 * (test/nodes/fabric/transport-contract.ts), so code above this line cannot tell them apart.
 *
 * - Streams: `append` stores a message on the stream whose subjects cover its subject, once per
 *   message id (a repeat within the duplicate window is answered with the original sequence and
 *   `duplicate: true`); `follow` delivers a stream's messages in sequence order from a sequence on.
 * - Core messages (heartbeats, statuses): `publish` and `subscribe`, at most once, no order across
 *   publishers.
 * - The snapshot store: a key-value bucket, last write wins.
 */

import { jetstream } from '@nats-io/jetstream'
import type { KV } from '@nats-io/kv'
import type { NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { createHedgeDelay, type HedgeDelay } from './hedge-delay.ts'
import { createStallDetector } from './stall-detector.ts'
import { createStreamAcks, type StreamAcks } from './stream-acks.ts'
import { streamApiOf } from './stream-check.ts'
import { followStream, type StreamFollower, type StreamMessage } from './stream-follower.ts'

export type { StreamFollower, StreamMessage }

export interface AppendOptions {
  /** The deduplication id (`Nats-Msg-Id`). */
  readonly msgId: string
  readonly headers?: Readonly<Record<string, string>>
  /** How long to wait for the stream's acknowledgement before failing. */
  readonly timeoutMs?: number
}

export interface Appended {
  readonly seq: number
  /** The message id was stored before: `seq` is the original message's. */
  readonly duplicate: boolean
}

export interface FollowRequest {
  readonly stream: string
  /** Must cover every subject the stream holds (stream-follower.ts). */
  readonly filterSubject?: string
  readonly startSeq: number
  readonly log: Logger
  /** Called for each message in stream order; it must not throw. */
  readonly onMessage: (message: StreamMessage) => void
  /** The highest sequence the stream acknowledged one of this node's appends at (stream-check.ts). */
  readonly acknowledgedThrough?: () => number
}

export interface SnapshotStore {
  /** The value under the key; null when there is none (never written, or deleted). */
  get(key: string): Promise<Uint8Array | null>
  put(key: string, value: Uint8Array | string): Promise<void>
  /** Put the value only if the key holds none; resolves with whether it did. */
  create(key: string, value: Uint8Array): Promise<boolean>
  delete(key: string): Promise<void>
  /** The value under the key and its revision (which every write of it raises); null when none. */
  entry(key: string): Promise<{ readonly value: Uint8Array; readonly revision: number } | null>
  /**
   * Put the value only if the key is still at `revision` (0: holds none); resolves with the new
   * revision, or null when another write came first. A write that arrives late fails this way
   * instead of replacing a newer value.
   */
  update(key: string, value: Uint8Array | string, revision: number): Promise<number | null>
}

export interface FabricTransport {
  append(subject: string, data: Uint8Array | string, options: AppendOptions): Promise<Appended>
  follow(request: FollowRequest): Promise<StreamFollower>
  /**
   * Publish a core message. `everyConnection`: through the hedge's second connection too, so that
   * it arrives while the first one's server is cut off (a writer's beat: a repeated beat changes
   * nothing, writer-beats.ts); receivers may then get it twice.
   */
  publish(subject: string, data: Uint8Array | string, options?: { readonly everyConnection?: boolean }): void
  /** Receive core messages on a subject (NATS wildcards); returns the way to stop. */
  subscribe(subject: string, onMessage: (subject: string, data: Uint8Array) => void): () => void
  /**
   * Remove the stream's messages on `subject` below sequence `belowSeq` (an archived game's,
   * archive.ts); resolves with how many went. Repeating it removes nothing more. A follower reading
   * past removed sequences passes over them (stream-reading.ts), and no other message moves.
   */
  purge(stream: string, subject: string, belowSeq: number): Promise<number>
  /**
   * The data of the stream's message at `seq`, as the stream's leader holds it; null when there is
   * none there (never written, or purged). Throws when the stream cannot be asked.
   */
  messageAt(stream: string, seq: number): Promise<Uint8Array | null>
  readonly snapshots: SnapshotStore
}

/**
 * Hedged appends: an append not acknowledged within the hedge delay (hedge-delay.ts, at most
 * `maxMs`), or failed before it, is sent again, same message id, through a second connection to
 * another server of the region; the first acknowledgement is the append's. The stream stores a
 * message id once within its duplicate window and answers a repeat with the original sequence, so
 * a hedge never stores twice. One nats.js connection talks to one server at a time: a server cut
 * off from the others, or paused, stalls every append through it until the connection moves.
 */
export interface AppendHedge {
  readonly nc: NatsConnection
  readonly maxMs: number
  /**
   * The first connection's server has acknowledged nothing for STALL_SILENT_MS while the second
   * connection's acknowledges (stall-detector.ts): that server, not the stream, is the trouble, so
   * the node moves off it at once (at most once per STALL_MOVE_MIN_MS) rather than wait for its
   * quorum check.
   */
  readonly onStalled?: () => void
}

export interface HedgeStats {
  /** Appends sent through the second connection too, and those it acknowledged first. */
  readonly hedged: number
  readonly answered: number
  /** Times the first connection was found stalled (AppendHedge.onStalled). */
  readonly stalls: number
}

/** The transport over a NATS connection and the region's snapshot bucket. */
export function natsTransport(
  nc: NatsConnection,
  snapshots: KV,
  hedge?: AppendHedge,
): FabricTransport & { hedgeStats(): HedgeStats } {
  const js = jetstream(nc)
  const first = createStreamAcks(nc)
  const second = hedge ? createStreamAcks(hedge.nc) : null
  const delay = createHedgeDelay(hedge?.maxMs ?? 0)
  const stats = { hedged: 0, answered: 0, stalls: 0 }
  const streamApi = streamApiOf(js)
  const stall = createStallDetector()
  const throughFirst = <Ack>(sending: Promise<Ack>): Promise<Ack> => {
    stall.sentThroughFirst()
    // Its acknowledgement tells the server is alive even when the hedge answered first.
    sending.then(
      () => stall.answeredThroughFirst(),
      () => {},
    )
    return sending
  }
  const answeredBy = (isHedge: boolean) => {
    if (!isHedge || !stall.answeredThroughSecond()) return
    stats.stalls++
    hedge?.onStalled?.()
  }
  return {
    async append(subject, data, options) {
      const publish = (through: StreamAcks) =>
        through.append(subject, data, {
          msgId: options.msgId,
          ...(options.headers ? { headers: options.headers } : {}),
          ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}),
        })
      if (second === null) {
        const ack = await publish(first)
        return { seq: ack.seq, duplicate: ack.duplicate }
      }
      const ack = await hedged(
        (through) => (through === first ? throughFirst(publish(through)) : publish(through)),
        first,
        second,
        delay,
        stats,
        answeredBy,
      )
      return { seq: ack.seq, duplicate: ack.duplicate }
    },
    hedgeStats: () => ({ ...stats }),
    follow: (request) => followStream({ js, ...request }),
    publish(subject, data, options) {
      nc.publish(subject, data)
      if (options?.everyConnection) hedge?.nc.publish(subject, data)
    },
    async purge(stream, subject, belowSeq) {
      return (await (await streamApi()).purge(stream, { filter: subject, seq: belowSeq })).purged
    },
    async messageAt(stream, seq) {
      const message = await (await streamApi()).getMessage(stream, { seq })
      return message === null ? null : message.data
    },
    subscribe(subject, onMessage) {
      const subscription = nc.subscribe(subject, {
        callback: (error, message) => {
          if (!error) onMessage(message.subject, message.data)
        },
      })
      return () => subscription.unsubscribe()
    },
    snapshots: {
      async get(key) {
        const entry = await snapshots.get(key)
        return entry === null || entry.operation !== 'PUT' ? null : entry.value
      },
      async put(key, value) {
        await snapshots.put(key, value)
      },
      async create(key, value) {
        try {
          await snapshots.create(key, value)
          return true
        } catch (error) {
          // The bucket refuses a create on a key that holds a value ("wrong last sequence").
          if ((await snapshots.get(key))?.operation === 'PUT') return false
          throw error
        }
      },
      async delete(key) {
        await snapshots.delete(key)
      },
      async entry(key) {
        const entry = await snapshots.get(key)
        return entry === null || entry.operation !== 'PUT'
          ? null
          : { value: entry.value, revision: entry.revision }
      },
      async update(key, value, revision) {
        try {
          return revision === 0
            ? await snapshots.create(key, value)
            : await snapshots.update(key, value, revision)
        } catch (error) {
          // The bucket refuses a write whose expected revision is not the key's ("wrong last sequence").
          const now = await snapshots.get(key)
          if ((now?.revision ?? 0) !== revision) return null
          throw error
        }
      },
    },
  }
}

/** The first acknowledgement of the append through `first`, or, past the hedge delay, `second`. */
function hedged<Ack>(
  publish: (through: StreamAcks) => Promise<Ack>,
  first: StreamAcks,
  second: StreamAcks,
  delay: HedgeDelay,
  stats: { hedged: number; answered: number },
  answeredBy: (isHedge: boolean) => void,
): Promise<Ack> {
  return new Promise((resolve, reject) => {
    const sentAtMs = Date.now()
    let settled = false
    let out = 1
    let lastError: unknown = null
    const send = (through: StreamAcks, isHedge: boolean) =>
      publish(through).then(
        (ack) => {
          if (settled) return
          settled = true
          clearTimeout(timer)
          if (isHedge) stats.answered++
          else delay.observe(Date.now() - sentAtMs)
          answeredBy(isHedge)
          resolve(ack)
        },
        (error: unknown) => {
          lastError = error
          out--
          if (!isHedge && !hedging) sendHedge()
          else if (out === 0 && !settled) {
            settled = true
            reject(lastError)
          }
        },
      )
    let hedging = false
    const sendHedge = () => {
      if (hedging || settled) return
      hedging = true
      clearTimeout(timer)
      stats.hedged++
      out++
      void send(second, true)
    }
    const timer = setTimeout(sendHedge, delay.delayMs())
    void send(first, false)
  })
}
