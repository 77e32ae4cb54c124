/**
 * An API process's wiring: the region's fabric and the ledger shards it serves, the bet service
 * behind a NATS service endpoint `bets.place.<shard>` per served shard, each in one queue group
 * (any number of API nodes share a shard's load), final verdicts published on
 * `bets.status.<userId>`, deposits and status recovery on `admin.deposit.<shard>` and
 * `bets.lookup.<shard>`, and market liability allowance for other shards on
 * `allowance.grant.<shard>` (allowance.ts). In a super-cluster each subject carries the region
 * before the shard.
 */

import type { Msg, NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { type Backend, createHlc, type Hlc } from '../../crdt/index.ts'
import { parseLedgerEntry } from '../../ledger/index.ts'
import { ALLOWANCE_REQUEST_BYTES_MAX, parseAllowanceRequest } from '../../protocol/allowance.ts'
import { ANNOUNCE_MS, newDirectId } from '../../protocol/api-nodes.ts'
import {
  apiError,
  LOOKUP_BYTES_MAX,
  type LookupReply,
  parseLookup,
  REQUEST_BYTES_MAX,
} from '../../protocol/bets.ts'
import {
  ALLOWANCE_BASE,
  API_NODES_SUBJECT,
  DEPOSIT_BASE,
  directSubject,
  LOOKUP_BASE,
  PLACE_BASE,
  QUEUE_GROUP,
  shardSubject,
  statusSubject,
} from '../../protocol/subjects.ts'
import { APPEND_TIMEOUT_MS, createNodeLedger, type LedgerSync } from '../fabric/ledger-sync.ts'
import { homeRegionOf, natsFabricTransport, routedRegion } from '../fabric/regions.ts'
import { createReplicaSync, type ReplicaSync } from '../fabric/replica-sync.ts'
import type { AppendHedge, HedgeStats } from '../fabric/transport.ts'
import type { BetLimits } from './bet-limits.ts'
import { type LookupSources, lookupStatuses } from './bet-lookup.ts'
import { type BetService, createBetService } from './bet-service.ts'

export interface ApiNodeOptions {
  readonly nc: NatsConnection
  readonly region: string
  readonly node: string
  readonly backend: Backend
  /** The region's ledger shards, and the ones this node serves (default all). */
  readonly shards: number
  readonly served?: readonly number[]
  /** Restore the served shards from their ledger checkpoints at start (ledger-checkpoints.ts). */
  readonly ledgerCheckpoints?: boolean
  readonly log: Logger
  /** Counts ledger messages read, per shard. */
  readonly onLedgerRead?: (shard: number) => void
  readonly limits?: Partial<BetLimits>
  readonly hlc?: Hlc
  /** Every region of a super-cluster, this one included (see nodes/fabric/regions.ts). */
  readonly regions?: readonly string[]
  /** The node's clock source (wall ms): its stamps and staleness checks read it. */
  readonly clock?: () => number
  /** A second connection for hedged ledger appends (nodes/fabric/transport.ts); none by default. */
  readonly appendHedge?: AppendHedge
}

export interface ApiNode {
  readonly service: BetService
  /** Ledger appends sent through the second connection too, and those it acknowledged first. */
  hedgeStats(): HedgeStats
  readonly replicas: ReplicaSync
  readonly ledger: LedgerSync
  readonly hlc: Hlc
  ready(): boolean
  close(): Promise<void>
}

export async function startApiNode(options: ApiNodeOptions): Promise<ApiNode> {
  const { nc, region, log } = options
  const hlc =
    options.hlc ?? createHlc({ node: options.node, ...(options.clock ? { clock: options.clock } : {}) })
  // One transport for the streams, the heartbeats and the statuses (nodes/fabric/transport.ts).
  const transport = await natsFabricTransport(
    nc,
    region,
    options.regions,
    options.shards,
    options.appendHedge,
    log,
  )
  const replicas = await createReplicaSync({
    transport,
    region,
    backend: options.backend,
    hlc,
    log,
    ...(options.regions ? { regions: options.regions } : {}),
    ...(options.clock ? { now: options.clock } : {}),
  })
  const ledger = await createNodeLedger(transport, options)
  // In a super-cluster this node books only the users homed in its region, on its region's subjects.
  const routed = routedRegion(region, options.regions)
  const allRegions = options.regions ?? []
  const misrouted = (userId: string) => {
    if (routed !== null && homeRegionOf(userId, allRegions) !== region)
      return apiError(
        'WRONG_REGION',
        `user ${userId} is not homed in this region: send it to the home region`,
      )
    const shard = ledger.shardOf(userId)
    if (!ledger.serves(shard))
      return apiError(
        'WRONG_SHARD',
        `user ${userId} is on ledger shard ${shard}, which this node does not serve`,
      )
    return null
  }
  const service = createBetService({
    replicas,
    ledger,
    hlc,
    log,
    limits: options.limits,
    ...(options.clock ? { now: options.clock } : {}),
    misrouted,
    publishStatus: (userId, status) => transport.publish(statusSubject(userId), JSON.stringify(status)),
    askAllowance: async (shard, request, timeoutMs) =>
      (
        await nc.request(shardSubject(ALLOWANCE_BASE, shard, routed), JSON.stringify(request), {
          timeout: timeoutMs,
        })
      ).json(),
  })
  const placements = (error: Error | null, message: Msg) => {
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
            apiError(
              'INTERNAL',
              'the node failed to place the bet; it may stand: retry with the same bet id',
            ),
          ),
        )
      },
    )
  }
  // A queue group per served shard: each request goes to one API node serving the user's shard,
  // and nodes come and go freely.
  const queues = ledger.served.map((shard) => shardSubject(PLACE_BASE, shard, routed))
  const endpoints = queues.map((subject) =>
    nc.subscribe(subject, { queue: QUEUE_GROUP, callback: placements }),
  )
  // And a subject of its own, which a gateway hedging a placement addresses (protocol/api-nodes.ts).
  const direct = newDirectId()
  endpoints.push(nc.subscribe(directSubject(direct), { callback: placements }))
  const ready = () => replicas.caughtUp() && ledger.caughtUp() && replicas.clock.unsafe() === null
  const announcement = JSON.stringify({ node: options.node, direct, subjects: queues })
  const announcing = setInterval(() => {
    if (ready() && !nc.isClosed()) nc.publish(API_NODES_SUBJECT, announcement)
  }, ANNOUNCE_MS)
  announcing.unref()
  const admin = ledger.served.map((shard) =>
    serveDeposits(nc, ledger, log, shardSubject(DEPOSIT_BASE, shard, routed), misrouted),
  )
  const lookups = ledger.served.map((shard) =>
    serveLookups(
      nc,
      { replicas, ledger, now: options.clock ?? Date.now },
      shardSubject(LOOKUP_BASE, shard, routed),
      misrouted,
      log,
    ),
  )
  const grants = ledger.served.map((shard) =>
    serveJson(
      nc,
      shardSubject(ALLOWANCE_BASE, shard, routed),
      ALLOWANCE_REQUEST_BYTES_MAX,
      (value, answer) => {
        const request = parseAllowanceRequest(value)
        if (Array.isArray(request)) return answer(apiError('BAD_REQUEST', request.join('; ')))
        service.allowances.give(shard, request).then(answer, (error) => {
          log.error({ err: error }, 'granting allowance failed unexpectedly')
          answer(apiError('INTERNAL', 'the node failed to answer; ask again with the same transfer id'))
        })
      },
    ),
  )
  log.info(
    { node: options.node, region, shards: ledger.served },
    `api node serving ${shardSubject(PLACE_BASE, ledger.served[0] as number, routed)} and its other shards`,
  )
  return {
    service,
    hedgeStats: () => transport.hedgeStats(),
    replicas,
    ledger,
    hlc,
    ready,
    async close() {
      clearInterval(announcing)
      await Promise.all(
        [...endpoints, ...admin, ...lookups, ...grants].map((subscription) => subscription.drain()),
      )
      service.close()
      await ledger.close()
      await replicas.close()
    },
  }
}

