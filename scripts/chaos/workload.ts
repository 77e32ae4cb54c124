/**
 * The chaos workload: bettors on WebSocket connections to the gateway, each following the game and
 * now and then placing a bet on an open market at the price it sees, with a random odds policy.
 * Everything they send and everything they are told goes into the history, stamped with the wall
 * clock. A bettor whose socket drops reconnects (bounded backoff) and keeps going; a placement with
 * no answer within `answerTimeoutMs` is recorded as a timeout (the bet may or may not stand).
 * Every event about a bet names its user as well as its id, since a bet id is only its user's own.
 */

import WebSocket from 'ws'
import { signToken } from '../../gateway/auth.ts'
import { applyDelta } from '../../gateway/game-view.ts'
import type { GameView, ServerFrame } from '../../gateway/protocol.ts'
import { createPrng } from '../../nodes/fabric/prng.ts'
import { betKeyOf } from '../../protocol/ids.ts'
import type { HistoryEvent } from './history.ts'

export interface WorkloadOptions {
  /** The gateways; bettor i connects to wsUrls[i mod n], and back to it after a drop. */
  readonly wsUrls: readonly string[]
  readonly secret: string
  readonly gameId: string
  readonly users: readonly string[]
  readonly seed: number
  /** Mean pause between one bettor's placements. */
  readonly meanPauseMs: number
  readonly answerTimeoutMs: number
  readonly record: (event: HistoryEvent) => void
}

export interface Workload {
  /** Stop placing; sockets stay open so that statuses keep arriving. */
  stopPlacing(): void
  /** Bets placed whose answer has not come (nor timed out). */
  unanswered(): number
  close(): Promise<void>
}

const RECONNECT_MS = [100, 250, 500, 1_000, 2_000]
const TOKEN_TTL_S = 3_600
const SUBSCRIBE_REF = 'subscribe'
const SUBSCRIBE_RETRY_MS = 500
const POLICIES = ['exact', 'better', 'any'] as const

/**
 * The id of a bettor's n-th bet (from 1). Predictable on purpose, as many clients' ids are: the
 * hostile-mix attacker (attacker.ts) places bets under the ids the bettors use or will use.
 */
export const betIdOf = (seed: number, userId: string, n: number) => `chaos-${seed}-${userId}-${n}`

