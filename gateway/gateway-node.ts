/**
 * A gateway process's wiring: a replica sync of the region's games (the views come from it), the
 * fastify server, and its listening address.
 */

import type { AddressInfo } from 'node:net'
import type { NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import type { Registry } from 'prom-client'
import { type Backend, createHlc } from '../crdt/index.ts'
import { homeRegionOf, isSuperCluster, joinFabric } from '../nodes/fabric/regions.ts'
import type { ReplicaSync } from '../nodes/fabric/replica-sync.ts'
import { userRouting } from '../protocol/subjects.ts'
import type { Authenticator } from './auth.ts'
import type { SecondConnection } from './bet-relay-state.ts'
import { buildGateway, type DemoLogin, type Gateway, type GatewayLimits } from './server.ts'

export interface GatewayNodeOptions {
  readonly nc: NatsConnection
  /** Hedged placements go through it (bet-relay-state.ts); absent: through `nc`. */
  readonly second?: SecondConnection
  readonly region: string
  readonly node: string
  readonly backend: Backend
  /** The region's ledger shards: a user's bets go to the nodes of the user's shard. */
  readonly shards: number
  readonly log: Logger
  /** Every region of a super-cluster, this one included (see nodes/fabric/regions.ts). */
  readonly regions?: readonly string[]
  readonly registry: Registry
  readonly auth: Authenticator
  readonly origins: readonly string[]
  /** The origin browsers load this gateway's page from (server.ts). */
  readonly publicOrigin?: string
  readonly allowMissingOrigin: boolean
  readonly limits: GatewayLimits
  readonly host: string
  /** 0 picks a free port. */
  readonly port: number
  readonly demoLogin?: DemoLogin
  /** The clock of rate limits and lag checks (server.ts); default Date.now. */
  readonly now?: () => number
}

export interface GatewayNode {
  readonly gateway: Gateway
  readonly replicas: ReplicaSync
  /** The page and the HTTP API; the socket is at `${url.replace('http', 'ws')}/v1/ws`. */
  readonly url: string
  close(): Promise<void>
}

export async function startGatewayNode(options: GatewayNodeOptions): Promise<GatewayNode> {
  const { nc, region, log, regions } = options
  const replicas = await joinFabric({
    nc,
    region,
    backend: options.backend,
    hlc: createHlc({ node: options.node }),
    log,
    ...(options.regions ? { regions: options.regions } : {}),
  })
  const gateway = await buildGateway({
    nc,
    ...(options.second ? { second: options.second } : {}),
    replicas,
    auth: options.auth,
    origins: options.origins,
    ...(options.publicOrigin ? { publicOrigin: options.publicOrigin } : {}),
    allowMissingOrigin: options.allowMissingOrigin,
    limits: options.limits,
    log,
    registry: options.registry,
    ready: () => replicas.caughtUp(),
    route: userRouting(
      options.shards,
      isSuperCluster(regions) ? (userId: string) => homeRegionOf(userId, regions) : undefined,
    ),
    ...(options.demoLogin ? { demoLogin: options.demoLogin } : {}),
    ...(options.now ? { now: options.now } : {}),
  })
  try {
    await gateway.app.listen({ host: options.host, port: options.port })
  } catch (error) {
    await gateway.close()
    await replicas.close()
    throw error
  }
  const address = gateway.app.server.address() as AddressInfo
  const host = address.address.includes(':') ? `[${address.address}]` : address.address
  const url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host === '[::]' ? '[::1]' : host}:${address.port}`
  log.info({ url }, 'gateway listening')
  return {
    gateway,
    replicas,
    url,
    async close() {
      await gateway.close()
      await replicas.close()
    },
  }
}