type Misrouted = (userId: string) => ReturnType<typeof apiError> | null

/** Status recovery on `bets.lookup.<shard>` (see bet-lookup.ts), in the same queue group. */
function serveLookups(
  nc: NatsConnection,
  sources: LookupSources,
  subject: string,
  misrouted: Misrouted,
  log: Logger,
) {
  return serveJson(nc, subject, LOOKUP_BYTES_MAX, async (value, answer) => {
    const request = parseLookup(value)
    if (Array.isArray(request)) return answer(apiError('BAD_REQUEST', request.join('; ')))
    const refused = misrouted(request.userId)
    if (refused !== null) return answer(refused)
    // An async handler's throw would end the process (an unhandled rejection): answer it instead.
    const statuses = await lookupStatuses(sources, request).catch((error: unknown) => {
      log.error({ err: error, userId: request.userId }, 'a status lookup failed')
      return null
    })
    if (statuses === null) return answer(apiError('INTERNAL', 'the lookup failed; ask again'))
    const reply: LookupReply = { ok: true, data: { statuses } }
    answer(reply)
  })
}

/**
 * A request/reply endpoint in the API nodes' queue group: a JSON request of at most `bytesMax`
 * bytes in, a JSON answer out; anything else is answered BAD_REQUEST.
 */
