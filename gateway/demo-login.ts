/**
 * The demo login as a fastify plugin: `POST /v1/demo/login` hands out an HS256 token for any valid
 * user id, for `npm start` and the page. Off (404) unless the gateway is given a `DemoLogin`.
 */

import type { FastifyPluginAsync } from 'fastify'
import { ID_RULES, isUserId } from '../protocol/ids.ts'
import { signToken } from './auth.ts'
import { PROTOCOL_VERSION } from './protocol.ts'

/** What the demo login hands out: HS256 tokens for any user id, for `npm start` and the page. */
export interface DemoLogin {
  readonly secret: string
  readonly ttlSeconds: number
}

export interface DemoLoginOptions {
  readonly demoLogin: DemoLogin | undefined
}

export const demoLogin: FastifyPluginAsync<DemoLoginOptions> = async (app, options) => {
  app.post<{ Body: { userId?: unknown } }>(`/v${PROTOCOL_VERSION}/demo/login`, async (request, reply) => {
    const demo = options.demoLogin
    if (demo === undefined)
      return reply.code(404).send({ error: { code: 'NOT_FOUND', message: 'demo login is off' } })
    const userId = request.body?.userId
    if (!isUserId(userId))
      return reply.code(400).send({ error: { code: 'BAD_REQUEST', message: `userId: ${ID_RULES.userId}` } })
    return { token: await signToken(demo.secret, userId, demo.ttlSeconds), userId }
  })
}
