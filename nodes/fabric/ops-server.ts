/**
 * The ops endpoints every process exposes, on their own port, apart from any public traffic:
 *
 * | endpoint       | answers                                                                  |
 * |----------------|--------------------------------------------------------------------------|
 * | `GET /healthz` | 200 `{ status: 'ok', uptimeMs, ...info }` for as long as the process runs |
 * | `GET /readyz`  | 200 `{ ready: true }`, or 503 `{ ready: false, reasons }`                 |
 * | `GET /metrics` | the prom-client registry in the Prometheus text format                   |
 * | `GET /debug/state` | what the node holds (nodes/fabric/node-state.ts), where the node has one; `?replicas-only=1` leaves the ledger out |
 *
 * Orchestrators and Prometheus poll these every few seconds, so requests are logged at debug level
 * only; failures still log at error level. Nothing here takes a body, so the body limit is tiny, and
 * every timeout is short: a stuck probe must not hold a socket.
 */

import type { AddressInfo } from 'node:net'
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  LogController,
  type RawReplyDefaultExpression,
  type RawRequestDefaultExpression,
  type RawServerDefault,
} from 'fastify'
import pino, { type Logger } from 'pino'
import { collectDefaultMetrics, Registry } from 'prom-client'

/** The ops endpoints take no body; a few hundred bytes of anything is already a mistake. */
export const OPS_BODY_BYTES_MAX = 1024
export const OPS_HEADER_BYTES_MAX = 8 * 1024
/** Idle sockets close after this; probes reconnect cheaply. */
export const OPS_CONNECTION_TIMEOUT_MS = 10_000
/** The whole request must arrive within this, its headers sooner. */
export const OPS_REQUEST_TIMEOUT_MS = 10_000
export const OPS_HEADERS_TIMEOUT_MS = 5_000
/** How often Node checks the two timeouts above; its default of 30 s would make them lax. */
export const OPS_TIMEOUT_CHECK_INTERVAL_MS = 1_000
export const OPS_KEEP_ALIVE_TIMEOUT_MS = 5_000
/** A handler (a slow metrics collection, say) that takes longer answers 503. */
export const OPS_HANDLER_TIMEOUT_MS = 5_000
export const DEFAULT_LOG_LEVEL = 'info'
export const LOG_LEVEL_ENV = 'LOG_LEVEL'

const LOG_LEVELS: ReadonlySet<string> = new Set([...Object.keys(pino.levels.values), 'silent'])
const METRIC_PREFIX_PATTERN = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
/** Keys of the /healthz body that `info` must not shadow. */
const HEALTH_KEYS: readonly string[] = ['status', 'uptimeMs']
const SERVER_ERROR_STATUS = 500

/** The fastify instance of the ops endpoints, logging through the process's pino logger. */
export type OpsServer = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  Logger
>

export interface Readiness {
  readonly ready: boolean
  /** Why the process is not ready, in words an operator can act on; ignored when ready. */
  readonly reasons: readonly string[]
}

/** What /debug/state is asked for. */
export interface StateOptions {
  /** Replica hashes and fences only: cheap enough to poll. */
  readonly replicasOnly: boolean
}

export interface OpsServerOptions {
  readonly logger: Logger
  readonly registry: Registry
  /** Called on every /readyz; must be cheap and must not block. */
  readonly readiness: () => Readiness
  /** Static facts merged into /healthz: version, node id, region. */
  readonly info?: Readonly<Record<string, unknown>>
  /** What the node holds, for checkers comparing nodes; /debug/state is 404 without it. */
  readonly state?: (options: StateOptions) => unknown
}

export interface OpsListenOptions extends OpsServerOptions {
  readonly host: string
  /** 0 picks a free port; the handle tells which. */
  readonly port: number
}

export interface OpsServerHandle {
  /** For callers on this host: a wildcard host is given as its loopback address. */
  readonly url: string
  readonly port: number
  /** Stops listening and closes idle connections; calling it again waits for the same close. */
  close(): Promise<void>
}

function checkReadiness(readiness: () => Readiness, logger: Logger): Readiness {
  try {
    const { ready, reasons } = readiness()
    return { ready, reasons }
  } catch (error) {
    // A throwing check is a bug, but the probe still needs an answer: not ready, and why.
    const message = error instanceof Error ? error.message : String(error)
    logger.debug({ err: error }, 'readiness check threw')
    return { ready: false, reasons: [`readiness check failed: ${message}`] }
  }
}

function assertInfo(info: Readonly<Record<string, unknown>>): void {
  const shadowed = Object.keys(info).filter((key) => HEALTH_KEYS.includes(key))
  if (shadowed.length > 0)
    throw new TypeError(`ops info must not set ${shadowed.join(', ')}: /healthz reports them`)
}