function serveJson(
  nc: NatsConnection,
  subject: string,
  bytesMax: number,
  handle: (value: unknown, answer: (reply: unknown) => void) => void,
) {
  return nc.subscribe(subject, {
    queue: QUEUE_GROUP,
    callback: (_error, message) => {
      const answer = (reply: unknown): void => {
        message.respond(JSON.stringify(reply))
      }
      if (message.data.length > bytesMax)
        return answer(apiError('BAD_REQUEST', `a request is at most ${bytesMax} bytes`))
      let value: unknown
      try {
        value = message.json()
      } catch {
        return answer(apiError('BAD_REQUEST', 'the request is not JSON'))
      }
      handle(value, answer)
    },
  })
}

export const DEPOSIT_CENTS_MAX = 10_000_000

/**
 * The admin service that credits test users: `{ "id": "...", "userId": "...", "amountCents": n }`
 * on `admin.deposit.<shard>`, answered with the balance after the deposit is folded. Deposits are ledger
 * entries like any other; the id makes a retried credit land once.
 */
function serveDeposits(
  nc: NatsConnection,
  ledger: LedgerSync,
  log: Logger,
  subject: string,
  misrouted: Misrouted,
) {
  return serveJson(nc, subject, REQUEST_BYTES_MAX, (value, answer) => {
    // Not an object (null, say) has none of the fields, and is refused below like a missing one.
    const fields = typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {}
    const entry = parseLedgerEntry({
      type: 'deposit',
      id: fields.id,
      userId: fields.userId,
      amountCents: fields.amountCents,
    })
    if (entry === null || entry.type !== 'deposit' || entry.amountCents > DEPOSIT_CENTS_MAX) {
      answer(
        apiError('BAD_REQUEST', `a deposit needs an id, a userId and amountCents of 1-${DEPOSIT_CENTS_MAX}`),
      )
      return
    }
    const refused = misrouted(entry.userId)
    if (refused !== null) {
      answer(refused)
      return
    }
    ledger
      .append(entry)
      .then((seq) => ledger.resultAt(ledger.shardOf(entry.userId), seq, APPEND_TIMEOUT_MS))
      .then((result) => answer({ ok: true, status: result.status, balanceCents: result.balanceCents }))
      .catch((error) => {
        log.warn({ err: error }, 'deposit failed')
        answer(apiError('LEDGER_UNAVAILABLE', 'the ledger did not acknowledge the deposit'))
      })
  })
}
