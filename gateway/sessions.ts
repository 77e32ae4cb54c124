/**
 * The gateway's open sockets and what they share: each session, each user's count of connections,
 * and each user's token bucket. One table per gateway, handed to admission, sending and frame
 * handling; nothing lives in a module global, so two gateways in one process (the tests start
 * several) never count each other's users. A user's bucket outlives their sockets until it has
 * refilled (bucket-table.ts): closing a socket and opening another renews nothing.
 */

import type { WebSocket } from 'ws'
import type { Principal } from './auth.ts'
import { type BucketTable, createBucketTable } from './bucket-table.ts'
import type { GameFeed } from './game-view.ts'
import type { GatewayLimits } from './limits.ts'
import type { TokenBucket } from './rate-limit.ts'

export interface Subscription {
  readonly feed: GameFeed
  stop: () => void
  /** Its deltas are being skipped until the socket drains; a snapshot follows then. */
  lagging: boolean
}

export interface Session {
  readonly socket: WebSocket
  readonly principal: Principal
  readonly subscriptions: Map<string, Subscription>
  readonly bucket: TokenBucket
  laggingSinceMs: number | null
  refusedInRow: number
  closing: boolean
}

export interface SessionTable {
  /** Every open session, in the order they opened. */
  readonly all: ReadonlySet<Session>
  connectionsOf(userId: string): number
  add(session: Session): void
  remove(session: Session): void
  /** The buckets all of a user's connections draw on, by user id; kept after they close. */
  readonly userFrames: Pick<BucketTable, 'take'>
}

type BucketLimits = Pick<GatewayLimits, 'userMessagesPerSecond' | 'userMessagesBurst' | 'userBucketsMax'>

export function createSessionTable(limits: BucketLimits): SessionTable {
  const all = new Set<Session>()
  const perUser = new Map<string, number>()
  return {
    all,
    userFrames: createBucketTable({
      perSecond: limits.userMessagesPerSecond,
      burst: limits.userMessagesBurst,
      entriesMax: limits.userBucketsMax,
    }),
    connectionsOf: (userId) => perUser.get(userId) ?? 0,
    add(session) {
      const { userId } = session.principal
      all.add(session)
      perUser.set(userId, (perUser.get(userId) ?? 0) + 1)
    },
    remove(session) {
      const { userId } = session.principal
      all.delete(session)
      const left = (perUser.get(userId) ?? 1) - 1
      if (left === 0) perUser.delete(userId)
      else perUser.set(userId, left)
    },
  }
}
