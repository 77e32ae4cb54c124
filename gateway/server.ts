/**
 * The client edge: one fastify server with the WebSocket endpoint (`/v1/ws`), the user's HTTP
 * queries, the web page, and `/healthz` and `/readyz` (the metrics stay on the ops port).
 *
 * `buildGateway` only composes; each part lives in its own module. Admission (origin, JWT,
 * connection limits) is in admission.ts, the open sockets and their per-user counts in sessions.ts,
 * writing and backpressure in sender.ts, a client's frames in frames.ts, and the routes in one
 * fastify plugin each: socket-endpoint.ts, user-queries.ts, demo-login.ts, health.ts and page.ts.
 * The parts share one session table and one sender, handed to them here.
 */

import { randomUUID } from 'node:crypto'
import websocket from '@fastify/websocket'
import type { NatsConnection } from '@nats-io/transport-node'
import Fastify, { LogController } from 'fastify'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import type { ReplicaSync } from '../nodes/fabric/replica-sync.ts'
import type { UserRouting } from '../protocol/subjects.ts'
import { watchApiNodes } from './api-directory.ts'
import type { Authenticator } from './auth.ts'
import type { SecondConnection } from './bet-relay-state.ts'
import { type BetRelay, createBetRelay } from './bets.ts'
import { type DemoLogin, demoLogin } from './demo-login.ts'
import { createFrameHandler } from './frames.ts'
import { createGameFeeds, type GameFeeds } from './game-view.ts'
import { health } from './health.ts'
import type { GatewayLimits } from './limits.ts'
import { createGatewayMetrics, registerRelayMetrics } from './metrics.ts'
import { page } from './page.ts'
import { CLOSE } from './protocol.ts'
import { createSender, startLagChecks } from './sender.ts'
import { createSessionTable } from './sessions.ts'
import { socketEndpoint } from './socket-endpoint.ts'
import { createUpgradeLimits } from './upgrade-limits.ts'
import { userQueries } from './user-queries.ts'

export type { DemoLogin } from './demo-login.ts'
export { DEFAULT_GATEWAY_LIMITS, type GatewayLimits } from './limits.ts'
export { CLOSE_GRACE_MS } from './sender.ts'

export interface GatewayOptions {
  readonly nc: NatsConnection
  /** Hedged placements go through it (bet-relay-state.ts); absent: through `nc`. */
  readonly second?: SecondConnection
  readonly replicas: ReplicaSync
  readonly auth: Authenticator
  /** Origins of other sites' pages allowed to open sockets (`*`: any). */
  readonly origins: readonly string[]
  /** The origin browsers load the gateway's own page from (`https://bet.example`), if it serves one. */
  readonly publicOrigin?: string
  readonly allowMissingOrigin: boolean
  readonly limits: GatewayLimits
  readonly log: Logger
  readonly registry: Registry
  readonly demoLogin?: DemoLogin
  readonly ready: () => boolean
  /**
   * Where a user's bets and queries go: the user's ledger shard, and in a super-cluster the home
   * region (protocol/subjects.ts, `userRouting`).
   */
  readonly route: UserRouting
  /** The clock of rate limits and lag checks (tests inject one); default Date.now. */
  readonly now?: () => number
}

export interface Gateway {
  readonly app: ReturnType<typeof Fastify>
  /** Connections closed by the gateway, by close code. */
  closedWith(code: number): Promise<number>
  readonly feeds: GameFeeds
  readonly relay: BetRelay
  connections(): number
  close(): Promise<void>
}

export async function buildGateway(options: GatewayOptions): Promise<Gateway> {
  const { nc, limits, log } = options
  const now = options.now ?? Date.now
  const metrics = createGatewayMetrics(options.registry)
  const feeds = createGameFeeds(options.replicas, randomUUID(), limits)
  const directory = watchApiNodes(nc, { hedgeAfterMsMax: limits.hedgeAfterMs, log })
  const relay = createBetRelay(nc, limits, log, options.route, {}, directory, options.second ?? null)
  registerRelayMetrics(options.registry, relay)
  const sessions = createSessionTable(limits)
  const upgrades = createUpgradeLimits(limits)
  const sendContext = { limits, metrics, feeds, now }
  const sender = createSender(sendContext)

  const app = await createApp(limits, log)
  const { auth, origins, allowMissingOrigin, publicOrigin } = options
  await app.register(socketEndpoint, {
    admission: { auth, origins, publicOrigin, allowMissingOrigin, limits, sessions, upgrades, now },
    limits,
    metrics,
    now,
    sessions,
    sender,
    onFrame: createFrameHandler({ limits, metrics, now, sessions, sender, feeds, relay }),
    feeds,
    relay,
  })
  await app.register(userQueries, { nc, auth, limits, replicas: options.replicas, route: options.route })
  await app.register(demoLogin, { demoLogin: options.demoLogin })
  await app.register(health, { connections: () => sessions.all.size, ready: options.ready })
  await app.register(page)
  const stopLagChecks = startLagChecks(sendContext, sender, sessions)

  return {
    app,
    feeds,
    relay,
    connections: () => sessions.all.size,
    async closedWith(code) {
      const { values } = await metrics.closes.get()
      return values.find((value) => value.labels.code === String(code))?.value ?? 0
    },
    async close() {
      stopLagChecks()
      for (const session of sessions.all)
        sender.close(session, CLOSE.GOING_AWAY, 'the gateway is shutting down')
      relay.close()
      directory.close()
      feeds.close()
      await app.close()
    },
  }
}

/** The bare server: no request lines logged (they would carry tokens), and WebSockets on every route. */
async function createApp(limits: GatewayLimits, log: Logger) {
  const app = Fastify({
    loggerInstance: log,
    // Request lines would carry `?access_token=`; the hook below logs paths without the query.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: limits.frameBytesMax,
  })
  app.addHook('onResponse', async (request, reply) => {
    request.log.debug(
      { method: request.method, path: request.url.split('?')[0], statusCode: reply.statusCode },
      'gateway request',
    )
  })
  await app.register(websocket, {
    options: { maxPayload: limits.frameBytesHardMax, perMessageDeflate: false },
    errorHandler: (error, socket) => {
      log.debug({ err: error }, 'websocket error')
      socket.terminate()
    },
  })
  return app
}
