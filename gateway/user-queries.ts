/**
 * The HTTP API of a user's own data, as a fastify plugin: `/v1/users/:userId/bets` and `.../balance`
 * are asked of a settlement node (in a super-cluster, one of the user's home region), and
 * `/v1/games` lists the games this gateway's replica knows, `/v1/games/summary` the same games with
 * their score, clock and live markets. A user reads only their own: another user's id is 403, never
 * a leak.
 */

import type { NatsConnection } from '@nats-io/transport-node'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { ReplicaSync } from '../nodes/fabric/replica-sync.ts'
import { BALANCE_BASE, HISTORY_BASE, type UserRouting } from '../protocol/subjects.ts'
import { authenticate } from './admission.ts'
import { AuthError, type Authenticator, type Principal } from './auth.ts'
import { readGameView } from './game-view.ts'
import type { GatewayLimits } from './limits.ts'
import { type ClockView, PROTOCOL_VERSION } from './protocol.ts'

/**
 * How long one computation of `/v1/games/summary` is served. A gateway holds up to
 * GAMES_PER_NODE_MAX games (nodes/fabric/game-replicas.ts) and the summary reads the view of each,
 * so it is computed at most once per this period, whatever the request rate; a page refreshing its
 * list every 2 s still sees each change by its next refresh.
 */
export const GAMES_SUMMARY_CACHE_MS = 1_000

export interface UserQueriesOptions {
  readonly nc: NatsConnection
  readonly auth: Authenticator
  readonly limits: Pick<GatewayLimits, 'queryTimeoutMs'>
  readonly replicas: Pick<ReplicaSync, 'games' | 'replica'>
  readonly route: UserRouting
  /**
   * The clock of the summary's cache (tests inject one); default a monotonic one, so that a step
   * of the wall clock neither pins the cache nor expires it early.
   */
  readonly now?: () => number
}

/** One game as `/v1/games/summary` lists it. */
export interface GameSummary {
  readonly gameId: string
  readonly score: Record<string, number>
  readonly clock: ClockView | null
  /** Markets not closed: open or suspended. */
  readonly liveMarkets: number
}

export const userQueries: FastifyPluginAsync<UserQueriesOptions> = async (app, options) => {
  for (const [path, base] of [
    ['bets', HISTORY_BASE],
    ['balance', BALANCE_BASE],
  ] as const) {
    app.get<{ Params: { userId: string } }>(
      `/v${PROTOCOL_VERSION}/users/:userId/${path}`,
      async (request, reply) => {
        const principal = await principalOf(options.auth, request, reply)
        if (principal === null) return reply
        if (request.params.userId !== principal.userId)
          return reply
            .code(403)
            .send({ error: { code: 'FORBIDDEN', message: 'a user reads only their own' } })
        return query(options, `${options.route(base, principal.userId)}.${principal.userId}`, reply)
      },
    )
  }
  app.get(`/v${PROTOCOL_VERSION}/games`, async () => ({
    data: [...options.replicas.games()].sort(naturalOrder),
  }))
  const summary = cachedSummary(options.replicas, options.now ?? (() => performance.now()))
  app.get(`/v${PROTOCOL_VERSION}/games/summary`, async (_request, reply) =>
    reply.type('application/json; charset=utf-8').send(summary()),
  )
}

const NATURAL = new Intl.Collator('en', { numeric: true })

/**
 * Game ids in natural order (`match-2` before `match-10`); ids the collator holds equal (`m-01`,
 * `m-1`) fall back to code point order, so the order is total and the same on every gateway.
 */
export function naturalOrder(a: string, b: string): number {
  return NATURAL.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0)
}

/** Every game the replicas know, summarized, in natural order of id. */
export function summarizeGames(replicas: Pick<ReplicaSync, 'games' | 'replica'>): GameSummary[] {
  const summaries: GameSummary[] = []
  for (const gameId of [...replicas.games()].sort(naturalOrder)) {
    const replica = replicas.replica(gameId)
    if (replica === undefined) continue
    const { score, clock, markets } = readGameView(gameId, replica.game, 0)
    const liveMarkets = markets.filter((market) => market.status !== 'closed').length
    summaries.push({ gameId, score, clock, liveMarkets })
  }
  return summaries
}

/**
 * The summary's response body, serialized once per GAMES_SUMMARY_CACHE_MS: every request in between
 * gets the same bytes. A clock that went backwards counts as expired.
 */
function cachedSummary(replicas: Pick<ReplicaSync, 'games' | 'replica'>, now: () => number): () => string {
  let cached: { atMs: number; body: string } | null = null
  return () => {
    const atMs = now()
    if (cached === null || atMs < cached.atMs || atMs - cached.atMs >= GAMES_SUMMARY_CACHE_MS)
      cached = { atMs, body: JSON.stringify({ data: summarizeGames(replicas) }) }
    return cached.body
  }
}

/** The user of an HTTP request, or a 401 already sent. */
async function principalOf(
  auth: Authenticator,
  request: FastifyRequest,
  reply: FastifyReply,
): Promise<Principal | null> {
  const principal = await authenticate(auth, request)
  if (principal instanceof AuthError) {
    await reply.code(401).send({ error: { code: principal.code, message: principal.message } })
    return null
  }
  return principal
}

/** A settlement node's answer: its data, its refusal as 400, or 503 when none answered in time. */
async function query(options: UserQueriesOptions, subject: string, reply: FastifyReply): Promise<unknown> {
  try {
    const answer = (await options.nc.request(subject, '', { timeout: options.limits.queryTimeoutMs })).json<{
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
