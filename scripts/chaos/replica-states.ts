/**
 * What each nats-server holds of each stream it hosts (its monitoring endpoint, `/jsz`), compared
 * across the servers: the servers' own account of whether a stream's replicas hold the same log.
 * After a partition, nats-server 2.9.10 was seen to leave two replicas of a stream with different
 * messages under the same sequences for good; a chaos run reads this once the stack is quiet, so
 * that a broken invariant can be told apart: the nodes' fault, or a log that is no longer one log.
 */

import { createHash } from 'node:crypto'
import { type JetStreamManager, jetstreamManager } from '@nats-io/jetstream'
import { connect, type NatsConnection } from '@nats-io/transport-node'

/** One server's copy of one stream. */
export interface ReplicaState {
  readonly server: string
  readonly messages: number
  readonly bytes: number
  readonly firstSeq: number
  readonly lastSeq: number
  /** When the last message was stored (the leader's time, which every replica copies). */
  readonly lastTs: string
}

export interface MonitoredServer {
  readonly name: string
  readonly monitorUrl: string
}

const JSZ_TIMEOUT_MS = 2_000
/** How long the replicas get to agree (a lagging one catching up) before a difference counts. */
export const REPLICAS_SETTLE_MS = 2_000
const REPLICAS_POLL_MS = 250

interface JszStream {
  readonly name: string
  readonly state?: {
    readonly messages?: number
    readonly bytes?: number
    readonly first_seq?: number
    readonly last_seq?: number
    readonly last_ts?: string
  }
}

/** Each stream's replicas, by stream name, as the servers answering now hold them. */
export async function replicaStates(
  servers: readonly MonitoredServer[],
): Promise<Map<string, ReplicaState[]>> {
  const byStream = new Map<string, ReplicaState[]>()
  await Promise.all(
    servers.map(async (server) => {
      const response = await fetch(`${server.monitorUrl}/jsz?accounts=true&streams=true`, {
        signal: AbortSignal.timeout(JSZ_TIMEOUT_MS),
      }).catch(() => null)
      if (!response?.ok) return
      const body = (await response.json().catch(() => null)) as {
        account_details?: { stream_detail?: JszStream[] }[]
      } | null
      for (const account of body?.account_details ?? [])
        for (const stream of account.stream_detail ?? []) {
          const state = stream.state ?? {}
          const replicas = byStream.get(stream.name) ?? []
          replicas.push({
            server: server.name,
            messages: state.messages ?? 0,
            bytes: state.bytes ?? 0,
            firstSeq: state.first_seq ?? 0,
            lastSeq: state.last_seq ?? 0,
            lastTs: state.last_ts ?? '',
          })
          byStream.set(stream.name, replicas)
        }
    }),
  )
  return byStream
}

/** The streams whose replicas do not hold the same log, one line each; empty when all agree. Pure. */
export function disagreements(states: ReadonlyMap<string, readonly ReplicaState[]>): string[] {
  const lines: string[] = []
  for (const [stream, replicas] of [...states].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const shapes = new Set(
      replicas.map((r) => `${r.messages}/${r.bytes}/${r.firstSeq}/${r.lastSeq}/${r.lastTs}`),
    )
    if (shapes.size <= 1) continue
    const each = [...replicas]
      .sort((a, b) => (a.server < b.server ? -1 : 1))
      .map(
        (r) =>
          `${r.server} ${r.messages} msgs ${r.bytes} B seq ${r.firstSeq}-${r.lastSeq} last at ${r.lastTs}`,
      )
    lines.push(`${stream}: ${each.join('; ')}`)
  }
  return lines
}

/**
 * The disagreements that last: the replicas are read every REPLICAS_POLL_MS until they agree or
 * `settleMs` has passed (a replica behind catches up meanwhile); what still differs then.
 */
export async function lastingDisagreements(
  servers: readonly MonitoredServer[],
  settleMs: number = REPLICAS_SETTLE_MS,
): Promise<string[]> {
  const deadline = Date.now() + settleMs
  for (;;) {
    const found = disagreements(await replicaStates(servers))
    if (found.length === 0 || Date.now() >= deadline) return found
    await new Promise((resolve) => setTimeout(resolve, REPLICAS_POLL_MS))
  }
}

/** A server that clients can reach too, to read its streams' messages. */
export interface ReadableServer extends MonitoredServer {
  readonly url: string
}

/**
 * Reads of each sequence. A server hands a direct get to any replica of the stream, at random (its
 * members of the stream's direct-get queue group, wherever they run), so a replica holding another
 * message than the other two is missed by all these reads (2/3)^16 ≈ 0.15 % of the time.
 */
