/** The gateway process's options (beside the common ones in nodes/fabric/node-main.ts). */

import { defineOptions, type OptionsValue } from '../nodes/fabric/config.ts'
import { DEFAULT_GATEWAY_LIMITS as D, type GatewayLimits } from './limits.ts'

/** A web origin: scheme, host and perhaps a port; no path. */
const ORIGIN_PATTERN = /https?:\/\/(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?/

/** An integer limit: env `GATEWAY_<NAME>`, flag `--<name>`, default from DEFAULT_GATEWAY_LIMITS. */
const limit = (name: string, value: number, doc: string, min: number, max: number) =>
  ({
    type: 'integer',
    default: value,
    min,
    max,
    env: `GATEWAY_${name.toUpperCase().replaceAll('-', '_')}`,
    flag: `--${name}`,
    doc,
  }) as const

export const options = defineOptions({
  host: {
    type: 'string',
    default: '127.0.0.1',
    env: 'GATEWAY_HOST',
    flag: '--host',
    doc: 'address the page, the HTTP API and the WebSocket listen on',
  },
  port: {
    type: 'integer',
    default: 8080,
    min: 0,
    max: 65_535,
    env: 'GATEWAY_PORT',
    flag: '--port',
    doc: 'port of the page, the HTTP API and the WebSocket (0: any free port)',
  },
  jwtSecret: {
    type: 'string',
    default: '',
    env: 'GATEWAY_JWT_SECRET',
    flag: '--jwt-secret',
    doc: 'HS256 secret of client tokens, at least 32 bytes (set this or --jwks-url); a published placeholder is refused unless --host is loopback',
  },
  jwksUrl: {
    type: 'string',
    default: '',
    env: 'GATEWAY_JWKS_URL',
    flag: '--jwks-url',
    doc: 'URL of the JWKS whose keys sign client tokens (set this or --jwt-secret)',
  },
  jwtIssuer: {
    type: 'string',
    default: '',
    env: 'GATEWAY_JWT_ISSUER',
    flag: '--jwt-issuer',
    doc: 'required `iss` of tokens (empty: any)',
  },
  jwtAudience: {
    type: 'string',
    default: '',
    env: 'GATEWAY_JWT_AUDIENCE',
    flag: '--jwt-audience',
    doc: 'required `aud` of tokens (empty: any)',
  },
  origins: {
    type: 'list',
    default: [],
    env: 'GATEWAY_ORIGINS',
    flag: '--origins',
    doc: 'origins of other sites’ pages allowed to open sockets, e.g. https://bet.example (* allows any)',
  },
  publicOrigin: {
    type: 'string',
    pattern: ORIGIN_PATTERN,
    env: 'GATEWAY_PUBLIC_ORIGIN',
    flag: '--public-origin',
    doc: 'the origin browsers load the gateway’s own page from, e.g. https://bet.example or http://127.0.0.1:8080: its sockets are allowed (unset: only --origins are)',
  },
  allowMissingOrigin: {
    type: 'boolean',
    default: true,
    env: 'GATEWAY_ALLOW_MISSING_ORIGIN',
    flag: '--allow-missing-origin',
    doc: 'admit upgrades without an Origin header (not browsers: they always send one)',
  },
  workers: limit(
    'workers',
    1,
    'gateway processes sharing the port (node:cluster), to use every core; each holds its own replica, and the per-user limits hold per process',
    1,
    64,
  ),
  demoLogin: {
    type: 'boolean',
    default: false,
    env: 'GATEWAY_DEMO_LOGIN',
    flag: '--demo-login',
    doc: 'serve POST /v1/demo/login, which signs a token for any user id (development only)',
  },
  demoTokenTtlS: limit('demo-token-ttl-s', 3_600, 'lifetime of demo tokens, seconds', 10, 86_400),
  frameBytesMax: limit(
    'frame-bytes-max',
    D.frameBytesMax,
    'largest frame read; larger ones get FRAME_TOO_LARGE',
    256,
    1_048_576,
  ),
  frameBytesHardMax: limit(
    'frame-bytes-hard-max',
    D.frameBytesHardMax,
    'frames past this close the socket (1009)',
    1_024,
    16_777_216,
  ),
  messagesPerSecond: limit(
    'messages-per-second',
    D.messagesPerSecond,
    'frames per second per connection',
    1,
    100_000,
  ),
  messagesBurst: limit('messages-burst', D.messagesBurst, 'burst of frames per connection', 1, 100_000),
  userMessagesPerSecond: limit(
    'user-messages-per-second',
    D.userMessagesPerSecond,
    'frames per second per user, over their connections',
    1,
    100_000,
  ),
  userMessagesBurst: limit(
    'user-messages-burst',
    D.userMessagesBurst,
    'burst of frames per user',
    1,
    100_000,
  ),
  userBucketsMax: limit(
    'user-buckets-max',
    D.userBucketsMax,
    'users whose rate buckets are kept after their sockets close, until refilled (past this, refilled ones go first, then the least recently used)',
    1,
    10_000_000,
  ),
  userUpgradesPerSecond: limit(
    'user-upgrades-per-second',
    D.userUpgradesPerSecond,
    'connection attempts per second per user; past it an attempt is closed (4030)',
    1,
    100_000,
  ),
  userUpgradesBurst: limit(
    'user-upgrades-burst',
    D.userUpgradesBurst,
    'burst of connection attempts per user',
    1,
    100_000,
  ),
  ipUpgradesPerSecond: limit(
    'ip-upgrades-per-second',
    D.ipUpgradesPerSecond,
    'connection attempts per second per client address (an IPv6 /64), counted before the token is checked; past it an attempt is closed (4030)',
    1,
    1_000_000,
  ),
  ipUpgradesBurst: limit(
    'ip-upgrades-burst',
    D.ipUpgradesBurst,
    'burst of connection attempts per client address',
    1,
    1_000_000,
  ),
  ipBucketsMax: limit(
    'ip-buckets-max',
    D.ipBucketsMax,
    'client addresses whose upgrade buckets are kept until refilled (past this, refilled ones go first, then the least recently used)',
    1,
    10_000_000,
  ),
  floodCloseAfter: limit(
    'flood-close-after',
    D.floodCloseAfter,
    'rate-limited frames in a row that close the socket (4029)',
    1,
    1_000_000,
  ),
  subscriptionsPerConnectionMax: limit(
    'subscriptions-per-connection-max',
    D.subscriptionsPerConnectionMax,
    'games one connection may follow',
    1,
    1_000,
  ),
  connectionsPerUserMax: limit(
    'connections-per-user-max',
    D.connectionsPerUserMax,
    'sockets one user may hold',
    1,
    1_000,
  ),
  connectionsMax: limit('connections-max', D.connectionsMax, 'sockets in total', 1, 1_000_000),
  conflateBytes: limit(
    'conflate-bytes',
    D.conflateBytes,
    'send buffer past which a client gets conflated snapshots instead of deltas',
    1_024,
    1_073_741_824,
  ),
  closeBytes: limit(
    'close-bytes',
    D.closeBytes,
    'send buffer past which a client is closed (4008)',
    1_024,
    1_073_741_824,
  ),
  laggingMsMax: limit(
    'lagging-ms-max',
    D.laggingMsMax,
    'how long a client may lag before it is closed (4008)',
    100,
    3_600_000,
  ),
  backpressureCheckMs: limit(
    'backpressure-check-ms',
    D.backpressureCheckMs,
    'how often lagging clients are checked',
    5,
    10_000,
  ),
  closedMarketsShown: limit(
    'closed-markets-shown',
    D.closedMarketsShown,
    'recently closed markets kept in a game view',
    0,
    100,
  ),
  resumeDeltasMax: limit(
    'resume-deltas-max',
    D.resumeDeltasMax,
    'deltas kept per game for resuming clients',
    0,
    1_000_000,
  ),
  placementsInFlightMax: limit(
    'placements-in-flight-max',
    D.placementsInFlightMax,
    'bets awaiting an API node, over all users',
    1,
    1_000_000,
  ),
  placeTimeoutMs: limit(
    'place-timeout-ms',
    D.placeTimeoutMs,
    'how long a placement waits for an API node',
    100,
    60_000,
  ),
  hedgeAfterMs: limit(
    'hedge-after-ms',
    D.hedgeAfterMs,
    'the most a placement waits for one API node before the same bet also goes to another (the delay is twice the p99 of recent answers, at least 20 ms, at most this); below answer-within-ms',
    10,
    60_000,
  ),
  answerWithinMs: limit(
    'answer-within-ms',
    D.answerWithinMs,
    'the longest a placement waits for its first answer: past it the client is told BET_UNAVAILABLE (the bet may stand; its statuses still come); above hedge-after-ms, at most place-timeout-ms',
    100,
    60_000,
  ),
  trackedBetsPerUserMax: limit(
    'tracked-bets-per-user-max',
    D.trackedBetsPerUserMax,
    'bets per user whose statuses are ordered and de-duplicated',
    1,
    1_000_000,
  ),
  statusRecoverAfterMs: limit(
    'status-recover-after-ms',
    D.statusRecoverAfterMs,
    'how long a bet waits for its next status before the gateway asks an API node for it (for a final, again as often twelve times before the waits double; for a settlement, twice as long each time; up to a minute)',
    100,
    600_000,
  ),
  lookupsInFlightMax: limit(
    'lookups-in-flight-max',
    D.lookupsInFlightMax,
    'status lookups awaiting an API node at once (one per user)',
    1,
    10_000,
  ),
  queryTimeoutMs: limit(
    'query-timeout-ms',
    D.queryTimeoutMs,
    'how long an HTTP query waits for a settlement node',
    100,
    60_000,
  ),
})

export type GatewayConfig = OptionsValue<typeof options>

export function limitsOf(config: GatewayConfig): GatewayLimits {
  const limits: Record<string, number> = {}
  for (const key of Object.keys(D) as (keyof GatewayLimits)[]) limits[key] = config[key]
  return limits as unknown as GatewayLimits
}
