/**
 * The wire of the hostile-mix attacker (attacker.ts): WebSocket clients of the gateway from any
 * loopback source address and with any header, answers matched to what was sent by `ref` over all
 * of a user's sockets, HTTP GETs, the tokens it forges, and a watch of the game's open markets.
 * Everything waits with a deadline: a socket, a frame or a request that gets no answer is counted as
 * `no answer`, never waited on for good.
 */

import { createHmac } from 'node:crypto'
import { request } from 'node:http'
import WebSocket from 'ws'
import { signToken } from '../../gateway/auth.ts'
import { applyDelta } from '../../gateway/game-view.ts'
import type { GameView, ServerFrame } from '../../gateway/protocol.ts'
import type { Prng } from '../../nodes/fabric/prng.ts'

/** The gateway answers a placement within its place-timeout-ms (5 s by default); this allows more. */
export const ANSWER_TIMEOUT_MS = 8_000
const ADMISSION_TIMEOUT_MS = 5_000
const CLOSE_TIMEOUT_MS = 1_000
const HTTP_TIMEOUT_MS = 5_000
const TOKEN_TTL_S = 3_600
/** Beyond the gateway's 5 s of tolerated clock skew. */
const EXPIRED_FOR_S = 120
/** Bet ids whose statuses a user's answers keep (the changed-retry check reads them). */
const STATUSES_KEPT_MAX = 2_000
const RESUBSCRIBE_MS = 500
export const WATCH_REF = 'watch'

/** What a client was told: `provisional`, `refused CODE`, `error CODE`, `pong`, or `no answer`. */
export interface Answer {
  readonly code: string
  readonly frame?: ServerFrame
}

/** The answer a frame gives to the frame whose ref it carries, or null if it answers nothing. */
export function answerCode(frame: ServerFrame): string | null {
  if (frame.type === 'bet' && frame.status === 'provisional') return 'provisional'
  if (frame.type === 'bet' && frame.status === 'refused') return `refused ${frame.code}`
  if (frame.type === 'error') return `error ${frame.code}`
  if (frame.type === 'pong') return 'pong'
  return null
}

/** One user's frames awaiting answers, matched by ref whichever of the user's sockets hears it. */
export interface Answers {
  /** Register before sending: the answer to the frame sent with `ref`. */
  await(ref: string, timeoutMs?: number): Promise<Answer>
  take(frame: ServerFrame): void
  /** The statuses each bet got, in order (`provisional`, `final`, ...), for STATUSES_KEPT_MAX bets at most. */
  readonly statuses: Map<string, string[]>
}

export function createAnswers(): Answers {
  const pending = new Map<string, (answer: Answer) => void>()
  const statuses = new Map<string, string[]>()
  return {
    statuses,
    await(ref, timeoutMs = ANSWER_TIMEOUT_MS) {
      return new Promise((resolve) => {
        const timer = setTimeout(() => {
          pending.delete(ref)
          resolve({ code: 'no answer' })
        }, timeoutMs)
        pending.set(ref, (answer) => {
          clearTimeout(timer)
          pending.delete(ref)
          resolve(answer)
        })
      })
    },
    take(frame) {
      if (frame.type === 'bet') {
        const seen = statuses.get(frame.betId)
        if (seen !== undefined) seen.push(frame.status)
        else if (statuses.size < STATUSES_KEPT_MAX) statuses.set(frame.betId, [frame.status])
      }
      const code = answerCode(frame)
      const ref = 'ref' in frame ? frame.ref : undefined
      if (code !== null && ref !== undefined) pending.get(ref)?.({ code, frame })
    },
  }
}

export interface SocketOptions {
  /** ws://host:port/v1/ws */
  readonly url: string
  readonly token?: string
  /** Headers of the upgrade request; `Host` and `Origin` may be anything. */
  readonly headers?: Readonly<Record<string, string>>
  /** The loopback address the socket comes from. */
  readonly localAddress: string
  readonly onFrame?: (frame: ServerFrame) => void
}

export interface HostileSocket {
  /** `admitted` on the hello frame, else how the gateway turned it away (`close CODE`, `http STATUS`). */
  readonly admission: Promise<string>
  open(): boolean
  send(frame: object): boolean
  close(): Promise<void>
}

