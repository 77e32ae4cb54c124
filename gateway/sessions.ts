/**
 * The gateway's open sockets and what they share: each session, each user's count of connections,
 * and each user's token bucket. One table per gateway, handed to admission, sending and frame
 * handling; nothing lives in a module global, so two gateways in one process (the tests start
 * several) never count each other's users.
 */

import type { WebSocket } from 'ws'
import type { Principal } from './auth.ts'
import type { GameFeed } from './game-view.ts'
import type { GatewayLimits } from './limits.ts'
import { createTokenBucket, type TokenBucket } from './rate-limit.ts'

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
  /** A user's last session gone, their bucket goes too: a user who comes back starts afresh. */
  remove(session: Session): void
  /** The bucket all of a user's connections draw on, made at its first use. */
  userBucket(userId: string, atMs: number): TokenBucket
}

type BucketLimits = Pick<GatewayLimits, 'userMessagesPerSecond' | 'userMessagesBurst'>

export function createSessionTable(limits: BucketLimits): SessionTable {
  const all = new Set<Session>()
  const perUser = new Map<string, number>()
  const userBuckets = new Map<string, TokenBucket>()
  return {
    all,
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
      if (left === 0) {
        perUser.delete(userId)
        userBuckets.delete(userId)
      } else perUser.set(userId, left)
    },
    userBucket(userId, atMs) {
      let bucket = userBuckets.get(userId)
      if (bucket === undefined) {
        bucket = createTokenBucket(limits.userMessagesPerSecond, limits.userMessagesBurst, atMs)
        userBuckets.set(userId, bucket)
      }
      return bucket
    },
  }
}