export function startWorkload(options: WorkloadOptions): Workload {
  const prng = createPrng(options.seed)
  let placing = true
  let closed = false
  /** Per user, the bets placed so far: a bettor's ids count its own bets, across reconnects. */
  const placedBy = new Map<string, number>()
  /** Per bet key, the timer that records the placement's timeout. */
  const awaiting = new Map<string, NodeJS.Timeout>()
  const sockets = new Set<WebSocket>()
  const timers = new Set<NodeJS.Timeout>()

  const later = (ms: number, run: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer)
      if (!closed) run()
    }, ms)
    timers.add(timer)
  }

  function answered(userId: string, betId: string): void {
    const key = betKeyOf(userId, betId)
    const timer = awaiting.get(key)
    if (timer === undefined) return
    clearTimeout(timer)
    awaiting.delete(key)
  }

  function bettor(userId: string, wsUrl: string, attempt: number): void {
    void signToken(options.secret, userId, TOKEN_TTL_S).then((token) => {
      if (closed) return
      const ws = new WebSocket(`${wsUrl}?access_token=${encodeURIComponent(token)}`)
      sockets.add(ws)
      let view: GameView | null = null
      let epoch = ''
      let seq = 0
      let connected = false
      const subscribe = () =>
        ws.send(JSON.stringify({ type: 'subscribe', ref: SUBSCRIBE_REF, gameId: options.gameId }))
      ws.on('open', () => {
        connected = true
        subscribe()
        // The bettor places from when its socket is open: a loop started with the socket would end
        // at its first turn if the socket were not open by then (a loop ends with its socket), and
        // the bettor would never place a bet over this connection.
        later(prng.int(0, options.meanPauseMs), placeOne)
      })
      ws.on('message', (data: Buffer) => {
        const frame = JSON.parse(data.toString('utf8')) as ServerFrame
        onFrame(frame)
      })
      ws.on('error', () => {})
      ws.on('close', () => {
        sockets.delete(ws)
        if (closed) return
        const next = connected ? 0 : attempt + 1
        later(RECONNECT_MS[Math.min(next, RECONNECT_MS.length - 1)] as number, () =>
          bettor(userId, wsUrl, next),
        )
      })

      function onFrame(frame: ServerFrame): void {
        const atMs = Date.now()
        switch (frame.type) {
          case 'snapshot':
            view = frame.view
            epoch = frame.epoch
            seq = frame.seq
            return
          case 'delta':
            if (view === null || frame.epoch !== epoch || frame.seq !== seq + 1) {
              subscribe()
              return
            }
            view = applyDelta(view, frame)
            seq = frame.seq
            return
          case 'bet':
            answered(userId, frame.betId)
            if (frame.status === 'provisional')
              options.record({
                type: 'answer',
                atMs,
                userId,
                betId: frame.betId,
                kind: 'provisional',
                stamp: frame.stamp,
                accepted: frame.accepted,
                reason: frame.reason,
                odds: frame.odds,
                gameClockMs: frame.gameClockMs,
                balanceCents: frame.balanceCents,
              })
            else if (frame.status === 'refused')
              options.record({
                type: 'answer',
                atMs,
                userId,
                betId: frame.betId,
                kind: 'refused',
                code: frame.code,
                message: frame.message,
              })
            else if (frame.status === 'final')
              options.record({
                type: 'status',
                atMs,
                userId,
                betId: frame.betId,
                status: 'final',
                stamp: frame.stamp,
                accepted: frame.accepted,
                reason: frame.reason,
                odds: frame.odds,
                gameClockMs: frame.gameClockMs,
              })
            else
              options.record({
                type: 'status',
                atMs,
                userId,
                betId: frame.betId,
                status: 'settled',
                outcome: frame.outcome,
                payoutCents: frame.payoutCents,
                balanceCents: frame.balanceCents,
              })
            return
          case 'error':
            // The gateway may not hold the game yet (it starts before the trader's first update
            // reaches it): ask again shortly, or this bettor would never see a market.
            if (frame.ref === SUBSCRIBE_REF) {
              later(SUBSCRIBE_RETRY_MS, () => ws.readyState === WebSocket.OPEN && subscribe())
              return
            }
            if (frame.ref !== undefined && awaiting.has(betKeyOf(userId, frame.ref))) {
              answered(userId, frame.ref)
              options.record({
                type: 'answer',
                atMs,
                userId,
                betId: frame.ref,
                kind: 'error',
                code: frame.code,
                message: frame.message,
              })
            }
            return
          default:
            return
        }
      }

      const placeOne = () => {
        if (closed || ws.readyState !== WebSocket.OPEN) return
        if (placing) {
          const open = (view as GameView | null)?.markets.filter((m) => m.status === 'open') ?? []
          const market = open[prng.int(0, Math.max(0, open.length - 1))]
          const selection = market?.selections[prng.int(0, Math.max(0, (market?.selections.length ?? 1) - 1))]
          const odds = selection ? market?.prices[selection.id] : undefined
          if (market !== undefined && selection !== undefined && odds !== undefined) {
            const n = (placedBy.get(userId) ?? 0) + 1
            placedBy.set(userId, n)
            const betId = betIdOf(options.seed, userId, n)
            const policy = POLICIES[prng.int(0, POLICIES.length - 1)] as (typeof POLICIES)[number]
            const bet = {
              betId,
              gameId: options.gameId,
              marketId: market.marketId,
              selectionId: selection.id,
              stakeCents: prng.int(1, 5) * 100,
              odds,
              policy,
            }
            options.record({ type: 'place', atMs: Date.now(), userId, via: 'gateway', ...bet })
            const key = betKeyOf(userId, betId)
            awaiting.set(
              key,
              setTimeout(() => {
                awaiting.delete(key)
                options.record({ type: 'answer', atMs: Date.now(), userId, betId, kind: 'timeout' })
              }, options.answerTimeoutMs),
            )
            ws.send(JSON.stringify({ type: 'place', ref: betId, ...bet }))
          }
        }
        later(prng.int(options.meanPauseMs / 2, (options.meanPauseMs * 3) / 2), placeOne)
      }
    })
  }

  options.users.forEach((userId, i) => {
    bettor(userId, options.wsUrls[i % options.wsUrls.length] as string, 0)
  })
  return {
    stopPlacing() {
      placing = false
    },
    unanswered: () => awaiting.size,
    async close() {
      closed = true
      for (const timer of timers) clearTimeout(timer)
      for (const timer of awaiting.values()) clearTimeout(timer)
      await Promise.all(
        [...sockets].map(
          (ws) =>
            new Promise<void>((resolve) => {
              if (ws.readyState === WebSocket.CLOSED) return resolve()
              ws.once('close', () => resolve())
              ws.terminate()
            }),
        ),
      )
    },
  }
}
