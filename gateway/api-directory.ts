/**
 * The API nodes a gateway knows of, from their announcements on `bets.nodes` (protocol/api-nodes.ts),
 * by the queue subject of the placements they serve; which of them lately let a placement wait past
 * the hedge delay (suspects, tried last); and the hedge delay itself, twice the p99 of recent
 * answers, within a floor and the configured most (`--hedge-after-ms`; nodes/fabric/hedge-delay.ts).
 *
 * A placement goes to a node of the user's shard picked here in turn, and if that node has not
 * answered within the hedge delay, the same bet (same id: the ledger stores it once, and the
 * second node answers with the first's verdict) goes to another (bet-placement.ts). A paused, dead
 * or cut-off node stops announcing and drops out after ANNOUNCED_FOR_MS; until then it costs each
 * placement sent to it one hedge delay, and as a suspect it is sent nothing while another is known.
 */

import type { NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { createHedgeDelay } from '../nodes/fabric/hedge-delay.ts'
import { ANNOUNCED_FOR_MS, parseAnnouncement } from '../protocol/api-nodes.ts'
import { API_NODES_SUBJECT, directSubject } from '../protocol/subjects.ts'

/** API nodes a gateway keeps at once; announcements of more are ignored until some drop out. */
export const DIRECTORY_NODES_MAX = 1_000
/** How long a node that missed a hedge delay is tried last, unless it answers meanwhile. */
export const SUSPECT_MS = 5_000

export interface ApiNodeRef {
  readonly node: string
  readonly direct: string
  /** Where a placement for it goes: its own subject. */
  readonly subject: string
}

interface Known {
  readonly node: string
  readonly subjects: readonly string[]
  seenAtMs: number
}

export interface ApiDirectory {
  /** A known node serving `queue` not in `avoid`, in turn, suspects last; null when there is none. */
  pick(queue: string, avoid: ReadonlySet<string>): ApiNodeRef | null
  /** The node missed a hedge delay. */
  suspect(direct: string): void
  /** The node answered: it is no suspect. */
  answered(direct: string, latencyMs: number): void
  /** How long a placement waits for its node before it is hedged. */
  hedgeAfterMs(): number
  /** Nodes known and not stale. */
  size(): number
  close(): void
}

export interface ApiDirectoryOptions {
  readonly hedgeAfterMsMax: number
  readonly now?: () => number
  readonly log: Logger
}

/** A directory fed by `announce` (tests call it; `watchApiNodes` subscribes it to the announcements). */
export function createApiDirectory(options: ApiDirectoryOptions): ApiDirectory & {
  announce(value: unknown): void
} {
  const now = options.now ?? Date.now
  const known = new Map<string, Known>()
  const suspects = new Map<string, number>()
  const turns = new Map<string, number>()
  const hedge = createHedgeDelay(options.hedgeAfterMsMax)
  const fresh = (entry: Known) => now() - entry.seenAtMs <= ANNOUNCED_FOR_MS

  function prune(): void {
    for (const [direct, entry] of known) if (!fresh(entry)) known.delete(direct)
    for (const [direct, until] of suspects) if (until <= now()) suspects.delete(direct)
  }

  return {
    announce(value) {
      const announcement = parseAnnouncement(value)
      if (announcement === null) return
      const entry = known.get(announcement.direct)
      if (entry !== undefined) {
        entry.seenAtMs = now()
        return
      }
      if (known.size >= DIRECTORY_NODES_MAX) prune()
      if (known.size >= DIRECTORY_NODES_MAX) return
      known.set(announcement.direct, {
        node: announcement.node,
        subjects: announcement.subjects,
        seenAtMs: now(),
      })
    },
    pick(queue, avoid) {
      const candidates: [string, Known][] = []
      for (const [direct, entry] of known)
        if (!avoid.has(direct) && fresh(entry) && entry.subjects.includes(queue))
          candidates.push([direct, entry])
      if (candidates.length === 0) return null
      const trusted = candidates.filter(([direct]) => (suspects.get(direct) ?? 0) <= now())
      const pool = trusted.length > 0 ? trusted : candidates
      const turn = turns.get(queue) ?? 0
      turns.set(queue, turn + 1)
      if (turns.size > DIRECTORY_NODES_MAX) turns.clear()
      const [direct, entry] = pool[turn % pool.length] as [string, Known]
      return { node: entry.node, direct, subject: directSubject(direct) }
    },
    suspect(direct) {
      suspects.set(direct, now() + SUSPECT_MS)
      if (suspects.size > DIRECTORY_NODES_MAX) prune()
    },
    answered(direct, latencyMs) {
      suspects.delete(direct)
      hedge.observe(latencyMs)
    },
    hedgeAfterMs: () => hedge.delayMs(),
    size() {
      prune()
      return known.size
    },
    close() {
      known.clear()
    },
  }
}

/** A directory kept current from the announcements on `nc`. */
export function watchApiNodes(nc: NatsConnection, options: ApiDirectoryOptions): ApiDirectory {
  const directory = createApiDirectory(options)
  const subscription = nc.subscribe(API_NODES_SUBJECT, {
    callback: (error, message) => {
      if (error !== null) return options.log.warn({ err: error }, 'API node announcements failed')
      try {
        directory.announce(message.json())
      } catch {
        // Not JSON: not an announcement.
      }
    },
  })
  return {
    ...directory,
    close() {
      subscription.unsubscribe()
      directory.close()
    },
  }
}
