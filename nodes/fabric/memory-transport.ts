/**
 * The transport contract (transport.ts) in memory: streams, core messages and a snapshot store
 * shared by any number of nodes in one process. It passes the same conformance suite as NATS
 * (test/nodes/fabric/transport-contract.ts), and it is what the deterministic simulator runs the
 * real replica sync, ledger, bet service, settler and trader over.
 *
 * Every delivery (an append's acknowledgement, a stream message to a follower, a core message to
 * a subscriber) goes through `schedule`, which the simulator owns: it decides when each runs, in
 * simulated time, and so the order of everything. `reachable` cuts a node off: its appends are
 * refused, its followers stall until it is reachable again (they resume where they were, as an
 * ordered consumer would), and core messages to or from it are lost. Streams keep every message
 * a purge has not removed, and deduplicate message ids for the whole run (JetStream keeps a window; a longer one hides
 * nothing the contract promises).
 */

import { DEFAULT_SHARDS } from '../../protocol/shards.ts'
import type { StreamFollower, StreamMessage } from './stream-follower.ts'
import { DEFAULT_STREAM_LIMITS, fabricStream, ledgerStreams } from './streams.ts'
import type { Appended, AppendOptions, FabricTransport, FollowRequest } from './transport.ts'

/** What a delivery is, for a scheduler that treats them differently. */
export type DeliveryKind = 'ack' | 'stream' | 'core'

export interface MemoryFabricOptions {
  /** Streams by name, each with the subjects it stores (NATS wildcards). */
  readonly streams: Readonly<Record<string, readonly string[]>>
  /** Run `deliver` later; default: on the next macrotask. */
  readonly schedule?: (deliver: () => void, kind: DeliveryKind, node: string) => void
  /** Whether a node reaches the streams and the other nodes now; default: always. */
  readonly reachable?: (node: string) => boolean
  /** The clock of followers' idle times; default Date.now. */
  readonly now?: () => number
}

export interface StoredMessage {
  readonly subject: string
  readonly seq: number
  readonly data: Uint8Array
  readonly headers: Readonly<Record<string, string>>
  readonly msgId: string
}

export interface MemoryFabric {
  /** The transport of one node. */
  transport(node: string): FabricTransport
  /** What a stream holds, in order. */
  messages(stream: string): readonly StoredMessage[]
}

/** A region's streams and their subjects, as nats-server is configured with them (streams.ts). */
export function regionStreams(region: string, shards = DEFAULT_SHARDS): Record<string, readonly string[]> {
  const streams: Record<string, readonly string[]> = {}
  const limits = { ...DEFAULT_STREAM_LIMITS, ledgerShards: shards }
  for (const config of [fabricStream(region, limits), ...ledgerStreams(region, limits)])
    streams[config.name] = config.subjects ?? []
  return streams
}

/** A NATS subject pattern test: `*` matches one token, `>` the rest. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const want = pattern.split('.')
  const have = subject.split('.')
  for (let i = 0; i < want.length; i++) {
    if (want[i] === '>') return have.length > i
    if (i >= have.length || (want[i] !== '*' && want[i] !== have[i])) return false
  }
  return want.length === have.length
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()
const bytes = (data: Uint8Array | string) => (typeof data === 'string' ? encoder.encode(data) : data)

function readable(stored: StoredMessage): StreamMessage {
  return {
    subject: stored.subject,
    seq: stored.seq,
    data: stored.data,
    headers: { get: (name) => stored.headers[name] ?? '' },
    json: <T>() => JSON.parse(decoder.decode(stored.data)) as T,
    string: () => decoder.decode(stored.data),
  }
}

interface Stream {
  readonly subjects: readonly string[]
  readonly messages: StoredMessage[]
  readonly ids: Map<string, number>
  readonly followers: Set<() => void>
  /** Sequences a purge removed: their places stay, so every other message keeps its sequence. */
  readonly purged: Set<number>
}

