// Proves the ops endpoints of nodes/fabric/ops-server.ts: /healthz, /readyz in both states,
// /metrics with custom and default metrics, a JSON 404, the bounds, debug-level request logging,
// a real listen on a free port, and the logger and registry factories every process uses.

import { spawn } from 'node:child_process'
import { Writable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { Counter } from 'prom-client'
import t from 'tap'
import {
  buildOpsServer,
  createLogger,
  createMetricsRegistry,
  OPS_BODY_BYTES_MAX,
  OPS_CONNECTION_TIMEOUT_MS,
  OPS_HANDLER_TIMEOUT_MS,
  OPS_HEADER_BYTES_MAX,
  OPS_HEADERS_TIMEOUT_MS,
  OPS_KEEP_ALIVE_TIMEOUT_MS,
  OPS_REQUEST_TIMEOUT_MS,
  type OpsServerOptions,
  type Readiness,
  startOpsServer,
} from '../../../nodes/fabric/ops-server.ts'

const silent = pino({ level: 'silent' })
const READY: Readiness = { ready: true, reasons: [] }

function options(overrides: Partial<OpsServerOptions> = {}): OpsServerOptions {
  return { logger: silent, registry: createMetricsRegistry('test'), readiness: () => READY, ...overrides }
}

t.test('/healthz answers ok with the uptime and the static info', async (t) => {
  // An injected request sees status ok, a plausible uptime and the info fields, uncached.
  const app = buildOpsServer(options({ info: { node: 'trader-1', version: '0.1.0' } }))
  t.teardown(() => app.close())
  const response = await app.inject('/healthz')
  t.equal(response.statusCode, 200)
  t.equal(response.headers['cache-control'], 'no-store')
  const body = response.json()
  t.match(body, { status: 'ok', uptimeMs: Number, node: 'trader-1', version: '0.1.0' })
  t.ok(body.uptimeMs > 0 && body.uptimeMs <= process.uptime() * 1000 + 1)
})

t.test('/readyz follows the readiness check', async (t) => {
  // The same server answers 200 while the check says ready and 503 with the reasons once it does
  // not; a check that throws answers 503 with its message instead of a 500.
  let readiness: Readiness = READY
  let throws = false
  const app = buildOpsServer(
    options({
      readiness: () => {
        if (throws) throw new Error('replica store closed')
        return readiness
      },
    }),
  )
  t.teardown(() => app.close())
  const ready = await app.inject('/readyz')
  t.equal(ready.statusCode, 200)
  t.same(ready.json(), { ready: true })
  readiness = { ready: false, reasons: ['nats disconnected', 'replicas catching up'] }
  const notReady = await app.inject('/readyz')
  t.equal(notReady.statusCode, 503)
  t.same(notReady.json(), { ready: false, reasons: ['nats disconnected', 'replicas catching up'] })
  throws = true
  const broken = await app.inject('/readyz')
  t.equal(broken.statusCode, 503)
  t.same(broken.json(), { ready: false, reasons: ['readiness check failed: replica store closed'] })
})

t.test('/metrics exposes custom and default metrics in the Prometheus format', async (t) => {
  // A counter registered on the process registry shows with its value, next to the prefixed
  // default Node metrics, under prom-client's content type.
  const registry = createMetricsRegistry('trader')
  const bets = new Counter({ name: 'trader_bets_total', help: 'Bets judged', registers: [registry] })
  bets.inc(3)
  const app = buildOpsServer(options({ registry }))
  t.teardown(() => app.close())
  const response = await app.inject('/metrics')
  t.equal(response.statusCode, 200)
  t.equal(response.headers['content-type'], registry.contentType)
  t.match(response.body, '# TYPE trader_bets_total counter\ntrader_bets_total 3\n')
  t.match(response.body, /^trader_process_cpu_user_seconds_total \d/m)
  t.match(response.body, /^trader_nodejs_eventloop_lag_seconds \d/m)
})

t.test('other paths and methods get a JSON 404', async (t) => {
  // Unknown paths and a POST to a GET-only endpoint both answer 404 in fastify's error shape.
  const app = buildOpsServer(options())
  t.teardown(() => app.close())
  for (const request of [
    { method: 'GET', url: '/' },
    { method: 'POST', url: '/healthz' },
  ] as const) {
    const response = await app.inject(request)
    t.equal(response.statusCode, 404)
    t.match(response.headers['content-type'], /^application\/json/)
    t.match(response.json(), { statusCode: 404, error: 'Not Found', message: /no ops endpoint/ })
  }
})

t.test('the server is bounded', async (t) => {
  // The body limit, timeouts and header limit reach fastify and the Node server underneath, and a
  // body over 1 KiB is refused with 413 before any handler sees it.
  const app = buildOpsServer(options())
  t.teardown(() => app.close())
  t.match(app.initialConfig, {
    bodyLimit: 1024,
    connectionTimeout: OPS_CONNECTION_TIMEOUT_MS,
    requestTimeout: OPS_REQUEST_TIMEOUT_MS,
    keepAliveTimeout: OPS_KEEP_ALIVE_TIMEOUT_MS,
    handlerTimeout: OPS_HANDLER_TIMEOUT_MS,
  })
  t.equal(app.server.timeout, OPS_CONNECTION_TIMEOUT_MS)
  t.equal(app.server.requestTimeout, OPS_REQUEST_TIMEOUT_MS)
  t.equal(app.server.headersTimeout, OPS_HEADERS_TIMEOUT_MS)
  t.equal(Reflect.get(app.server, 'maxHeaderSize'), OPS_HEADER_BYTES_MAX)
  const payload = 'x'.repeat(OPS_BODY_BYTES_MAX + 1)
  const response = await app.inject({
    method: 'POST',
    url: '/',
    payload,
    headers: { 'content-type': 'text/plain' },
  })
  t.equal(response.statusCode, 413)
})

t.test('info must not shadow the health fields', async (t) => {
  // status and uptimeMs belong to /healthz; an info that sets them is refused at build time.
  t.throws(() => buildOpsServer(options({ info: { status: 'degraded' } })), TypeError)
})

function capture(level: string) {
  const lines: Record<string, unknown>[] = []
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(JSON.parse(chunk.toString()))
      done()
    },
  })
  return { logger: pino({ level }, stream), lines }
}

