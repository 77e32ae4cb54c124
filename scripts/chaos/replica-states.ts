/**
 * What each nats-server holds of each stream it hosts (its monitoring endpoint, `/jsz`), compared
 * across the servers: the servers' own account of whether a stream's replicas hold the same log.
 * After a partition, nats-server 2.9.10 was seen to leave two replicas of a stream with different
 * messages under the same sequences for good; a chaos run reads this once the stack is quiet, so
 * that a broken invariant can be told apart: the nodes' fault, or a log that is no longer one log.
 */

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
