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
import { type NatsConnection, headers as natsHeaders } from '@nats-io/transport-node'
import type { Logger } from 'pino'
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
}

export interface SnapshotStore {
  get(key: string): Promise<Uint8Array | null>
  put(key: string, value: Uint8Array | string): Promise<void>
}

export interface FabricTransport {
  append(subject: string, data: Uint8Array | string, options: AppendOptions): Promise<Appended>
  follow(request: FollowRequest): Promise<StreamFollower>
  publish(subject: string, data: Uint8Array | string): void
  /** Receive core messages on a subject (NATS wildcards); returns the way to stop. */
  subscribe(subject: string, onMessage: (subject: string, data: Uint8Array) => void): () => void
  readonly snapshots: SnapshotStore
}

/** The transport over a NATS connection and the region's snapshot bucket. */
export function natsTransport(nc: NatsConnection, snapshots: KV): FabricTransport {
  const js = jetstream(nc)
  return {
    async append(subject, data, options) {
      let headers: ReturnType<typeof natsHeaders> | undefined
      for (const [name, value] of Object.entries(options.headers ?? {})) {
        headers ??= natsHeaders()
        headers.set(name, value)
      }
      const ack = await js.publish(subject, data, {
        msgID: options.msgId,
        ...(headers ? { headers } : {}),
        ...(options.timeoutMs ? { timeout: options.timeoutMs } : {}),
      })
      return { seq: ack.seq, duplicate: ack.duplicate }
    },
    follow: (request) => followStream({ js, ...request }),
    publish: (subject, data) => nc.publish(subject, data),
    subscribe(subject, onMessage) {
      const subscription = nc.subscribe(subject, {
        callback: (error, message) => {
          if (!error) onMessage(message.subject, message.data)
        },
      })
      return () => subscription.unsubscribe()
    },
    snapshots: {
      get: async (key) => (await snapshots.get(key))?.value ?? null,
      async put(key, value) {
        await snapshots.put(key, value)
      },
    },
  }
}
