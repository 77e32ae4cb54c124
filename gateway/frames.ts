/**
 * A client's frames. Every frame counts against the connection's and the user's token buckets, is
 * size-checked and schema-checked, and a bad one is answered with a coded error while the
 * connection goes on; a client that keeps flooding past the limit is closed (4029).
 */

import type { BetRelay } from './bets.ts'
import type { GameFeeds } from './game-view.ts'
import type { GatewayLimits } from './limits.ts'
import type { GatewayMetrics } from './metrics.ts'
import { CLOSE, type ClientFrame, parseClientFrame, peekRef, type SubscribeFrame } from './protocol.ts'
import type { Sender } from './sender.ts'
import type { Session, SessionTable, Subscription } from './sessions.ts'

type FrameLimits = Pick<GatewayLimits, 'frameBytesMax' | 'floodCloseAfter' | 'subscriptionsPerConnectionMax'>

export interface FrameContext {
  readonly limits: FrameLimits
  readonly metrics: GatewayMetrics
  readonly now: () => number
  readonly sessions: Pick<SessionTable, 'userFrames'>
  readonly sender: Sender
  readonly feeds: GameFeeds
  readonly relay: Pick<BetRelay, 'place'>
}

export type FrameHandler = (session: Session, data: Buffer, isBinary: boolean) => void

export function createFrameHandler(context: FrameContext): FrameHandler {
  return (session, data, isBinary) => onMessage(context, session, data, isBinary)
}

/** Each refusal is its branch's last act, hence `return sender.refuse(...)` (and no `void` type). */
function onMessage(context: FrameContext, session: Session, data: Buffer, isBinary: boolean) {
  const { limits, sender } = context
  context.metrics.framesIn.inc()
  if (session.closing) return
  const wait = rateLimited(context, session)
  if (wait > 0) {
    session.refusedInRow++
    if (session.refusedInRow >= limits.floodCloseAfter)
      return sender.close(session, CLOSE.FLOODING, 'flooding: too many frames over the rate limit')
    const ref = !isBinary && data.length <= limits.frameBytesMax ? peekRef(data.toString('utf8')) : undefined
    return sender.refuse(session, 'RATE_LIMITED', 'too many frames; slow down', ref, wait)
  }
  session.refusedInRow = 0
  if (isBinary) return sender.refuse(session, 'BAD_FRAME', 'frames are JSON text, not binary')
  if (data.length > limits.frameBytesMax)
    return sender.refuse(session, 'FRAME_TOO_LARGE', `a frame is at most ${limits.frameBytesMax} bytes`)
  const frame = parseClientFrame(data.toString('utf8'))
  if ('problem' in frame) return sender.refuse(session, 'BAD_FRAME', frame.problem, frame.ref)
  handle(context, session, frame)
}

/**
 * 0 when the connection's bucket and then the user's each gave a token; else the ms until the first
 * that had none will have one. Every connection of a user draws on the user's bucket too, so
 * opening more connections does not raise a user's rate.
 */
function rateLimited(context: FrameContext, session: Session): number {
  const atMs = context.now()
  const own = session.bucket.take(atMs)
  if (own > 0) return own
  return context.sessions.userFrames.take(session.principal.userId, atMs)
}

function handle(context: FrameContext, session: Session, frame: ClientFrame) {
  const { sender } = context
  const ref = frame.ref !== undefined ? { ref: frame.ref } : {}
  switch (frame.type) {
    case 'ping':
      sender.send(session, { type: 'pong', serverTimeMs: Date.now(), ...ref })
      return
    case 'place':
      context.relay.place(session.principal.userId, frame)
      return
    case 'unsubscribe': {
      const subscription = session.subscriptions.get(frame.gameId)
      if (subscription === undefined)
        return sender.refuse(session, 'NOT_SUBSCRIBED', `not subscribed to ${frame.gameId}`, frame.ref)
      subscription.stop()
      session.subscriptions.delete(frame.gameId)
      sender.send(session, { type: 'unsubscribed', gameId: frame.gameId, ...ref })
      return
    }
    case 'subscribe':
      return subscribe(context, session, frame)
  }
}

/**
 * A client resuming in the same epoch gets the deltas it missed when the feed still keeps them;
 * any other gets a snapshot. Subscribing again to a game replaces the subscription.
 */
function subscribe(context: FrameContext, session: Session, frame: SubscribeFrame) {
  const { limits, sender, feeds } = context
  const existing = session.subscriptions.get(frame.gameId)
  if (existing === undefined && session.subscriptions.size >= limits.subscriptionsPerConnectionMax)
    return sender.refuse(
      session,
      'TOO_MANY_SUBSCRIPTIONS',
      `at most ${limits.subscriptionsPerConnectionMax} games per connection`,
      frame.ref,
    )
  const feed = feeds.feed(frame.gameId)
  if (feed === undefined)
    return sender.refuse(session, 'UNKNOWN_GAME', `no game ${frame.gameId} here`, frame.ref)
  existing?.stop()
  const subscription: Subscription = { feed, stop: () => {}, lagging: false }
  const missed =
    frame.resume !== undefined && frame.resume.epoch === feeds.epoch
      ? feed.deltasSince(frame.resume.seq)
      : null
  if (missed === null) sender.snapshot(session, feed, frame.ref)
  else {
    for (const delta of missed) sender.write(session, delta)
    sender.send(session, {
      type: 'subscribed',
      gameId: frame.gameId,
      epoch: feeds.epoch,
      seq: feed.seq(),
      ...(frame.ref !== undefined ? { ref: frame.ref } : {}),
    })
  }
  subscription.stop = feed.onDelta((delta) => sender.onDelta(session, subscription, delta))
  session.subscriptions.set(frame.gameId, subscription)
}
