/**
 * The client edge: one fastify server with the WebSocket endpoint (`/v1/ws`), the user's HTTP
 * queries, the web page, and `/healthz` and `/readyz` (the metrics stay on the ops port).
 *
 * A socket is admitted on its upgrade request: origin allow-list, then the JWT, then the
 * connection limits, each failure closing with its documented code. Then every frame counts
 * against the connection's and the user's token buckets, is size-checked and schema-checked, and
 * a bad one is answered with a coded error while the connection goes on.
 *
 * Backpressure: before each delta the socket's buffered bytes are read. Past `conflateBytes` the
 * client stops getting deltas for its games and is marked lagging; once it has drained (below half
 * that) it gets one fresh snapshot per game, the latest state in place of everything it missed.
 * Past `closeBytes`, or lagging longer than `laggingMsMax`, it is closed with 4008. A slow client
 * costs the others nothing: deltas are serialized once per game and never wait for a socket.
 */

import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import websocket from '@fastify/websocket'
import type { NatsConnection } from '@nats-io/transport-node'
import Fastify, { type FastifyReply, type FastifyRequest, LogController } from 'fastify'
import type { Logger } from 'pino'
import { Counter, Gauge, type Registry } from 'prom-client'
import type { WebSocket } from 'ws'
import type { ReplicaSync } from '../nodes/fabric/replica-sync.ts'
import { ID_RULES, isUserId } from '../protocol/ids.ts'
import { balanceSubject, historySubject } from '../protocol/subjects.ts'
import { AuthError, type Authenticator, originAllowed, type Principal, signToken, tokenOf } from './auth.ts'
import { type BetRelay, createBetRelay } from './bets.ts'
import { createGameFeeds, type GameFeed, type GameFeeds } from './game-view.ts'
import {
  CLOSE,
  type ClientFrame,
  type ErrorFrame,
  encodeFrame,
  type GatewayErrorCode,
  PROTOCOL_VERSION,
  parseClientFrame,
  peekRef,
  type ServerFrame,
  WS_PATH,
} from './protocol.ts'
import { createTokenBucket, type TokenBucket } from './rate-limit.ts'

export interface GatewayLimits {
  /** Frames larger than this get FRAME_TOO_LARGE; the connection goes on. */
  readonly frameBytesMax: number
  /** Frames larger than this close the connection (1009) before they are read. */
  readonly frameBytesHardMax: number
  readonly messagesPerSecond: number
  readonly messagesBurst: number
  readonly userMessagesPerSecond: number
  readonly userMessagesBurst: number
  /** Rate-limited frames in a row after which the connection is closed (4029). */
  readonly floodCloseAfter: number
  readonly subscriptionsPerConnectionMax: number
  readonly connectionsPerUserMax: number
  readonly connectionsMax: number
  readonly conflateBytes: number
  readonly closeBytes: number
  readonly laggingMsMax: number
  readonly backpressureCheckMs: number
  readonly closedMarketsShown: number
  readonly resumeDeltasMax: number
  readonly placementsInFlightMax: number
  readonly placeTimeoutMs: number
  readonly trackedBetsPerUserMax: number
  readonly statusRecoverAfterMs: number
  readonly lookupsInFlightMax: number
  readonly queryTimeoutMs: number
}

export const DEFAULT_GATEWAY_LIMITS: GatewayLimits = {
  frameBytesMax: 4 * 1024,
  frameBytesHardMax: 64 * 1024,
  messagesPerSecond: 20,
  messagesBurst: 40,
  userMessagesPerSecond: 50,
  userMessagesBurst: 100,
  floodCloseAfter: 200,
  subscriptionsPerConnectionMax: 16,
  connectionsPerUserMax: 8,
  connectionsMax: 20_000,
  conflateBytes: 256 * 1024,
  closeBytes: 4 * 1024 * 1024,
  laggingMsMax: 15_000,
  backpressureCheckMs: 50,
  closedMarketsShown: 4,
  resumeDeltasMax: 1_024,
  placementsInFlightMax: 10_000,
  placeTimeoutMs: 5_000,
  trackedBetsPerUserMax: 1_000,
  statusRecoverAfterMs: 5_000,
  lookupsInFlightMax: 32,
  queryTimeoutMs: 3_000,
}

/** What the demo login hands out: HS256 tokens for any user id, for `npm start` and the page. */
export interface DemoLogin {
  readonly secret: string
  readonly ttlSeconds: number
}