interface Subscriber {
  readonly node: string
  readonly subject: string
  readonly onMessage: (subject: string, data: Uint8Array) => void
}

/** What every node's transport shares: the streams, the subscribers, the store and the world. */
interface Shared {
  readonly streams: Map<string, Stream>
  readonly subscribers: Set<Subscriber>
  readonly store: Map<string, Uint8Array>
  /** Each key's revision: the store's write count when it was last written, as a bucket's sequence. */
  readonly revisions: Map<string, number>
  readonly writes: { count: number }
  readonly schedule: NonNullable<MemoryFabricOptions['schedule']>
  readonly reachable: (node: string) => boolean
  readonly now: () => number
}

function streamFor(shared: Shared, subject: string): Stream | undefined {
  for (const stream of shared.streams.values())
    if (stream.subjects.some((pattern) => subjectMatches(pattern, subject))) return stream
  return undefined
}

/** Deliver a stream's messages to one node in order, one scheduled delivery at a time. */
function followMemoryStream(shared: Shared, node: string, request: FollowRequest): StreamFollower {
  const { schedule, reachable, now } = shared
  const stream = shared.streams.get(request.stream)
  if (stream === undefined) throw new Error(`no stream ${request.stream}`)
  const caughtUpAt = stream.messages.length
  let next = Math.max(1, request.startSeq)
  let lastSeq = next - 1
  let scheduled = false
  let closed = false
  let lastAtMs = now()
  const deliver = () => {
    scheduled = false
    if (closed) return
    // An ordered consumer resumes from here once the node is reachable again: try later.
    if (reachable(node)) {
      const stored = stream.messages[next - 1] as StoredMessage
      next++
      // A purged message is passed over, as a consumer passes over removed sequences.
      if (!stream.purged.has(stored.seq)) {
        lastSeq = stored.seq
        lastAtMs = now()
        request.onMessage(readable(stored))
      }
    }
    pump()
  }
  const pump = () => {
    if (scheduled || closed || next > stream.messages.length) return
    scheduled = true
    schedule(deliver, 'stream', node)
  }
  stream.followers.add(pump)
  pump()
  return {
    lastSeq: () => lastSeq,
    caughtUp: () => lastSeq >= caughtUpAt,
    restarts: () => 0,
    holes: () => 0,
    phase: () => (closed ? 'closed' : 'consuming'),
    idleMs: () => now() - lastAtMs,
    diverged: () => null,
    auditing: () => false,
    // Its delivery never stops by itself: it resumes as soon as the node is reachable again.
    nudge: () => pump(),
    async close() {
      closed = true
      stream.followers.delete(pump)
    },
  }
}

/** Store a message once per message id and acknowledge it, as JetStream does. */
function appendToMemoryStream(
  shared: Shared,
  node: string,
  subject: string,
  data: Uint8Array | string,
  options: AppendOptions,
): Promise<Appended> {
  const { schedule } = shared
  return new Promise<Appended>((resolve, reject) => {
    const stream = streamFor(shared, subject)
    if (stream === undefined) {
      schedule(() => reject(new Error(`no stream holds ${subject}`)), 'ack', node)
      return
    }
    if (!shared.reachable(node)) {
      schedule(() => reject(new Error(`${node} cannot reach the stream`)), 'ack', node)
      return
    }
    const known = stream.ids.get(options.msgId)
    if (known !== undefined) {
      schedule(() => resolve({ seq: known, duplicate: true }), 'ack', node)
      return
    }
    const seq = stream.messages.length + 1
    stream.messages.push({
      subject,
      seq,
      data: bytes(data),
      headers: { ...options.headers },
      msgId: options.msgId,
    })
    stream.ids.set(options.msgId, seq)
    for (const pump of stream.followers) pump()
    schedule(() => resolve({ seq, duplicate: false }), 'ack', node)
  })
}

