/**
 * API nodes announce themselves, so that a gateway can send a placement to a node it chooses and,
 * when that node does not answer in time, the same bet (same id: stored once) to another. Every
 * `ANNOUNCE_MS` a ready API node publishes on `bets.nodes` its id, its own placement subject
 * (`bets.direct.<id>`) and the queue subjects of placements it serves (`bets.place[.<region>].<shard>`).
 * A node not heard for `ANNOUNCED_FOR_MS` is forgotten: a paused, dead or cut-off node drops out.
 */

import { isNodeId } from '../crdt/index.ts'
import { SHARDS_MAX } from './shards.ts'

export const ANNOUNCE_MS = 500
export const ANNOUNCED_FOR_MS = 3 * ANNOUNCE_MS
/** A direct subject's id: 32 hex digits. */
const DIRECT_ID_PATTERN = /^[0-9a-f]{32}$/
/** A queue subject of placements: letters, digits, `_`, `-` and dots, not too long. */
const QUEUE_SUBJECT_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/

export interface ApiNodeAnnouncement {
  readonly node: string
  /** The id of the node's own placement subject (protocol/subjects.ts, `directSubject`). */
  readonly direct: string
  /** The queue subjects of the placements it serves. */
  readonly subjects: readonly string[]
}

export const newDirectId = () => crypto.randomUUID().replaceAll('-', '')

/** An announcement as received, validated; null for anything else. */
export function parseAnnouncement(value: unknown): ApiNodeAnnouncement | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null
  const { node, direct, subjects } = value as Record<string, unknown>
  if (!isNodeId(node) || typeof direct !== 'string' || !DIRECT_ID_PATTERN.test(direct)) return null
  if (!Array.isArray(subjects) || subjects.length < 1 || subjects.length > SHARDS_MAX) return null
  if (!subjects.every((subject) => typeof subject === 'string' && QUEUE_SUBJECT_PATTERN.test(subject)))
    return null
  return { node, direct, subjects: subjects as string[] }
}
