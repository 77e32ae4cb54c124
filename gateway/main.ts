/** The gateway process. `--help` lists options. */

import { caughtUpReadiness, runNode } from '../nodes/fabric/node-main.ts'
import { createAuthenticator } from './auth.ts'
import { startGatewayNode } from './gateway-node.ts'
import { limitsOf, options } from './options.ts'

await runNode('gateway', options, async ({ config, nc, log, registry, backend }) => {
  const secret = config.jwtSecret || undefined
  const node = await startGatewayNode({
    nc,
    region: config.region,
    node: config.nodeId,
    backend,
    log,
    registry,
    auth: createAuthenticator({
      ...(secret ? { hs256Secret: secret } : {}),
      ...(config.jwksUrl ? { jwksUrl: config.jwksUrl } : {}),
      ...(config.jwtIssuer ? { issuer: config.jwtIssuer } : {}),
      ...(config.jwtAudience ? { audience: config.jwtAudience } : {}),
    }),
    origins: config.origins,
    allowMissingOrigin: config.allowMissingOrigin,
    limits: limitsOf(config),
    host: config.host,
    port: config.port,
    ...(config.demoLogin && secret ? { demoLogin: { secret, ttlSeconds: config.demoTokenTtlS } } : {}),
  })
  if (config.demoLogin && !secret) log.warn('demo login needs an HS256 secret; it is off')
  return {
    readiness: () => caughtUpReadiness(node),
    close: () => node.close(),
  }
})
