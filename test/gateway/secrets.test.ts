// Proves that a gateway others can reach never runs on a published or short secret: the process
// itself stops at start with the documented configuration error (exit code 1, one line per
// problem) before it connects anywhere, and docker compose, which binds it to 0.0.0.0, has no
// secret to fall back on. A loopback gateway (a developer's machine) may still use a placeholder.

import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import t from 'tap'
import { parse } from 'yaml'
import { gatewayConfigProblems, PLACEHOLDER_SECRETS } from '../../gateway/config-checks.ts'

const PLACEHOLDER = 'change-me-to-a-secret-of-32-bytes-or-more'
const STRONG = 'f'.repeat(64)
/** How long the process may take to load and refuse; it connects nowhere first. */
const START_TIMEOUT_MS = 60_000

/** Start gateway/main.ts with this environment; it must stop by itself. */
function startGateway(env: Record<string, string>) {
  return spawnSync(process.execPath, ['--import', 'tsx', 'gateway/main.ts'], {
    encoding: 'utf8',
    timeout: START_TIMEOUT_MS,
    env: {
      ...process.env,
      FABRIC_NODE_ID: 'gw-secrets',
      // Nothing listens there: a gateway that got past its configuration would fail otherwise.
      FABRIC_NATS_SERVERS: 'nats://127.0.0.1:1',
      ...env,
    },
  })
}

t.test('a gateway bound beyond loopback refuses a published or short secret at start', async (t) => {
  const placeholder = startGateway({ GATEWAY_HOST: '0.0.0.0', GATEWAY_JWT_SECRET: PLACEHOLDER })
  t.equal(placeholder.status, 1, 'exit code 1: bad configuration')
  t.match(placeholder.stderr, /^gateway: invalid configuration:\n {2}jwtSecret .*placeholder/m)
  const short = startGateway({ GATEWAY_HOST: '0.0.0.0', GATEWAY_JWT_SECRET: 'short-secret' })
  t.equal(short.status, 1)
  t.match(short.stderr, /invalid configuration:\n {2}jwtSecret .*at least 32 bytes/)
})

t.test('the checks behind it', async (t) => {
  const exposed = { host: '0.0.0.0', jwksUrl: '' }
  t.same(gatewayConfigProblems({ ...exposed, jwtSecret: STRONG }), [], 'a strong secret anywhere')
  t.ok(PLACEHOLDER_SECRETS.includes(PLACEHOLDER), 'the secret compose once fell back on is known')
  for (const host of ['0.0.0.0', '::', '10.0.0.5', 'gateway.internal'])
    t.match(
      gatewayConfigProblems({ host, jwksUrl: '', jwtSecret: PLACEHOLDER }),
      [/placeholder/],
      `a placeholder on ${host}`,
    )
  t.match(
    gatewayConfigProblems({ ...exposed, jwtSecret: 'Change_Me-please-to-something-of-32-bytes' }),
    [/placeholder/],
    'anything that asks to be changed',
  )
  for (const host of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost'])
    t.same(gatewayConfigProblems({ host, jwksUrl: '', jwtSecret: PLACEHOLDER }), [], `loopback ${host}`)
  t.match(gatewayConfigProblems({ host: '127.0.0.1', jwksUrl: '', jwtSecret: 'short' }), [/32 bytes/])
  t.match(gatewayConfigProblems({ host: '127.0.0.1', jwksUrl: '', jwtSecret: '' }), [/exactly one/])
  t.match(
    gatewayConfigProblems({ host: '127.0.0.1', jwksUrl: 'https://id.example/jwks', jwtSecret: STRONG }),
    [/exactly one/],
  )
  t.same(gatewayConfigProblems({ ...exposed, jwksUrl: 'https://id.example/jwks', jwtSecret: '' }), [])
})

t.test('docker compose will not start the gateway without a secret of its own', async (t) => {
  const compose = parse(readFileSync('docker-compose.yml', 'utf8'), { merge: true }) as {
    services: Record<string, { environment?: Record<string, string> }>
  }
  const secret = compose.services['gateway-1']?.environment?.GATEWAY_JWT_SECRET ?? ''
  t.match(secret, /^\$\{GATEWAY_JWT_SECRET:\?[^}]+\}$/, 'required (compose’s :? form), with no default')
  t.notOk(
    PLACEHOLDER_SECRETS.some((placeholder) =>
      readFileSync('docker-compose.yml', 'utf8').includes(placeholder),
    ),
    'and no placeholder left in the file',
  )
})
