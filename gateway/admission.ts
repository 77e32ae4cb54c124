/**
 * A socket is admitted on its upgrade request: the client address's attempt rate first (nothing
 * else is read of a refused attempt, the JWT least of all), then the origin allow-list, the JWT, the
 * user's attempt rate and the connection limits, each failure closing with its documented code.
 * The answer is decided before the upgrade and acted on after it, because a close code can only be
 * sent over an open socket.
 */

import type { FastifyRequest } from 'fastify'
import { AuthError, type Authenticator, originAllowed, type Principal, tokenOf } from './auth.ts'
import type { GatewayLimits } from './limits.ts'
import { CLOSE } from './protocol.ts'
import type { SessionTable } from './sessions.ts'
import type { UpgradeLimits } from './upgrade-limits.ts'

export interface Admission {
  readonly principal?: Principal
  readonly close?: { readonly code: number; readonly reason: string }
}

export interface AdmissionContext {
  readonly auth: Authenticator
  readonly origins: readonly string[]
  /** The origin the gateway's page is served from, if configured: always allowed. */
  readonly publicOrigin: string | undefined
  readonly allowMissingOrigin: boolean
  readonly limits: Pick<GatewayLimits, 'connectionsMax' | 'connectionsPerUserMax'>
  readonly sessions: Pick<SessionTable, 'all' | 'connectionsOf'>
  readonly upgrades: UpgradeLimits
  /** The clock of the attempt rates. */
  readonly now: () => number
}

/** The token's principal, or why there is none; errors other than a bad token are thrown. */
export async function authenticate(
  auth: Authenticator,
  request: FastifyRequest,
): Promise<Principal | AuthError> {
  try {
    return await auth.verify(tokenOf(request.headers, request.query))
  } catch (error) {
    if (error instanceof AuthError) return error
    throw error
  }
}

export async function admit(context: AdmissionContext, request: FastifyRequest): Promise<Admission> {
  const addressWaitMs = context.upgrades.address(request.ip ?? '', context.now())
  if (addressWaitMs > 0) return tooManyUpgrades('from this address', addressWaitMs)
  const { origins, allowMissingOrigin, publicOrigin } = context
  if (!originAllowed(request.headers.origin, origins, allowMissingOrigin, publicOrigin))
    return refuse(CLOSE.ORIGIN_NOT_ALLOWED, 'origin not allowed')
  const principal = await authenticate(context.auth, request)
  if (principal instanceof AuthError) {
    const code = principal.code === 'TOKEN_EXPIRED' ? CLOSE.TOKEN_EXPIRED : CLOSE.UNAUTHORIZED
    return refuse(code, principal.message.slice(0, 100))
  }
  const userWaitMs = context.upgrades.user(principal.userId, context.now())
  if (userWaitMs > 0) return tooManyUpgrades('for this user', userWaitMs)
  return withinConnectionLimits(context, principal)
}

function withinConnectionLimits(context: AdmissionContext, principal: Principal): Admission {
  const { limits, sessions } = context
  if (sessions.all.size >= limits.connectionsMax)
    return refuse(CLOSE.GATEWAY_FULL, 'the gateway is full; try another')
  if (sessions.connectionsOf(principal.userId) >= limits.connectionsPerUserMax)
    return refuse(
      CLOSE.TOO_MANY_CONNECTIONS_FOR_USER,
      `at most ${limits.connectionsPerUserMax} connections per user`,
    )
  return { principal }
}

const refuse = (code: number, reason: string): Admission => ({ close: { code, reason } })

const tooManyUpgrades = (whose: string, waitMs: number): Admission =>
  refuse(CLOSE.TOO_MANY_UPGRADES, `too many connection attempts ${whose}; retry in ${waitMs} ms`)
