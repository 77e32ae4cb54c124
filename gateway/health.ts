/**
 * `/healthz` and `/readyz` on the client port, as a fastify plugin: alive, with the connection
 * count; ready when the gateway's `ready()` says so (in a gateway process, once its replicas have
 * caught up), else 503. The metrics stay on the ops port.
 */

import type { FastifyPluginAsync } from 'fastify'

export interface HealthOptions {
  readonly connections: () => number
  readonly ready: () => boolean
}

export const health: FastifyPluginAsync<HealthOptions> = async (app, options) => {
  app.get('/healthz', async () => ({ status: 'ok', connections: options.connections() }))
  app.get('/readyz', async (_request, reply) =>
    options.ready() ? { ready: true } : reply.code(503).send({ ready: false }),
  )
}
