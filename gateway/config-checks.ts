/**
 * What the option parser cannot see one option at a time: the gateway's options that are wrong
 * together. Exactly one way of checking tokens must be set, an HS256 secret must be long enough, and
 * a gateway others can reach must not sign with a secret the world has read: the compose file once
 * fell back on one, and anyone with the repository could have signed a token for any user.
 */

import { BlockList, isIP } from 'node:net'
import { HS256_SECRET_BYTES_MIN } from './auth.ts'
import { type GatewayConfig, options } from './options.ts'

/** Secrets this project has published as examples. */
export const PLACEHOLDER_SECRETS: readonly string[] = ['change-me-to-a-secret-of-32-bytes-or-more']
/** A secret that says it is to be replaced is one nobody replaced. */
const PLACEHOLDER_PATTERN = /change[-_. ]?me|placeholder/i

const LOOPBACK = new BlockList()
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4')
LOOPBACK.addAddress('::1', 'ipv6')

/** Whether the gateway listens only where this machine alone can reach it. */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, '$1')
  if (bare.toLowerCase() === 'localhost') return true
  const family = isIP(bare)
  return family !== 0 && LOOPBACK.check(bare, family === 4 ? 'ipv4' : 'ipv6')
}

export const isPlaceholderSecret = (secret: string) =>
  PLACEHOLDER_SECRETS.includes(secret) || PLACEHOLDER_PATTERN.test(secret)

const label = (name: 'jwtSecret' | 'jwksUrl') => `${name} (${options[name].flag}, ${options[name].env})`

/** One sentence per problem, as a ConfigError lists them; none when the options go together. */
export function gatewayConfigProblems(
  config: Pick<GatewayConfig, 'host' | 'jwtSecret' | 'jwksUrl'>,
): string[] {
  const { host, jwtSecret, jwksUrl } = config
  if ((jwtSecret === '') === (jwksUrl === ''))
    return [`${label('jwtSecret')} and ${label('jwksUrl')}: set exactly one`]
  if (jwtSecret === '') return []
  if (Buffer.byteLength(jwtSecret) < HS256_SECRET_BYTES_MIN)
    return [
      `${label('jwtSecret')}: at least ${HS256_SECRET_BYTES_MIN} bytes, got ${Buffer.byteLength(jwtSecret)}`,
    ]
  if (isPlaceholderSecret(jwtSecret) && !isLoopbackHost(host))
    return [
      `${label('jwtSecret')}: a published placeholder, on a gateway listening on ${host}, beyond loopback: set a random secret of ${HS256_SECRET_BYTES_MIN} bytes or more (openssl rand -hex 32)`,
    ]
  return []
}

/** The hedge must come before the client is answered, and that before the placement gives up. */
export function hedgeProblems(
  config: Pick<GatewayConfig, 'hedgeAfterMs' | 'answerWithinMs' | 'placeTimeoutMs'>,
): string[] {
  const named = (key: 'hedgeAfterMs' | 'answerWithinMs' | 'placeTimeoutMs') =>
    `${key} (${options[key].flag}) ${config[key]}`
  const problems: string[] = []
  if (config.hedgeAfterMs >= config.answerWithinMs)
    problems.push(`${named('hedgeAfterMs')} must be below ${named('answerWithinMs')}`)
  if (config.answerWithinMs > config.placeTimeoutMs)
    problems.push(`${named('answerWithinMs')} must be at most ${named('placeTimeoutMs')}`)
  return problems
}
