/**
 * The HTTP API of a user's own data, as a fastify plugin: `/v1/users/:userId/bets` and `.../balance`
 * are asked of a settlement node (in a super-cluster, one of the user's home region), and
 * `/v1/games` lists the games this gateway's replica knows. A user reads only their own: another
 * user's id is 403, never a leak.
 */

import type { NatsConnection } from '@nats-io/transport-node'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { ReplicaSync } from '../nodes/fabric/replica-sync.ts'
import { BALANCE_BASE, HISTORY_BASE, type UserRouting } from '../protocol/subjects.ts'
import { authenticate } from './admission.ts'
import { AuthError, type Authenticator, type Principal } from './auth.ts'
import type { GatewayLimits } from './limits.ts'
import { PROTOCOL_VERSION } from './protocol.ts'

export interface UserQueriesOptions {
  readonly nc: NatsConnection
  readonly auth: Authenticator
  readonly limits: Pick<GatewayLimits, 'queryTimeoutMs'>
  readonly replicas: Pick<ReplicaSync, 'games'>
  readonly route: UserRouting
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
  app.get(`/v${PROTOCOL_VERSION}/games`, async () => ({ data: options.replicas.games() }))
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