export interface GatewayOptions {
  readonly nc: NatsConnection
  readonly replicas: ReplicaSync
  readonly auth: Authenticator
  readonly origins: readonly string[]
  readonly allowMissingOrigin: boolean
  readonly limits: GatewayLimits
  readonly log: Logger
  readonly registry: Registry
  readonly demoLogin?: DemoLogin
  readonly ready: () => boolean
  /** In a super-cluster: a user's home region, where their bets and queries go. */
  readonly homeRegion?: (userId: string) => string
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

const PUBLIC_DIR = new URL('./public/', import.meta.url)
const PAGE_FILES: Readonly<Record<string, string>> = {
  '/': 'index.html',
  '/app.js': 'app.js',
  '/style.css': 'style.css',
}
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
}

interface Admission {
  readonly principal?: Principal
  readonly close?: { readonly code: number; readonly reason: string }
}

interface Subscription {
  readonly feed: GameFeed
  stop: () => void
  lagging: boolean
}

interface Session {
  readonly socket: WebSocket
  readonly principal: Principal
  readonly subscriptions: Map<string, Subscription>
  readonly bucket: TokenBucket
  laggingSinceMs: number | null
  refusedInRow: number
  closing: boolean
}

/** How long a closed client has to answer the close frame before its socket is destroyed. */
export const CLOSE_GRACE_MS = 1_000

function metricsOf(registry: Registry) {
  return {
    connections: new Gauge({
      name: 'gateway_connections',
      help: 'open WebSocket connections',
      registers: [registry],
    }),
    closes: new Counter({
      name: 'gateway_closes_total',
      help: 'connections the gateway closed, by close code',
      labelNames: ['code'],
      registers: [registry],
    }),
    framesIn: new Counter({
      name: 'gateway_frames_in_total',
      help: 'frames received',
      registers: [registry],
    }),
    refused: new Counter({
      name: 'gateway_frames_refused_total',
      help: 'frames answered with an error, by code',
      labelNames: ['code'],
      registers: [registry],
    }),
    deltas: new Counter({
      name: 'gateway_deltas_sent_total',
      help: 'deltas written to sockets',
      registers: [registry],
    }),
    conflated: new Counter({
      name: 'gateway_deltas_conflated_total',
      help: 'deltas skipped for lagging clients (they get a fresh snapshot instead)',
      registers: [registry],
    }),
  }
}

/** The relay's lookups and the lost statuses they recovered (gateway/bets.ts), read when scraped. */
function relayMetrics(registry: Registry, relay: BetRelay): void {
  const counters = [
    ['gateway_status_lookups_total', 'status lookups sent for overdue statuses', 'lookups'],
    [
      'gateway_statuses_recovered_total',
      'bet statuses passed on from a lookup (lost on the way)',
      'recovered',
    ],
  ] as const
  for (const [name, help, key] of counters)
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset()
        this.inc(relay.stats()[key])
      },
    })
}