/** Core messages: to every subscriber of a matching subject, at most once, lost to a cut-off node. */
function publishToMemory(shared: Shared, node: string, subject: string, data: Uint8Array | string): void {
  if (!shared.reachable(node)) return
  const payload = bytes(data)
  for (const subscriber of shared.subscribers) {
    if (!subjectMatches(subscriber.subject, subject)) continue
    const deliver = () => {
      if (shared.reachable(subscriber.node) && shared.subscribers.has(subscriber))
        subscriber.onMessage(subject, payload)
    }
    shared.schedule(deliver, 'core', subscriber.node)
  }
}

export function createMemoryFabric(options: MemoryFabricOptions): MemoryFabric {
  const shared: Shared = {
    streams: new Map(
      Object.entries(options.streams).map(([name, subjects]) => [
        name,
        { subjects, messages: [], ids: new Map(), followers: new Set(), purged: new Set() },
      ]),
    ),
    subscribers: new Set(),
    store: new Map(),
    revisions: new Map(),
    writes: { count: 0 },
    schedule: options.schedule ?? ((deliver) => setImmediate(deliver)),
    reachable: options.reachable ?? (() => true),
    now: options.now ?? Date.now,
  }
  /** Every write of a key raises its revision; a value's revision is the one it was written at. */
  const storeRevision = (key: string): number => {
    shared.writes.count++
    shared.revisions.set(key, shared.writes.count)
    return shared.writes.count
  }
  const storeValue = (key: string, value: Uint8Array | string): number => {
    shared.store.set(key, bytes(value))
    return storeRevision(key)
  }
  /** Remove a stream's messages on a subject below a sequence, as JetStream's filtered purge does. */
  const purge = async (name: string, subject: string, belowSeq: number): Promise<number> => {
    const stream = shared.streams.get(name)
    if (stream === undefined) throw new Error(`no stream ${name}`)
    let purged = 0
    for (const message of stream.messages.slice(0, Math.max(0, belowSeq - 1)))
      if (subjectMatches(subject, message.subject) && !stream.purged.has(message.seq)) {
        stream.purged.add(message.seq)
        purged++
      }
    return purged
  }
  const transport = (node: string): FabricTransport => ({
    append: (subject, data, appendOptions) =>
      appendToMemoryStream(shared, node, subject, data, appendOptions),
    follow: async (request) => followMemoryStream(shared, node, request),
    publish: (subject, data) => publishToMemory(shared, node, subject, data),
    purge,
    async messageAt(name, seq) {
      if (!shared.reachable(node)) throw new Error(`${node} cannot reach the streams`)
      const stream = shared.streams.get(name)
      if (stream === undefined) throw new Error(`no stream ${name}`)
      const message = stream.messages[seq - 1]
      return message === undefined || stream.purged.has(seq) ? null : message.data
    },
    subscribe(subject, onMessage) {
      const subscriber: Subscriber = { node, subject, onMessage }
      shared.subscribers.add(subscriber)
      return () => shared.subscribers.delete(subscriber)
    },
    snapshots: {
      get: async (key) => shared.store.get(key) ?? null,
      async put(key, value) {
        storeValue(key, value)
      },
      async create(key, value) {
        if (shared.store.has(key)) return false
        storeValue(key, value)
        return true
      },
      async delete(key) {
        shared.store.delete(key)
        storeRevision(key)
      },
      async entry(key) {
        const value = shared.store.get(key)
        return value === undefined ? null : { value, revision: shared.revisions.get(key) ?? 0 }
      },
      async update(key, value, revision) {
        const now = shared.store.has(key) ? (shared.revisions.get(key) ?? 0) : 0
        if (now !== revision) return null
        return storeValue(key, value)
      },
    },
  })
  return {
    transport,
    messages(name) {
      const stream = shared.streams.get(name)
      return stream?.messages.filter((message) => !stream.purged.has(message.seq)) ?? []
    },
  }
}
