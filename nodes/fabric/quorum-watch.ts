/**
 * Move off a server that is cut off from JetStream. A partition between nats-servers leaves a
 * client's connection to a server on the minority side up, so the client never fails over, and
 * everything the node does through JetStream stalls until the heal (seen in chaos runs: with one
 * server of three cut off, a trader connected to it made every replica stale). So every
 * `intervalMs` the node asks for a stream's info, which the stream's leader answers; after
 * `failuresMax` failures in a row while connected, it reconnects, and the client picks a server from
 * its list again. Where no server has a quorum this repeats, bounded by the interval, until the heal.
 */

import { type JetStreamManager, jetstreamManager } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'

export interface QuorumWatchOptions {
  readonly nc: NatsConnection
  /** A stream every node uses; its leader must answer for the check to pass. */
  readonly stream: string
  readonly intervalMs: number
  readonly failuresMax: number
  readonly log: Logger
}

export interface QuorumWatch {
  /** Times the node reconnected because its server could not reach JetStream. */
  moves(): number
  stop(): void
}

export function watchQuorum(options: QuorumWatchOptions): QuorumWatch {
  const { nc, stream, intervalMs, failuresMax, log } = options
  let failures = 0
  let moves = 0
  let checking = false
  let jsm: JetStreamManager | null = null

  async function check(): Promise<void> {
    jsm ??= await jetstreamManager(nc, { timeout: intervalMs, checkAPI: false })
    try {
      await jsm.streams.info(stream)
      failures = 0
    } catch (error) {
      // While the client is reconnecting anyway, there is nothing to decide.
      if (nc.isClosed() || nc.isDraining()) return
      failures++
      if (failures < failuresMax) return
      failures = 0
      moves++
      log.warn(
        { err: error, server: nc.info?.server_name, stream },
        'this server cannot reach JetStream; reconnecting to another',
      )
      await nc.reconnect()
    }
  }

  const timer = setInterval(() => {
    if (checking) return
    checking = true
    check()
      .catch((error: unknown) => log.warn({ err: error }, 'quorum check failed'))
      .finally(() => {
        checking = false
      })
  }, intervalMs)
  timer.unref()
  return {
    moves: () => moves,
    stop: () => clearInterval(timer),
  }
}
