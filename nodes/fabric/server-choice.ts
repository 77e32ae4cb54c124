/**
 * Which server a node's connection dials when it leaves one. A node moves off a server that cannot
 * reach JetStream (quorum-watch.ts) or whose appends go unacknowledged while another server
 * acknowledges them (transport.ts). nats.js, left alone, dials its pool in turn, and its first pick
 * after a move is the very server it left (the pool rotates only from the second dial on): in chaos
 * runs a node cut off with its server reconnected to it and stayed stuck for another check period.
 * So a server left is set aside for SERVER_AVOID_MS, and a reconnect dials, in this order, the
 * server the caller prefers (the second connection's, which acknowledges appends), the first of
 * the pool not set aside, or, when all are, the one whose time aside ends first.
 */

import type { ReconnectToServerHandler, Server } from '@nats-io/transport-node'

/** How long a server left stays aside: it outlasts a partition's detection and a 2.9 election. */
export const SERVER_AVOID_MS = 30_000

export interface ServerChoice {
  /** Set `server` (host:port, as NatsConnection.getServer() gives it) aside for SERVER_AVOID_MS. */
  leave(server: string): void
  /** The handler for nats.js's `reconnectToServer` option. */
  readonly reconnectToServer: ReconnectToServerHandler
}

export interface ServerChoiceOptions {
  /** The server to prefer when it is in the pool and not aside (host:port), if any. */
  readonly preferred?: () => string | undefined
  readonly now?: () => number
}

export function serverChoice(options: ServerChoiceOptions = {}): ServerChoice {
  const now = options.now ?? Date.now
  /** host:port -> until when it stays aside. */
  const aside = new Map<string, number>()
  const asideUntil = (server: Server) => {
    const until = aside.get(server.listen)
    return until !== undefined && until > now() ? until : null
  }
  return {
    leave(server) {
      if (server !== '') aside.set(server, now() + SERVER_AVOID_MS)
    },
    reconnectToServer(pool) {
      if (aside.size === 0 || pool.length === 0) return null
      const preferred = options.preferred?.()
      const open = pool.filter((server) => asideUntil(server) === null)
      const chosen =
        open.find((server) => server.listen === preferred) ??
        open[0] ??
        [...pool].sort((a, b) => (asideUntil(a) ?? 0) - (asideUntil(b) ?? 0))[0]
      return chosen ?? null
    },
  }
}
