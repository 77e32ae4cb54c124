/**
 * The gateway process. `--help` lists options. With `--workers N` (N > 1) this process forks N
 * gateway processes that share the port (node:cluster hands each new connection to one of them) and
 * supervises them; a slow fan-out then spreads its socket writes over every core.
 */

import cluster from 'node:cluster'
import { ConfigError, loadConfigOrExit } from '../nodes/fabric/config.ts'
import { caughtUpReadiness, commonOptions, divergenceOf, runNode } from '../nodes/fabric/node-main.ts'
import { describeNode } from '../nodes/fabric/node-state.ts'
import { createLogger } from '../nodes/fabric/ops-server.ts'
import { createAuthenticator } from './auth.ts'
import { gatewayConfigProblems, hedgeProblems, isLoopbackHost, isPlaceholderSecret } from './config-checks.ts'
import { startGatewayNode } from './gateway-node.ts'
import { limitsOf, options } from './options.ts'

/** A worker that dies is replaced, at most this many times in all: a crash loop stops the gateway. */
export const WORKER_RESTARTS_MAX = 10
const WORKER_ENV = 'GATEWAY_WORKER'

function supervise(config: ReturnType<typeof loadGatewayConfig>): void {
  const { workers } = config
  const log = createLogger('gateway', config.logLevel).child({ node: config.nodeId, role: 'primary' })
  let restarts = 0
  let stopping = false
  const fork = (index: number) =>
    cluster.fork({ [WORKER_ENV]: String(index) }).on('exit', (code, signal) => {
      if (stopping) return
      log.error({ worker: index, code, signal }, 'gateway worker exited')
      if (++restarts > WORKER_RESTARTS_MAX) {
        log.fatal('gateway workers keep dying; stopping')
        return stop(1)
      }
      fork(index)
    })
  for (let index = 1; index <= workers; index++) fork(index)
  function stop(code: number): void {
    stopping = true
    const running = Object.values(cluster.workers ?? {})
    if (running.length === 0) process.exit(code)
    for (const worker of running) worker?.process.kill('SIGTERM')
    cluster.on('exit', () => {
      if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(code)
    })
  }
  process.on('SIGINT', () => stop(0))
  process.on('SIGTERM', () => stop(0))
  log.info({ workers }, 'gateway workers started')
}

async function serve(): Promise<void> {
  const worker = process.env[WORKER_ENV]
  await runNode('gateway', options, async ({ config, nc, log, registry, backend, appendHedge }) => {
    const secret = config.jwtSecret || undefined
    const hedge = await appendHedge()
    const node = await startGatewayNode({
      nc,
      ...(hedge
        ? { second: { nc: hedge.nc, ...(hedge.onStalled ? { onStalled: hedge.onStalled } : {}) } }
        : {}),
      region: config.region,
      regions: config.regions,
      // Each worker holds its own replica; its id names it in logs.
      node: worker ? `${config.nodeId}.${worker}` : config.nodeId,
      backend,
      shards: config.shards,
      log: worker ? log.child({ worker: Number(worker) }) : log,
      registry,
      auth: createAuthenticator({
        ...(secret ? { hs256Secret: secret } : {}),
        ...(config.jwksUrl ? { jwksUrl: config.jwksUrl } : {}),
        ...(config.jwtIssuer ? { issuer: config.jwtIssuer } : {}),
        ...(config.jwtAudience ? { audience: config.jwtAudience } : {}),
      }),
      origins: config.origins,
      // As a browser writes it: lower case, no default port.
      ...(config.publicOrigin ? { publicOrigin: new URL(config.publicOrigin).origin } : {}),
      allowMissingOrigin: config.allowMissingOrigin,
      limits: limitsOf(config),
      host: config.host,
      port: config.port,
      ...(config.demoLogin && secret ? { demoLogin: { secret, ttlSeconds: config.demoTokenTtlS } } : {}),
    })
    if (config.demoLogin && !secret) log.warn('demo login needs an HS256 secret; it is off')
    if (secret && isPlaceholderSecret(secret) && isLoopbackHost(config.host))
      log.warn('the HS256 secret is a published placeholder: fine on loopback, refused on any other host')
    return {
      readiness: () => caughtUpReadiness(node),
      close: () => node.close(),
      state: () => ({ ...describeNode({ replicas: node.replicas }), relay: node.gateway.relay.stats() }),
      diverged: () => divergenceOf(node),
    }
  })
}

/** The configuration, or the end of the process (exit code 1) with every problem, options together too. */
function loadGatewayConfig() {
  const config = loadConfigOrExit({ ...commonOptions, ...options }, 'gateway')
  const problems = [...gatewayConfigProblems(config), ...hedgeProblems(config)]
  if (problems.length === 0) return config
  process.stderr.write(`gateway: ${new ConfigError(problems).message}\n`)
  process.exit(1)
}

if (cluster.isWorker) {
  // The primary is gone (killed, say): nobody supervises this worker any more.
  process.on('disconnect', () => process.kill(process.pid, 'SIGTERM'))
  await serve()
} else {
  const config = loadGatewayConfig()
  if (config.workers > 1) supervise(config)
  else await serve()
}
