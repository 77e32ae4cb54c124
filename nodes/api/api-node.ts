/**
 * An API process's wiring: the region's fabric and ledger, the bet service behind a NATS service
 * endpoint `bets.place` in one queue group (any number of API nodes share the load), and final
 * verdicts published on `bets.status.<userId>`.
 */

import type { NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { type Backend, createHlc, type Hlc } from '../../crdt/index.ts'
import { createLedgerSync, type LedgerSync } from '../fabric/ledger-sync.ts'
import { createReplicaSync, type ReplicaSync } from '../fabric/replica-sync.ts'
import { ensureFabric } from '../fabric/streams.ts'
import { type BetLimits, type BetService, createBetService } from './bet-service.ts'
import { apiError, PLACE_SUBJECT, QUEUE_GROUP, statusSubject } from './protocol.ts'

export interface ApiNodeOptions {
  readonly nc: NatsConnection
  readonly region: string
  readonly node: string
  readonly backend: Backend
  readonly shards: number
  readonly log: Logger
  readonly limits?: Partial<BetLimits>
  readonly hlc?: Hlc
}

export interface ApiNode {
  readonly service: BetService
  readonly replicas: ReplicaSync
  readonly ledger: LedgerSync
  readonly hlc: Hlc
  ready(): boolean
  close(): Promise<void>
}

export async function startApiNode(options: ApiNodeOptions): Promise<ApiNode> {
  const { nc, region, log } = options
  const hlc = options.hlc ?? createHlc({ node: options.node })
  const { snapshots } = await ensureFabric(nc, region)
  const replicas = await createReplicaSync({ nc, region, backend: options.backend, hlc, snapshots, log })
  const ledger = await createLedgerSync({ nc, region, shards: options.shards, log })
  const service = createBetService({
    replicas,
    ledger,
    hlc,
    log,
    limits: options.limits,
    publishStatus: (userId, status) => nc.publish(statusSubject(userId), JSON.stringify(status)),
  })
  // A queue group: each request goes to one API node, and nodes come and go freely.
  const endpoint = nc.subscribe(PLACE_SUBJECT, {
    queue: QUEUE_GROUP,
    callback: (error, message) => {
      if (error) {
        log.error({ err: error }, 'bet endpoint failed')
        return
      }
      service.place(message.data).then(
        (reply) => message.respond(JSON.stringify(reply)),
        (failure) => {
          log.error({ err: failure }, 'placing a bet failed unexpectedly')
          message.respond(
            JSON.stringify(
              apiError('OVERLOADED', 'the node failed to place the bet; retry with the same bet id'),
            ),
          )
        },
      )
    },
  })
  log.info({ node: options.node, region }, 'api node serving bets.place')
  return {
    service,
    replicas,
    ledger,
    hlc,
    ready: () => replicas.caughtUp() && ledger.caughtUp(),
    async close() {
      await endpoint.drain()
      service.close()
      await ledger.close()
      await replicas.close()
    },
  }
}
