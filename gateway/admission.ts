/**
 * A socket is admitted on its upgrade request: origin allow-list, then the JWT, then the connection
 * limits, each failure closing with its documented code. The answer is decided before the upgrade
 * and acted on after it, because a close code can only be sent over an open socket.
 */

import type { FastifyRequest } from 'fastify'
import { AuthError, type Authenticator, originAllowed, type Principal, tokenOf } from './auth.ts'
import type { GatewayLimits } from './limits.ts'
import { CLOSE } from './protocol.ts'
import type { SessionTable } from './sessions.ts'

export interface Admission {
  readonly principal?: Principal
  readonly close?: { readonly code: number; readonly reason: string }
}

export interface AdmissionContext {
  readonly auth: Authenticator
  readonly origins: readonly string[]
  readonly allowMissingOrigin: boolean
  readonly limits: Pick<GatewayLimits, 'connectionsMax' | 'connectionsPerUserMax'>
  readonly sessions: Pick<SessionTable, 'all' | 'connectionsOf'>
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
  const { limits, sessions } = context
  const own = `${request.protocol}://${request.headers.host ?? ''}`
  if (!originAllowed(request.headers.origin, context.origins, context.allowMissingOrigin, own))
    return { close: { code: CLOSE.ORIGIN_NOT_ALLOWED, reason: 'origin not allowed' } }
  const principal = await authenticate(context.auth, request)
  if (principal instanceof AuthError)
    return {
      close: {
        code: principal.code === 'TOKEN_EXPIRED' ? CLOSE.TOKEN_EXPIRED : CLOSE.UNAUTHORIZED,
        reason: principal.message.slice(0, 100),
      },
    }
  if (sessions.all.size >= limits.connectionsMax)
    return { close: { code: CLOSE.GATEWAY_FULL, reason: 'the gateway is full; try another' } }
  if (sessions.connectionsOf(principal.userId) >= limits.connectionsPerUserMax)
    return {
      close: {
        code: CLOSE.TOO_MANY_CONNECTIONS_FOR_USER,
        reason: `at most ${limits.connectionsPerUserMax} connections per user`,
      },
    }
  return { principal }
}