export async function buildGateway(options: GatewayOptions): Promise<Gateway> {
  const { nc, limits, log } = options
  const now = options.now ?? Date.now
  const metrics = metricsOf(options.registry)
  const feeds = createGameFeeds(options.replicas, randomUUID(), limits)
  const homeRegion = options.homeRegion ?? (() => null)
  const relay = createBetRelay(nc, limits, log, homeRegion)
  relayMetrics(options.registry, relay)
  const sessions = new Set<Session>()
  const perUser = new Map<string, number>()
  const userBuckets = new Map<string, TokenBucket>()
  const admissions = new WeakMap<FastifyRequest, Admission>()
  const page = new Map(
    Object.entries(PAGE_FILES).map(([path, file]) => [path, readFileSync(new URL(file, PUBLIC_DIR))]),
  )

  const app = Fastify({
    loggerInstance: log,
    // Request lines would carry `?access_token=`; the hooks below log paths without the query.
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

  // ---- admission -------------------------------------------------------------------------------

  async function authenticate(request: FastifyRequest): Promise<Principal | AuthError> {
    try {
      return await options.auth.verify(tokenOf(request.headers, request.query))
    } catch (error) {
      if (error instanceof AuthError) return error
      throw error
    }
  }

  async function admit(request: FastifyRequest): Promise<Admission> {
    const own = `${request.protocol}://${request.headers.host ?? ''}`
    if (!originAllowed(request.headers.origin, options.origins, options.allowMissingOrigin, own))
      return { close: { code: CLOSE.ORIGIN_NOT_ALLOWED, reason: 'origin not allowed' } }
    const principal = await authenticate(request)
    if (principal instanceof AuthError)
      return {
        close: {
          code: principal.code === 'TOKEN_EXPIRED' ? CLOSE.TOKEN_EXPIRED : CLOSE.UNAUTHORIZED,
          reason: principal.message.slice(0, 100),
        },
      }
    if (sessions.size >= limits.connectionsMax)
      return { close: { code: CLOSE.GATEWAY_FULL, reason: 'the gateway is full; try another' } }
    if ((perUser.get(principal.userId) ?? 0) >= limits.connectionsPerUserMax)
      return {
        close: {
          code: CLOSE.TOO_MANY_CONNECTIONS_FOR_USER,
          reason: `at most ${limits.connectionsPerUserMax} connections per user`,
        },
      }
    return { principal }
  }

  // ---- sending ---------------------------------------------------------------------------------

  /**
   * Close with a code. A client that does not answer the close (one too slow to read it, say) is
   * cut off after `CLOSE_GRACE_MS` rather than the ws library's 30 s, and gets no more frames.
   */
  function closeSession(session: Session, code: number, reason: string): void {
    if (session.closing) return
    session.closing = true
    metrics.closes.inc({ code: String(code) })
    for (const subscription of session.subscriptions.values()) subscription.stop()
    session.subscriptions.clear()
    session.socket.close(code, reason)
    setTimeout(() => session.socket.terminate(), CLOSE_GRACE_MS).unref()
  }

  /** Write a frame unless the socket is past the close bound (then it is closed instead). */
  function write(session: Session, frame: Buffer): boolean {
    const { socket } = session
    if (socket.readyState !== socket.OPEN || session.closing) return false
    if (socket.bufferedAmount > limits.closeBytes) {
      closeSession(session, CLOSE.SLOW_CONSUMER, 'too slow: the send buffer passed its bound')
      return false
    }
    socket.send(frame, { binary: false })
    return true
  }

  const send = (session: Session, frame: ServerFrame) => write(session, encodeFrame(frame))

  function refuse(
    session: Session,
    code: GatewayErrorCode,
    message: string,
    ref?: string,
    retryAfterMs?: number,
  ) {
    metrics.refused.inc({ code })
    const frame: ErrorFrame = {
      type: 'error',
      code,
      message,
      ...(ref !== undefined ? { ref } : {}),
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    }
    send(session, frame)
  }

  function snapshot(session: Session, feed: GameFeed, ref?: string): void {
    send(session, {
      type: 'snapshot',
      gameId: feed.gameId,
      epoch: feeds.epoch,
      seq: feed.seq(),
      view: feed.view(),
      ...(ref !== undefined ? { ref } : {}),
    })
  }

  function onDelta(session: Session, subscription: Subscription, frame: Buffer): void {
    if (subscription.lagging) {
      metrics.conflated.inc()
      return
    }
    if (session.socket.bufferedAmount > limits.conflateBytes) {
      subscription.lagging = true
      session.laggingSinceMs ??= now()
      metrics.conflated.inc()
      return
    }
    if (write(session, frame)) metrics.deltas.inc()
  }

  /** Lagging clients: drained ones get fresh snapshots, stuck ones are closed. */
  const backpressureTimer = setInterval(() => {
    const atMs = now()
    for (const session of sessions) {
      if (session.laggingSinceMs === null) continue
      const buffered = session.socket.bufferedAmount
      if (buffered > limits.closeBytes || atMs - session.laggingSinceMs > limits.laggingMsMax) {
        closeSession(session, CLOSE.SLOW_CONSUMER, 'too slow: could not keep up with the game')
        continue
      }
      if (buffered > limits.conflateBytes / 2) continue
      session.laggingSinceMs = null
      for (const subscription of session.subscriptions.values()) {
        if (!subscription.lagging) continue
        subscription.lagging = false
        snapshot(session, subscription.feed)
      }
    }
  }, limits.backpressureCheckMs)
  backpressureTimer.unref()

  // ---- frames ----------------------------------------------------------------------------------

  function rateLimited(session: Session): number {
    const atMs = now()
    const own = session.bucket.take(atMs)
    if (own > 0) return own
    let userBucket = userBuckets.get(session.principal.userId)
    if (userBucket === undefined) {
      userBucket = createTokenBucket(limits.userMessagesPerSecond, limits.userMessagesBurst, atMs)
      userBuckets.set(session.principal.userId, userBucket)
    }
    return userBucket.take(atMs)
  }

  /** Answers a frame; each refusal is the branch's last act, hence `return refuse(...)`. */
  function handle(session: Session, frame: ClientFrame) {
    switch (frame.type) {
      case 'ping':
        send(session, {
          type: 'pong',
          serverTimeMs: Date.now(),
          ...(frame.ref !== undefined ? { ref: frame.ref } : {}),
        })
        return
      case 'place':
        relay.place(session.principal.userId, frame)
        return
      case 'unsubscribe': {
        const subscription = session.subscriptions.get(frame.gameId)
        if (subscription === undefined) {
          refuse(session, 'NOT_SUBSCRIBED', `not subscribed to ${frame.gameId}`, frame.ref)
          return
        }
        subscription.stop()
        session.subscriptions.delete(frame.gameId)
        send(session, {
          type: 'unsubscribed',
          gameId: frame.gameId,
          ...(frame.ref !== undefined ? { ref: frame.ref } : {}),
        })
        return
      }
      case 'subscribe': {
        const existing = session.subscriptions.get(frame.gameId)
        if (existing === undefined && session.subscriptions.size >= limits.subscriptionsPerConnectionMax)
          return refuse(
            session,
            'TOO_MANY_SUBSCRIPTIONS',
            `at most ${limits.subscriptionsPerConnectionMax} games per connection`,
            frame.ref,
          )
        const feed = feeds.feed(frame.gameId)
        if (feed === undefined)
          return refuse(session, 'UNKNOWN_GAME', `no game ${frame.gameId} here`, frame.ref)
        existing?.stop()
        const subscription: Subscription = { feed, stop: () => {}, lagging: false }
        const missed =
          frame.resume !== undefined && frame.resume.epoch === feeds.epoch
            ? feed.deltasSince(frame.resume.seq)
            : null
        if (missed === null) snapshot(session, feed, frame.ref)
        else {
          for (const delta of missed) write(session, delta)
          send(session, {
            type: 'subscribed',
            gameId: frame.gameId,
            epoch: feeds.epoch,
            seq: feed.seq(),
            ...(frame.ref !== undefined ? { ref: frame.ref } : {}),
          })
        }
        subscription.stop = feed.onDelta((delta) => onDelta(session, subscription, delta))
        session.subscriptions.set(frame.gameId, subscription)
        return
      }
    }
  }

  function onMessage(session: Session, data: Buffer, isBinary: boolean) {
    metrics.framesIn.inc()
    if (session.closing) return
    const wait = rateLimited(session)
    if (wait > 0) {
      session.refusedInRow++
      if (session.refusedInRow >= limits.floodCloseAfter)
        return closeSession(session, CLOSE.FLOODING, 'flooding: too many frames over the rate limit')
      const ref =
        !isBinary && data.length <= limits.frameBytesMax ? peekRef(data.toString('utf8')) : undefined
      return refuse(session, 'RATE_LIMITED', 'too many frames; slow down', ref, wait)
    }
    session.refusedInRow = 0
    if (isBinary) return refuse(session, 'BAD_FRAME', 'frames are JSON text, not binary')
    if (data.length > limits.frameBytesMax)
      return refuse(session, 'FRAME_TOO_LARGE', `a frame is at most ${limits.frameBytesMax} bytes`)
    const frame = parseClientFrame(data.toString('utf8'))
    if ('problem' in frame) return refuse(session, 'BAD_FRAME', frame.problem, frame.ref)
    handle(session, frame)
  }

  function open(socket: WebSocket, principal: Principal): void {
    const { userId } = principal
    const session: Session = {
      socket,
      principal,
      subscriptions: new Map(),
      bucket: createTokenBucket(limits.messagesPerSecond, limits.messagesBurst, now()),
      laggingSinceMs: null,
      refusedInRow: 0,
      closing: false,
    }
    sessions.add(session)
    perUser.set(userId, (perUser.get(userId) ?? 0) + 1)
    metrics.connections.set(sessions.size)
    const stopBets = relay.watch(userId, (frame) => send(session, frame))
    const expiry = setTimeout(
      () => closeSession(session, CLOSE.TOKEN_EXPIRED, 'the token has expired'),
      Math.min(Math.max(0, principal.expiresAtMs - Date.now()), 2 ** 31 - 1),
    )
    socket.on('message', (data: Buffer, isBinary: boolean) => onMessage(session, data, isBinary))
    socket.on('close', () => {
      clearTimeout(expiry)
      stopBets()
      for (const subscription of session.subscriptions.values()) subscription.stop()
      sessions.delete(session)
      const left = (perUser.get(userId) ?? 1) - 1
      if (left === 0) {
        perUser.delete(userId)
        userBuckets.delete(userId)
      } else perUser.set(userId, left)
      metrics.connections.set(sessions.size)
    })
    send(session, {
      type: 'hello',
      protocol: PROTOCOL_VERSION,
      userId,
      epoch: feeds.epoch,
      serverTimeMs: Date.now(),
      limits: {
        frameBytesMax: limits.frameBytesMax,
        messagesPerSecond: limits.messagesPerSecond,
        messagesBurst: limits.messagesBurst,
        subscriptionsPerConnectionMax: limits.subscriptionsPerConnectionMax,
      },
    })
  }

  app.get(
    WS_PATH,
    {
      websocket: true,
      preValidation: async (request) => {
        admissions.set(request, await admit(request))
      },
    },
    (socket, request) => {
      const admission = admissions.get(request)
      if (admission?.principal === undefined) {
        const { code, reason } = admission?.close ?? { code: CLOSE.UNAUTHORIZED, reason: 'not admitted' }
        metrics.closes.inc({ code: String(code) })
        socket.close(code, reason)
        return
      }
      open(socket, admission.principal)
    },
  )

  // ---- HTTP ------------------------------------------------------------------------------------

  /** The user of an HTTP request, or a 401 already sent. */
  async function principalOf(request: FastifyRequest, reply: FastifyReply): Promise<Principal | null> {
    const principal = await authenticate(request)
    if (principal instanceof AuthError) {
      await reply.code(401).send({ error: { code: principal.code, message: principal.message } })
      return null
    }
    return principal
  }

  async function query(subject: string, reply: FastifyReply): Promise<unknown> {
    try {
      const answer = (await nc.request(subject, '', { timeout: limits.queryTimeoutMs })).json<{
        ok: boolean
        data?: unknown
        error?: unknown
      }>()
      if (!answer.ok) return reply.code(400).send({ error: answer.error })
      return { data: answer.data }
    } catch {
      return reply
        .code(503)
        .send({ error: { code: 'UNAVAILABLE', message: 'no settlement node answered; try again shortly' } })
    }
  }

  /** `/v1/users/:userId/...`: a user reads only their own (anything else is 403, not a leak). */
  for (const [path, subjectOf] of [
    ['bets', historySubject],
    ['balance', balanceSubject],
  ] as const) {
    app.get<{ Params: { userId: string } }>(
      `/v${PROTOCOL_VERSION}/users/:userId/${path}`,
      async (request, reply) => {
        const principal = await principalOf(request, reply)
        if (principal === null) return reply
        if (request.params.userId !== principal.userId)
          return reply
            .code(403)
            .send({ error: { code: 'FORBIDDEN', message: 'a user reads only their own' } })
        return query(subjectOf(principal.userId, homeRegion(principal.userId)), reply)
      },
    )
  }

  app.get(`/v${PROTOCOL_VERSION}/games`, async () => ({ data: options.replicas.games() }))

  app.post<{ Body: { userId?: unknown } }>(`/v${PROTOCOL_VERSION}/demo/login`, async (request, reply) => {
    const demo = options.demoLogin
    if (demo === undefined)
      return reply.code(404).send({ error: { code: 'NOT_FOUND', message: 'demo login is off' } })
    const userId = request.body?.userId
    if (!isUserId(userId))
      return reply.code(400).send({ error: { code: 'BAD_REQUEST', message: `userId: ${ID_RULES.userId}` } })
    return { token: await signToken(demo.secret, userId, demo.ttlSeconds), userId }
  })

  app.get('/healthz', async () => ({ status: 'ok', connections: sessions.size }))
  app.get('/readyz', async (_request, reply) =>
    options.ready() ? { ready: true } : reply.code(503).send({ ready: false }),
  )
  for (const [path, bytes] of page) {
    const type = CONTENT_TYPES[path === '/' ? 'html' : (path.split('.').pop() as string)] as string
    app.get(path, async (_request, reply) => reply.type(type).header('cache-control', 'no-cache').send(bytes))
  }

  return {
    app,
    feeds,
    relay,
    connections: () => sessions.size,
    async closedWith(code) {
      const { values } = await metrics.closes.get()
      return values.find((value) => value.labels.code === String(code))?.value ?? 0
    },
    async close() {
      clearInterval(backpressureTimer)
      for (const session of sessions) closeSession(session, CLOSE.GOING_AWAY, 'the gateway is shutting down')
      relay.close()
      feeds.close()
      await app.close()
    },
  }
}