export const CONTENT_READS_PER_SEQ = 16
/** The last messages of each stream compared by content: a long run's check stays bounded. */
export const CONTENT_MESSAGES_MAX = 2_000
/** The comparison's budget: a stream not read through by then is reported unread, not as agreeing. */
export const CONTENT_CHECK_MS = 30_000
const CONTENT_READS_IN_FLIGHT = 64
const CONNECT_TIMEOUT_MS = 2_000
const READ_TIMEOUT_MS = 1_000

/** One read of a stream's message at a sequence, by whichever replica answers; null if none held it. */
export type ReadAt = (seq: number) => Promise<{ readonly subject: string; readonly data: Uint8Array } | null>

export interface ContentComparison {
  /** One line per stream whose replicas answered one sequence with different messages. */
  readonly forks: string[]
  /** Sequences some replica answered, and those the budget left unread. */
  readonly compared: number
  readonly unread: number
}

/**
 * The streams whose replicas hold different messages under one sequence though they agree in
 * shape (counts, bytes and sequences, which `disagreements` compares, can match: two bets of users
 * whose ids have the same length): each sequence every replica holds is read CONTENT_READS_PER_SEQ
 * times by direct gets, and one answered with two different messages is a fork, seen from outside
 * the nodes. Lines as `disagreements` gives them, `<stream>: ...`.
 */
export async function contentDisagreements(
  servers: readonly ReadableServer[],
  states: ReadonlyMap<string, readonly ReplicaState[]>,
  budgetMs: number = CONTENT_CHECK_MS,
): Promise<ContentComparison> {
  const deadline = Date.now() + budgetMs
  const urls = new Map(servers.map((server) => [server.name, server.url]))
  const connections = new Map<string, Promise<{ nc: NatsConnection; jsm: JetStreamManager } | null>>()
  const managerAt = async (url: string) => {
    let connection = connections.get(url)
    if (connection === undefined) {
      connection = connect({ servers: [url], ignoreClusterUpdates: true, timeout: CONNECT_TIMEOUT_MS })
        .then(async (nc) => ({
          nc,
          jsm: await jetstreamManager(nc, { checkAPI: false, timeout: READ_TIMEOUT_MS }),
        }))
        .catch(() => null)
      connections.set(url, connection)
    }
    return (await connection)?.jsm ?? null
  }
  const forks: string[] = []
  let compared = 0
  let unread = 0
  try {
    for (const [stream, replicas] of [...states].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (replicas.length < 2) continue
      const url = replicas.map((replica) => urls.get(replica.server)).find((each) => each !== undefined)
      const jsm = url === undefined ? null : await managerAt(url)
      if (jsm === null) continue
      const last = Math.min(...replicas.map((replica) => replica.lastSeq))
      const first = Math.max(last - CONTENT_MESSAGES_MAX + 1, ...replicas.map((replica) => replica.firstSeq))
      const read: ReadAt = (seq) =>
        jsm.direct
          .getMessage(stream, { seq })
          .then((message) => (message?.seq === seq ? message : null))
          .catch(() => null)
      const seqs = await differingSeqs(read, first, last, deadline)
      compared += seqs.compared
      unread += seqs.unread
      if (seqs.differing.length > 0)
        forks.push(
          `${stream}: its replicas answer ${seqs.differing.length} of sequences ${first}-${last} with different messages, the first at ${seqs.differing[0]}`,
        )
    }
  } finally {
    await Promise.all(
      [...connections.values()].map((connection) =>
        connection.then((opened) => opened?.nc.close()).catch(() => undefined),
      ),
    )
  }
  return { forks, compared, unread }
}

/**
 * The sequences from `first` to `last` that `read` answered with more than one message over
 * CONTENT_READS_PER_SEQ reads each (ascending); those not read by `deadline` are counted unread.
 */
export async function differingSeqs(
  read: ReadAt,
  first: number,
  last: number,
  deadline: number,
): Promise<{ differing: number[]; compared: number; unread: number }> {
  const differing: number[] = []
  let next = first
  let compared = 0
  let unread = 0
  const worker = async () => {
    while (next <= last) {
      const seq = next++
      if (Date.now() >= deadline) {
        unread++
        continue
      }
      const seen = new Set<string>()
      for (let time = 0; time < CONTENT_READS_PER_SEQ; time++) {
        if (Date.now() >= deadline) break
        const message = await read(seq)
        if (message !== null)
          seen.add(
            createHash('sha256').update(message.subject).update('\n').update(message.data).digest('base64'),
          )
      }
      if (Date.now() >= deadline) unread++
      else if (seen.size > 0) compared++
      if (seen.size > 1) differing.push(seq)
    }
  }
  await Promise.all(Array.from({ length: CONTENT_READS_IN_FLIGHT }, worker))
  differing.sort((a, b) => a - b)
  return { differing, compared, unread }
}
