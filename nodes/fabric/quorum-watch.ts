/**
 * Move off a server that is cut off from JetStream. A partition between nats-servers leaves a
 * client's connection to a server on the minority side up, so the client never fails over, and
 * everything the node does through JetStream stalls until the heal (seen in chaos runs: with one
 * server of three cut off, a trader connected to it made every replica stale). So every
 * `intervalMs` the node asks for a stream's info (the request times out after `intervalMs` too).
 * The stream's leader answers, and the check passes only if that leader has heard a majority of
 * the stream's replicas within PEER_SILENT_MS_MAX: a leader cut off with the node keeps answering
 * for a while, as if all were well (seen in CI). Once no check has passed for `lostAfterMs` while
 * connected, it tells `leaving` which server it leaves and reconnects (server-choice.ts picks
 * where to). Where no server has a quorum this repeats, once per `lostAfterMs`, until the heal.
 * `lostAfterMs` should outlast a stream leader election, or a node reconnects needlessly (which
 * costs only its requests in flight).
 *
 * A stream whose own leader is cut off fails the check from every server, not only from this one:
 * in the isolate-server chaos runs, when the cut-off server led the fabric stream, every node's
 * check failed and every node reconnected, each move costing its requests in flight, while their
 * servers were fine. So where the node has a second connection, to another server (`elsewhere`),
 * the check is asked through it too before the node moves: failing there as well, it is the
 * stream's trouble, and the node stays.
 */

import { type JetStreamManager, jetstreamManager } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'

/**
 * A replica its leader last heard from longer ago than this is not counted. Raft heartbeats go every
 * second (nats-server 2.9), but a leader cut off from its followers still calls them current for
 * 10 s: through the cut-off server, a node's check (or its second connection's, asked before a
 * move) passed on the stale leader's word, and every node left a healthy server.
 */
export const PEER_SILENT_MS_MAX = 2_500
const NANOS_PER_MS = 1_000_000

export interface QuorumWatchOptions {
  readonly nc: NatsConnection
  /** A stream every node uses; its leader must answer for the check to pass. */
  readonly stream: string
  readonly intervalMs: number
  readonly lostAfterMs: number
  readonly log: Logger
  /** Told the server (host:port) the node is about to leave, before it reconnects. */
  readonly leaving?: (server: string) => void
  /** The node's connection to another server, if it has one now: the check is asked there too. */
  readonly elsewhere?: () => NatsConnection | null
}

export interface QuorumWatch {
  /** Times the node reconnected because its server could not reach JetStream. */
  moves(): number
  /** Failed checks, since the last pass or move, that failed through the other connection too. */
  stays(): number
  stop(): void
}

export function watchQuorum(options: QuorumWatchOptions): QuorumWatch {
  const { nc, stream, intervalMs, lostAfterMs, log } = options
  let lastPassedMs = Date.now()
  let moves = 0
  let stays = 0
  let checking = false
  const managers = new WeakMap<NatsConnection, JetStreamManager>()

  /** Throws unless the stream's leader, asked through `through`, hears a majority of its replicas. */
  async function passes(through: NatsConnection): Promise<void> {
    let jsm = managers.get(through)
    if (jsm === undefined) {
      jsm = await jetstreamManager(through, { timeout: intervalMs, checkAPI: false })
      managers.set(through, jsm)
    }
    const { cluster } = await jsm.streams.info(stream)
    const peers = cluster?.replicas ?? []
    const heard =
      1 +
      peers.filter(
        (peer) => peer.current && !peer.offline && peer.active / NANOS_PER_MS <= PEER_SILENT_MS_MAX,
      ).length
    if (2 * heard <= peers.length + 1)
      throw new Error(
        `the stream leader ${cluster?.leader} hears ${heard - 1} of its ${peers.length} replicas`,
      )
  }

  /** True when the check fails through the other connection too: the stream, not this server. */
  async function failsElsewhere(): Promise<boolean> {
    const other = options.elsewhere?.() ?? null
    if (other === null || other.isClosed() || other.getServer() === nc.getServer()) return false
    try {
      await passes(other)
      return false
    } catch {
      return true
    }
  }

  async function check(): Promise<void> {
    try {
      await passes(nc)
      lastPassedMs = Date.now()
      stays = 0
    } catch (error) {
      // While the client is reconnecting anyway, there is nothing to decide.
      if (nc.isClosed() || nc.isDraining() || Date.now() - lastPassedMs < lostAfterMs) return
      if (await failsElsewhere()) {
        if (stays++ === 0)
          log.warn(
            { err: error, server: nc.info?.server_name, stream },
            'JetStream answers no better through another server; staying on this one',
          )
        return
      }
      stays = 0
      lastPassedMs = Date.now()
      moves++
      const from = nc.info?.server_name
      log.warn(
        { err: error, server: from, stream },
        'this server cannot reach JetStream; reconnecting to another',
      )
      options.leaving?.(nc.getServer())
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
    stays: () => stays,
    stop: () => clearInterval(timer),
  }
}