t.test('requests are logged at debug level only', async (t) => {
  // With the logger at debug, a request logs one debug line and nothing at info; at info, a
  // request logs nothing at all, so frequent probes do not flood the logs.
  const debug = capture('debug')
  const app = buildOpsServer(options({ logger: debug.logger }))
  t.teardown(() => app.close())
  await app.inject('/healthz')
  t.match(debug.lines, [{ level: 20, msg: 'ops request', url: '/healthz', statusCode: 200 }])
  t.equal(debug.lines.length, 1)
  const info = capture('info')
  const quiet = buildOpsServer(options({ logger: info.logger }))
  t.teardown(() => quiet.close())
  await quiet.inject('/readyz')
  await quiet.inject('/nowhere')
  t.same(info.lines, [])
})

t.test('a real listen on port 0 answers real HTTP requests', async (t) => {
  // startOpsServer picks a free port, reports its URL, serves /healthz and /metrics over TCP and
  // closes cleanly, twice without harm.
  const handle = await startOpsServer({ ...options(), host: '127.0.0.1', port: 0 })
  t.teardown(() => handle.close())
  t.ok(handle.port > 0)
  t.equal(handle.url, `http://127.0.0.1:${handle.port}`)
  const health = await fetch(`${handle.url}/healthz`)
  t.equal(health.status, 200)
  t.match(await health.json(), { status: 'ok' })
  const metrics = await fetch(`${handle.url}/metrics`)
  t.match(metrics.headers.get('content-type'), /^text\/plain; version=0\.0\.4/)
  t.match(await metrics.text(), 'test_process_cpu_user_seconds_total')
  await handle.close()
  await handle.close()
  await t.rejects(fetch(`${handle.url}/healthz`))
})

t.test('createMetricsRegistry gives a fresh registry every call', async (t) => {
  // Two registries with the same prefix in one process both collect default metrics (the global
  // registry would refuse the second), a prefix without _ gets one, and a bad prefix throws.
  const first = createMetricsRegistry('dup')
  const second = createMetricsRegistry('dup_')
  t.not(first, second)
  t.match(await first.metrics(), /^dup_process_resident_memory_bytes /m)
  t.match(await second.metrics(), /^dup_process_resident_memory_bytes /m)
  t.throws(() => createMetricsRegistry('bad-prefix'), RangeError)
  t.throws(() => createMetricsRegistry(''), RangeError)
})

const LOG_FIXTURE = fileURLToPath(new URL('./fixtures/log-line.ts', import.meta.url))
const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

function runLogFixture(env: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', LOG_FIXTURE], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    let stdout = ''
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
    })
    child.on('error', reject)
    child.on('close', () => resolve(stdout))
  })
}

t.test('createLogger writes JSON lines with name and pid at the chosen level', async (t) => {
  // In a child process, the logger writes parseable JSON lines to stdout carrying name and pid;
  // LOG_LEVEL selects the level, info by default. In process, the argument beats the environment
  // and an unknown level throws.
  const byDefault = (await runLogFixture({})).trim().split('\n')
  t.equal(byDefault.length, 1)
  t.match(JSON.parse(byDefault[0]!), { level: 30, name: 'fixture-logger', pid: Number, msg: 'info line' })
  const debug = (await runLogFixture({ LOG_LEVEL: 'debug' })).trim().split('\n')
  t.match(
    debug.map((line) => JSON.parse(line)),
    [{ level: 20, msg: 'debug line' }, { level: 30 }],
  )

  const previous = process.env.LOG_LEVEL
  t.teardown(() => {
    if (previous === undefined) delete process.env.LOG_LEVEL
    else process.env.LOG_LEVEL = previous
  })
  process.env.LOG_LEVEL = 'warn'
  t.equal(createLogger('a').level, 'warn')
  t.equal(createLogger('a', 'error').level, 'error')
  process.env.LOG_LEVEL = ''
  t.equal(createLogger('a').level, 'info')
  t.throws(() => createLogger('a', 'verbose'), RangeError)
})
