/**
 * A settlement process's wiring: replicas and ledger, the settler (run after every change, at
 * most once per tick), the SQLite projection, its queries over NATS, and settled statuses on
 * `bets.status.<userId>`.
 *
 * Queries (request/reply, JSON): `bets.history.<userId>` returns the user's bets, newest first;
 * `bets.balance.<userId>` the user's balance and open stakes in this node's ledger fold;
 * `bets.exposure` with `{ gameId, marketId }` returns the market's open bets, stakes, potential
 * payout and liability (at the offered odds, summed over every ledger shard's fold: exact).
 */

import type { NatsConnection, Subscription } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { type Backend, createHlc, isId } from '../../crdt/index.ts'
import { apiError, REQUEST_BYTES_MAX, type SettledStatus } from '../../protocol/bets.ts'
import {
  BALANCE_SUBJECT,
  EXPOSURE_SUBJECT,
  HISTORY_SUBJECT,
  routedSubject,
  SETTLEMENT_QUEUE,
  statusSubject,
} from '../../protocol/subjects.ts'
import { createLedgerSync, type LedgerSync } from '../fabric/ledger-sync.ts'
import { natsFabricTransport, routedRegion } from '../fabric/regions.ts'
import { createReplicaSync, type ReplicaSync } from '../fabric/replica-sync.ts'
import { openProjection, type Projection } from './projection.ts'
import { createSettler, type Settler } from './settler.ts'

export interface SettlementNodeOptions {
  readonly nc: NatsConnection
  readonly region: string
  readonly node: string
  readonly backend: Backend
  readonly shards: number
  readonly databasePath: string
  readonly log: Logger
  /** Every region of a super-cluster, this one included (see nodes/fabric/regions.ts). */
  readonly regions?: readonly string[]
  /** The node's clock source (wall ms). */
  readonly clock?: () => number
}

export interface SettlementNode {
  readonly settler: Settler
  readonly replicas: ReplicaSync
  readonly ledger: LedgerSync
  readonly projection: Projection
  ready(): boolean
  close(): Promise<void>
}

/** A market named in a request body: `{ gameId, marketId }`, or what is wrong with it. */
function parseMarketRef(data: Uint8Array): { gameId: string; marketId: string } | string {
  if (data.length > REQUEST_BYTES_MAX) return `a request is at most ${REQUEST_BYTES_MAX} bytes`
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder().decode(data))
  } catch {
    return 'the request is not JSON'
  }
  const { gameId, marketId } = (typeof value === 'object' && value !== null ? value : {}) as Record<
    string,
    unknown
  >
  if (!isId(gameId) || !isId(marketId))
    return 'the request must be { gameId, marketId }, each an id of up to 64 characters'
  return { gameId, marketId }
}

function serveQueries(
  nc: NatsConnection,
  projection: Projection,
  ledger: LedgerSync,
  routed: string | null,
): Subscription[] {
  const reply = (verb: string, answer: (id: string) => unknown) => {
    const prefix = routedSubject(verb, routed)
    return nc.subscribe(`${prefix}.*`, {
      queue: SETTLEMENT_QUEUE,
      callback: (_error, message) => {
        const id = message.subject.slice(prefix.length + 1)
        message.respond(
          JSON.stringify(
            isId(id)
              ? { ok: true, data: answer(id) }
              : { ok: false, error: { code: 'BAD_REQUEST', message: 'bad id' } },
          ),
        )
      },
    })
  }
  const exposure = nc.subscribe(routedSubject(EXPOSURE_SUBJECT, routed), {
    queue: SETTLEMENT_QUEUE,
    callback: (_error, message) => {
      const market = parseMarketRef(message.data)
      if (typeof market === 'string') {
        message.respond(JSON.stringify(apiError('BAD_REQUEST', market)))
        return
      }
      const { gameId, marketId } = market
      let liabilityCents = 0
      for (let shard = 0; shard < ledger.shards; shard++)
        liabilityCents += ledger.fold(shard).marketLiability(gameId, marketId)
      message.respond(
        JSON.stringify({ ok: true, data: { ...projection.exposure(gameId, marketId), liabilityCents } }),
      )
    },
  })
  return [
    exposure,
    reply(HISTORY_SUBJECT, (userId) => projection.history(userId)),
    reply(BALANCE_SUBJECT, (userId) => ({
      userId,
      balanceCents: ledger.foldFor(userId).balance(userId),
      openStakesCents: ledger.foldFor(userId).exposure(userId).openStakesCents,
    })),
  ]
}

export async function startSettlementNode(options: SettlementNodeOptions): Promise<SettlementNode> {
  const { nc, region, log } = options
  const hlc = createHlc({ node: options.node, ...(options.clock ? { clock: options.clock } : {}) })
  // One transport for the streams, the heartbeats and the statuses (nodes/fabric/transport.ts).
  const transport = await natsFabricTransport(nc, region, options.regions)
  const replicas = await createReplicaSync({
    transport,
    region,
    backend: options.backend,
    hlc,
    log,
    ...(options.regions ? { regions: options.regions } : {}),
    ...(options.clock ? { now: options.clock } : {}),
  })
  const ledger = await createLedgerSync({ transport, region, shards: options.shards, log })
  const projection = openProjection(options.databasePath)
  const settler = createSettler({
    replicas,
    ledger,
    projection,
    log,
    ...(options.clock ? { now: options.clock } : {}),
    publishFinal: (userId, status) => transport.publish(statusSubject(userId), JSON.stringify(status)),
  })
  let scheduled = false
  const schedule = () => {
    if (scheduled) return
    scheduled = true
    setImmediate(() => {
      scheduled = false
      settler.pass()
    })
  }
  const stopReplicas = replicas.onChange(schedule)
  const stopLedger = ledger.onEntry((_shard, _seq, result, entry) => {
    schedule()
    if (entry?.type !== 'settlement' || result.status !== 'applied') return
    const bet = ledger.foldFor(entry.userId).bet(entry.userId, entry.betId)
    if (bet?.status !== 'settled') return
    const balanceCents = ledger.foldFor(entry.userId).balance(entry.userId)
    const status: SettledStatus = {
      betId: bet.betId,
      status: 'settled',
      outcome: bet.outcome,
      payoutCents: bet.payoutCents,
      balanceCents,
    }
    nc.publish(statusSubject(entry.userId), JSON.stringify(status))
  })
  const queries = serveQueries(nc, projection, ledger, routedRegion(region, options.regions))
  log.info({ node: options.node, database: options.databasePath }, 'settlement node running')
  return {
    settler,
    replicas,
    ledger,
    projection,
    ready: () => replicas.caughtUp() && ledger.caughtUp(),
    async close() {
      for (const subscription of queries) subscription.unsubscribe()
      stopReplicas()
      stopLedger()
      settler.close()
      await ledger.close()
      await replicas.close()
      projection.close()
    },
  }
}
