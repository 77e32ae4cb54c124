/**
 * Frames to sockets, and backpressure. Before each delta the socket's buffered bytes are read. Past
 * `conflateBytes` the client stops getting deltas for its games and is marked lagging; once it has
 * drained (below half that) it gets one fresh snapshot per game, the latest state in place of
 * everything it missed. Past `closeBytes`, or lagging longer than `laggingMsMax`, it is closed with
 * 4008. A slow client costs the others nothing: deltas are serialized once per game and never wait
 * for a socket.
 */

import type { GameFeed, GameFeeds } from './game-view.ts'
import type { GatewayLimits } from './limits.ts'
import type { GatewayMetrics } from './metrics.ts'
import { CLOSE, type ErrorFrame, encodeFrame, type GatewayErrorCode, type ServerFrame } from './protocol.ts'
import type { Session, SessionTable, Subscription } from './sessions.ts'

/** How long a closed client has to answer the close frame before its socket is destroyed. */
export const CLOSE_GRACE_MS = 1_000

type SendLimits = Pick<GatewayLimits, 'conflateBytes' | 'closeBytes' | 'laggingMsMax' | 'backpressureCheckMs'>

export interface SendContext {
  readonly limits: SendLimits
  readonly metrics: GatewayMetrics
  /** For the epoch a snapshot carries. */
  readonly feeds: Pick<GameFeeds, 'epoch'>
  readonly now: () => number
}

export interface Sender {
  /** Close with a code; the session gets no more frames. */
  close(session: Session, code: number, reason: string): void
  /** Write an encoded frame; false if the socket is closing or was closed for its backlog. */
  write(session: Session, frame: Buffer): boolean
  send(session: Session, frame: ServerFrame): boolean
  /** Answer with a coded error, counted by code. */
  refuse(session: Session, code: GatewayErrorCode, message: string, ref?: string, retryAfterMs?: number): void
  snapshot(session: Session, feed: GameFeed, ref?: string): void
  /** A game's delta for one subscription: written, or skipped while the client lags. */
  onDelta(session: Session, subscription: Subscription, frame: Buffer): void
}

export function createSender(context: SendContext): Sender {
  const sender: Sender = {
    close: (session, code, reason) => closeSession(context, session, code, reason),
    write: (session, frame) => write(context, session, frame),
    send: (session, frame) => write(context, session, encodeFrame(frame)),
    refuse(session, code, message, ref, retryAfterMs) {
      context.metrics.refused.inc({ code })
      const frame: ErrorFrame = {
        type: 'error',
        code,
        message,
        ...(ref !== undefined ? { ref } : {}),
        ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      }
      sender.send(session, frame)
    },
    snapshot(session, feed, ref) {
      sender.send(session, {
        type: 'snapshot',
        gameId: feed.gameId,
        epoch: context.feeds.epoch,
        seq: feed.seq(),
        view: feed.view(),
        ...(ref !== undefined ? { ref } : {}),
      })
    },
    onDelta: (session, subscription, frame) => onDelta(context, session, subscription, frame),
  }
  return sender
}

/**
 * A client that does not answer the close (one too slow to read it, say) is cut off after
 * `CLOSE_GRACE_MS` rather than the ws library's 30 s.
 */
function closeSession(context: SendContext, session: Session, code: number, reason: string): void {
  if (session.closing) return
  session.closing = true
  context.metrics.closes.inc({ code: String(code) })
  for (const subscription of session.subscriptions.values()) subscription.stop()
  session.subscriptions.clear()
  session.socket.close(code, reason)
  setTimeout(() => session.socket.terminate(), CLOSE_GRACE_MS).unref()
}

/** Write a frame unless the socket is past the close bound (then it is closed instead). */
function write(context: SendContext, session: Session, frame: Buffer): boolean {
  const { socket } = session
  if (socket.readyState !== socket.OPEN || session.closing) return false
  if (socket.bufferedAmount > context.limits.closeBytes) {
    closeSession(context, session, CLOSE.SLOW_CONSUMER, 'too slow: the send buffer passed its bound')
    return false
  }
  socket.send(frame, { binary: false })
  return true
}

function onDelta(context: SendContext, session: Session, subscription: Subscription, frame: Buffer): void {
  const { metrics } = context
  if (subscription.lagging) {
    metrics.conflated.inc()
    return
  }
  if (session.socket.bufferedAmount > context.limits.conflateBytes) {
    subscription.lagging = true
    session.laggingSinceMs ??= context.now()
    metrics.conflated.inc()
    return
  }
  if (write(context, session, frame)) metrics.deltas.inc()
}

/**
 * Every `backpressureCheckMs`, the lagging clients: drained ones get fresh snapshots, stuck ones
 * are closed. Returns the stop function.
 */
export function startLagChecks(context: SendContext, sender: Sender, sessions: SessionTable): () => void {
  const { limits } = context
  const timer = setInterval(() => {
    const atMs = context.now()
    for (const session of sessions.all) {
      if (session.laggingSinceMs === null) continue
      const buffered = session.socket.bufferedAmount
      if (buffered > limits.closeBytes || atMs - session.laggingSinceMs > limits.laggingMsMax) {
        sender.close(session, CLOSE.SLOW_CONSUMER, 'too slow: could not keep up with the game')
        continue
      }
      if (buffered > limits.conflateBytes / 2) continue
      session.laggingSinceMs = null
      for (const subscription of session.subscriptions.values()) {
        if (!subscription.lagging) continue
        subscription.lagging = false
        sender.snapshot(session, subscription.feed)
      }
    }
  }, limits.backpressureCheckMs)
  timer.unref()
  return () => clearInterval(timer)
}
