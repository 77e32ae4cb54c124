/**
 * Who is on the other end: a JWT, checked on the WebSocket upgrade and on every HTTP request.
 * HS256 with a shared secret, or any asymmetric algorithm with keys from a JWKS URL (fetched and
 * cached by jose). `exp` is required; `sub` is the user id. Every claim is checked for its type
 * before any is read: a signed token is still input, and its issuer may have a bug. And where the
 * request comes from: a
 * browser always sends `Origin` on a WebSocket upgrade, which must be on the allow-list, so a page
 * on another site cannot open a socket in the user's name (cross-site WebSocket hijacking).
 */

import { createRemoteJWKSet, errors, type JWTPayload, type JWTVerifyGetKey, jwtVerify, SignJWT } from 'jose'
import { ID_RULES, isUserId } from '../protocol/ids.ts'

/** Tokens longer than this are refused unread. */
export const TOKEN_BYTES_MAX = 4 * 1024
/** Clock skew tolerated on `exp` and `nbf`. */
export const TOKEN_CLOCK_TOLERANCE_S = 5

export type AuthFailure = 'UNAUTHORIZED' | 'TOKEN_EXPIRED'

export class AuthError extends Error {
  constructor(
    readonly code: AuthFailure,
    message: string,
  ) {
    super(message)
    this.name = 'AuthError'
  }
}

export interface Principal {
  readonly userId: string
  /** When the token expires (wall ms): the socket closes then. */
  readonly expiresAtMs: number
}

export interface AuthOptions {
  /** HS256 shared secret (at least 32 bytes); exactly one of this and `jwksUrl`. */
  readonly hs256Secret?: string
  readonly jwksUrl?: string
  readonly issuer?: string
  readonly audience?: string
}

export interface Authenticator {
  verify(token: string): Promise<Principal>
}

export const HS256_SECRET_BYTES_MIN = 32

export function createAuthenticator(options: AuthOptions): Authenticator {
  const { hs256Secret, jwksUrl } = options
  if ((hs256Secret === undefined) === (jwksUrl === undefined))
    throw new RangeError('configure exactly one of an HS256 secret and a JWKS URL')
  if (hs256Secret !== undefined && Buffer.byteLength(hs256Secret) < HS256_SECRET_BYTES_MIN)
    throw new RangeError(`an HS256 secret must be at least ${HS256_SECRET_BYTES_MIN} bytes`)
  const key: Uint8Array | JWTVerifyGetKey =
    hs256Secret !== undefined
      ? new TextEncoder().encode(hs256Secret)
      : createRemoteJWKSet(new URL(jwksUrl as string))
  const algorithms = hs256Secret !== undefined ? ['HS256'] : ['RS256', 'PS256', 'ES256', 'ES384', 'EdDSA']
  return {
    async verify(token) {
      if (token.length === 0) throw new AuthError('UNAUTHORIZED', 'no token')
      if (token.length > TOKEN_BYTES_MAX) throw new AuthError('UNAUTHORIZED', 'the token is too long')
      try {
        const { payload } = await jwtVerify(token, key as JWTVerifyGetKey, {
          algorithms,
          requiredClaims: ['exp', 'sub'],
          clockTolerance: TOKEN_CLOCK_TOLERANCE_S,
          ...(options.issuer ? { issuer: options.issuer } : {}),
          ...(options.audience ? { audience: options.audience } : {}),
        })
        return principalOf(payload)
      } catch (error) {
        if (error instanceof AuthError) throw error
        if (error instanceof errors.JWTExpired) throw new AuthError('TOKEN_EXPIRED', 'the token has expired')
        const reason = error instanceof Error ? error.message : String(error)
        throw new AuthError('UNAUTHORIZED', `invalid token: ${reason}`)
      }
    },
  }
}

/** The principal a verified token names, once every claim it holds has its type. */
export function principalOf(payload: JWTPayload): Principal {
  const problem = claimsProblem(payload)
  if (problem !== null) throw new AuthError('UNAUTHORIZED', problem)
  return { userId: payload.sub as string, expiresAtMs: (payload.exp as number) * 1000 }
}

/** Claims a token may leave out, and the type each must have when present. */
const OPTIONAL_TIMES = ['iat', 'nbf'] as const
const OPTIONAL_TEXTS = ['iss', 'jti'] as const

/** What is wrong with a claims set's types, or null: `sub` a user id, times finite, texts strings. */
function claimsProblem(payload: JWTPayload): string | null {
  if (!isUserId(payload.sub)) return `sub must be a user id of ${ID_RULES.userId}`
  if (!Number.isFinite(payload.exp)) return 'exp must be a finite number of seconds'
  for (const claim of OPTIONAL_TIMES)
    if (payload[claim] !== undefined && !Number.isFinite(payload[claim]))
      return `${claim} must be a finite number of seconds`
  for (const claim of OPTIONAL_TEXTS)
    if (payload[claim] !== undefined && typeof payload[claim] !== 'string') return `${claim} must be a string`
  const { aud } = payload
  if (aud !== undefined && !(Array.isArray(aud) ? aud : [aud]).every((one) => typeof one === 'string'))
    return 'aud must be a string or an array of strings'
  return null
}

/** An HS256 token for a user: the demo login, tests and benchmarks. */
export async function signToken(secret: string, userId: string, ttlSeconds: number): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(userId)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
    .sign(new TextEncoder().encode(secret))
}

/**
 * The origin rule: a request with an `Origin` header is allowed only if that origin is the
 * gateway's own (the public origin its page is served from, as configured) or on the list (`*`
 * allows any, for development). Nothing of the request itself says what the gateway's own origin
 * is: its Host header is the client's to write, and DNS rebinding lets a page on another site send
 * one that matches its own Origin. A request without `Origin` is not a browser's WebSocket
 * (browsers always send it), so it cannot be a hijacked session; it is allowed unless
 * `allowMissingOrigin` is off.
 */
export function originAllowed(
  origin: string | undefined,
  allowList: readonly string[],
  allowMissingOrigin: boolean,
  publicOrigin: string | undefined,
): boolean {
  if (origin === undefined || origin === '') return allowMissingOrigin
  return origin === publicOrigin || allowList.includes('*') || allowList.includes(origin)
}

/** The token of a request: `Authorization: Bearer ...`, else the `access_token` query parameter. */
export function tokenOf(headers: Record<string, string | string[] | undefined>, query: unknown): string {
  const header = headers.authorization
  if (typeof header === 'string' && header.startsWith('Bearer ')) return header.slice('Bearer '.length).trim()
  const fromQuery = (query as { access_token?: unknown } | undefined)?.access_token
  return typeof fromQuery === 'string' ? fromQuery : ''
}