function addRoutes(app: OpsServer, options: OpsServerOptions): void {
  const { registry, readiness, info = {} } = options
  app.get('/healthz', async () => ({ status: 'ok', uptimeMs: Math.round(performance.now()), ...info }))
  app.get('/readyz', async (_request, reply) => {
    const { ready, reasons } = checkReadiness(readiness, options.logger)
    return ready ? { ready } : reply.code(503).send({ ready, reasons })
  })
  app.get('/metrics', async (_request, reply) => {
    const text = await registry.metrics()
    return reply.type(registry.contentType).send(text)
  })
  const { state } = options
  if (state !== undefined)
    app.get<{ Querystring: Record<string, string> }>('/debug/state', async (request) =>
      state({ replicasOnly: request.query['replicas-only'] === '1' }),
    )
  app.setNotFoundHandler(async (request, reply) => {
    const message = `no ops endpoint at ${request.method} ${request.url}; there are /healthz, /readyz and /metrics`
    return reply.code(404).send({ statusCode: 404, error: 'Not Found', message })
  })
}

function addLogging(app: OpsServer): void {
  app.addHook('onResponse', async (request, reply) => {
    const fields = { method: request.method, url: request.url, statusCode: reply.statusCode }
    request.log.debug({ ...fields, responseTimeMs: reply.elapsedTime }, 'ops request')
  })
  app.addHook('onError', async (request, _reply, error: FastifyError) => {
    const level = (error.statusCode ?? SERVER_ERROR_STATUS) >= SERVER_ERROR_STATUS ? 'error' : 'debug'
    request.log[level]({ err: error, method: request.method, url: request.url }, 'ops request failed')
  })
}

/** The ops server, routes registered, not listening: `inject()` it in tests, or listen. */
export function buildOpsServer(options: OpsServerOptions): OpsServer {
  assertInfo(options.info ?? {})
  const app = Fastify({
    loggerInstance: options.logger,
    // Fastify's own per-request lines are at info level; addLogging logs them at debug instead.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: OPS_BODY_BYTES_MAX,
    connectionTimeout: OPS_CONNECTION_TIMEOUT_MS,
    requestTimeout: OPS_REQUEST_TIMEOUT_MS,
    keepAliveTimeout: OPS_KEEP_ALIVE_TIMEOUT_MS,
    handlerTimeout: OPS_HANDLER_TIMEOUT_MS,
    http: {
      maxHeaderSize: OPS_HEADER_BYTES_MAX,
      headersTimeout: OPS_HEADERS_TIMEOUT_MS,
      connectionsCheckingInterval: OPS_TIMEOUT_CHECK_INTERVAL_MS,
    },
  })
  app.addHook('onRequest', async (_request, reply) => {
    // Probes must see the state now, never a cached answer.
    reply.header('cache-control', 'no-store')
  })
  addLogging(app)
  addRoutes(app, options)
  return app
}

function localUrl(address: AddressInfo): string {
  const wildcard = address.address === '0.0.0.0' || address.address === '::'
  const host = wildcard ? (address.family === 'IPv6' ? '::1' : '127.0.0.1') : address.address
  return `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`
}

/** Builds the ops server and listens; resolves once it accepts connections. */
export async function startOpsServer(options: OpsListenOptions): Promise<OpsServerHandle> {
  const { host, port, ...serverOptions } = options
  const app = buildOpsServer(serverOptions)
  try {
    // Exclusive: in a process cluster (the gateway's workers) each process keeps its own ops port
    // instead of sharing one handle through the primary, so each one's /metrics is reachable.
    await app.listen({ host, port, exclusive: true })
  } catch (error) {
    await app.close()
    throw error
  }
  const address = app.server.address() as AddressInfo
  let closing: Promise<void> | undefined
  const close = () => {
    closing ??= app.close().then(() => undefined)
    return closing
  }
  return { url: localUrl(address), port: address.port, close }
}

/**
 * A process's logger: JSON lines on stdout with `name`, `pid` and `hostname`. The level is the
 * argument, else the LOG_LEVEL environment variable, else info; an unknown level throws at start
 * rather than silently logging at the wrong one.
 */
export function createLogger(name: string, level?: string): Logger {
  // An empty LOG_LEVEL counts as unset, as every empty variable does in nodes/fabric/config.ts.
  const resolved = level ?? (process.env[LOG_LEVEL_ENV] || DEFAULT_LOG_LEVEL)
  if (!LOG_LEVELS.has(resolved))
    throw new RangeError(
      `log level must be one of ${[...LOG_LEVELS].join(', ')}; got ${JSON.stringify(resolved)}`,
    )
  return pino({ name, level: resolved })
}

/**
 * A fresh registry with the default Node metrics (event loop lag, heap, GC, handles) under the
 * prefix, `trader` becoming `trader_process_cpu_seconds_total`. Never the global registry: each
 * call registers the same names again, which the global one refuses, and tests build many.
 */
export function createMetricsRegistry(prefix: string): Registry {
  if (!METRIC_PREFIX_PATTERN.test(prefix))
    throw new RangeError(`metrics prefix must match ${METRIC_PREFIX_PATTERN}; got ${JSON.stringify(prefix)}`)
  const registry = new Registry()
  collectDefaultMetrics({ register: registry, prefix: prefix.endsWith('_') ? prefix : `${prefix}_` })
  return registry
}
