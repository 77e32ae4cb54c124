/**
 * The WebSocket endpoint (`/v1/ws`) as a fastify plugin: admission on the upgrade request, then a
 * session per socket with its bet statuses, its token's expiry and its frames wired up. The
 * `@fastify/websocket` plugin itself is registered by the server, at the root, so that its hooks
 * cover every route: an upgrade to any other path is closed at once.
 */

import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { WebSocket } from 'ws'
import { type Admission, type AdmissionContext, admit } from './admission.ts'
import type { Principal } from './auth.ts'
import type { BetRelay } from './bets.ts'
import type { FrameHandler } from './frames.ts'
import type { GameFeeds } from './game-view.ts'
import type { GatewayLimits } from './limits.ts'
import type { GatewayMetrics } from './metrics.ts'
import { CLOSE, type HelloFrame, PROTOCOL_VERSION, WS_PATH } from './protocol.ts'
import { createTokenBucket } from './rate-limit.ts'
import type { Sender } from './sender.ts'
import type { Session, SessionTable } from './sessions.ts'

export interface SocketEndpointOptions {
  readonly admission: AdmissionContext
  readonly limits: GatewayLimits
  readonly metrics: GatewayMetrics
  readonly now: () => number
  readonly sessions: SessionTable
  readonly sender: Sender
  readonly onFrame: FrameHandler
  readonly feeds: Pick<GameFeeds, 'epoch'>
  readonly relay: Pick<BetRelay, 'watch'>
}

export const socketEndpoint: FastifyPluginAsync<SocketEndpointOptions> = async (app, options) => {
  const admissions = new WeakMap<FastifyRequest, Admission>()
  app.get(
    WS_PATH,
    {
      websocket: true,
      preValidation: async (request) => {
        admissions.set(request, await admit(options.admission, request))
      },
    },
    (socket, request) => {
      const admission = admissions.get(request)
      if (admission?.principal === undefined) {
        const { code, reason } = admission?.close ?? { code: CLOSE.UNAUTHORIZED, reason: 'not admitted' }
        options.metrics.closes.inc({ code: String(code) })
        socket.close(code, reason)
        return
      }
      open(options, socket, admission.principal)
    },
  )
}

function open(options: SocketEndpointOptions, socket: WebSocket, principal: Principal): void {
  const { limits, sessions, sender, metrics } = options
  const { userId } = principal
  const session: Session = {
    socket,
    principal,
    subscriptions: new Map(),
    bucket: createTokenBucket(limits.messagesPerSecond, limits.messagesBurst, options.now()),
    laggingSinceMs: null,
    refusedInRow: 0,
    closing: false,
  }
  sessions.add(session)
  metrics.connections.set(sessions.all.size)
  const stopBets = options.relay.watch(userId, (frame) => sender.send(session, frame))
  const expiry = setTimeout(
    () => sender.close(session, CLOSE.TOKEN_EXPIRED, 'the token has expired'),
    Math.min(Math.max(0, principal.expiresAtMs - Date.now()), 2 ** 31 - 1),
  )
  socket.on('message', (data: Buffer, isBinary: boolean) => options.onFrame(session, data, isBinary))
  socket.on('close', () => {
    clearTimeout(expiry)
    stopBets()
    for (const subscription of session.subscriptions.values()) subscription.stop()
    sessions.remove(session)
    metrics.connections.set(sessions.all.size)
  })
  sender.send(session, helloFrame(userId, options.feeds.epoch, limits))
}

/** The first frame: who the client is, and the limits it should keep to. */
function helloFrame(userId: string, epoch: string, limits: GatewayLimits): HelloFrame {
  return {
    type: 'hello',
    protocol: PROTOCOL_VERSION,
    userId,
    epoch,
    serverTimeMs: Date.now(),
    limits: {
      frameBytesMax: limits.frameBytesMax,
      messagesPerSecond: limits.messagesPerSecond,
      messagesBurst: limits.messagesBurst,
      subscriptionsPerConnectionMax: limits.subscriptionsPerConnectionMax,
    },
  }
}