export function openSocket(options: SocketOptions): HostileSocket {
  const query = options.token === undefined ? '' : `?access_token=${encodeURIComponent(options.token)}`
  const ws = new WebSocket(`${options.url}${query}`, {
    headers: { ...options.headers },
    localAddress: options.localAddress,
    handshakeTimeout: ADMISSION_TIMEOUT_MS,
  })
  let admit: (outcome: string) => void = () => {}
  const admission = new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve('no answer'), ADMISSION_TIMEOUT_MS)
    admit = (outcome) => {
      clearTimeout(timer)
      resolve(outcome)
    }
  })
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()))
  ws.on('message', (data: Buffer) => {
    let frame: ServerFrame
    try {
      frame = JSON.parse(data.toString('utf8')) as ServerFrame
    } catch {
      return
    }
    if (frame.type === 'hello') admit('admitted')
    options.onFrame?.(frame)
  })
  ws.on('unexpected-response', (upgrade, response) => {
    admit(`http ${response.statusCode}`)
    upgrade.destroy()
  })
  ws.on('close', (code) => admit(`close ${code}`))
  // A refused or cut connection also closes, and its close code is the answer.
  ws.on('error', () => {})
  return {
    admission,
    open: () => ws.readyState === WebSocket.OPEN,
    send(frame) {
      if (ws.readyState !== WebSocket.OPEN) return false
      ws.send(JSON.stringify(frame))
      return true
    },
    async close() {
      if (ws.readyState === WebSocket.CLOSED) return
      ws.close()
      const cut = setTimeout(() => ws.terminate(), CLOSE_TIMEOUT_MS)
      await closed
      clearTimeout(cut)
    },
  }
}

/** GET `url` from `localAddress`: `http STATUS`, or `no answer`. */
export function httpGet(
  url: string,
  headers: Readonly<Record<string, string>>,
  localAddress: string,
): Promise<string> {
  return new Promise((resolve) => {
    const get = request(url, { headers, localAddress, timeout: HTTP_TIMEOUT_MS }, (response) => {
      response.resume()
      resolve(`http ${response.statusCode}`)
    })
    get.on('timeout', () => get.destroy())
    get.on('error', () => resolve('no answer'))
    get.end()
  })
}

const encodePart = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url')

/** A JWT signed with the stack's secret whatever its claims hold. */
function hs256(secret: string, claims: object): string {
  const body = `${encodePart({ alg: 'HS256', typ: 'JWT' })}.${encodePart(claims)}`
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`
}

export type ForgedToken = 'sub number' | 'alg none' | 'expired'

/** Tokens no gateway may take: a numeric `sub` (well signed), an unsigned one, and an expired one. */
export async function forgedTokens(secret: string, userId: string): Promise<Record<ForgedToken, string>> {
  const exp = Math.floor(Date.now() / 1000) + TOKEN_TTL_S
  return {
    'sub number': hs256(secret, { sub: 12_345, exp }),
    'alg none': `${encodePart({ alg: 'none', typ: 'JWT' })}.${encodePart({ sub: userId, exp })}.`,
    expired: await signToken(secret, userId, -EXPIRED_FOR_S),
  }
}

export const goodToken = (secret: string, userId: string) => signToken(secret, userId, TOKEN_TTL_S)

/** A market open for bets, with one of its selections and that selection's price. */
export interface OpenMarket {
  readonly marketId: string
  readonly selectionId: string
  readonly odds: number
}

/**
 * The game as one subscribed socket sees it: snapshots and deltas applied, a resubscription after a
 * gap or while the gateway does not hold the game yet.
 */
export interface MarketWatch {
  take(frame: ServerFrame): void
  /** A random open market and a random selection of it, or (`shortest`) its shortest-priced one. */
  pick(prng: Prng, shortest?: boolean): OpenMarket | null
  stop(): void
}

export function watchMarkets(gameId: string, send: (frame: object) => boolean): MarketWatch {
  let view: GameView | null = null
  let epoch = ''
  let seq = 0
  let retry: NodeJS.Timeout | undefined
  const subscribe = () => send({ type: 'subscribe', ref: WATCH_REF, gameId })
  return {
    take(frame) {
      if (frame.type === 'hello') subscribe()
      else if (frame.type === 'snapshot') {
        view = frame.view
        epoch = frame.epoch
        seq = frame.seq
      } else if (frame.type === 'delta') {
        if (view === null || frame.epoch !== epoch || frame.seq !== seq + 1) subscribe()
        else {
          view = applyDelta(view, frame)
          seq = frame.seq
        }
      } else if (frame.type === 'error' && frame.ref === WATCH_REF) {
        clearTimeout(retry)
        retry = setTimeout(subscribe, RESUBSCRIBE_MS)
      }
    },
    pick(prng, shortest = false) {
      const open = (view?.markets ?? []).filter(
        (market) => market.status === 'open' && market.selections.every((s) => market.prices[s.id]),
      )
      if (open.length === 0) return null
      const market = prng.pick(open)
      const prices = market.selections.map((s) => ({
        selectionId: s.id,
        odds: market.prices[s.id] as number,
      }))
      const chosen = shortest ? prices.reduce((a, b) => (b.odds < a.odds ? b : a)) : prng.pick(prices)
      return { marketId: market.marketId, ...chosen }
    },
    stop: () => clearTimeout(retry),
  }
}
