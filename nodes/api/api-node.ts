/**
 * An API process's wiring: the region's fabric and ledger, the bet service behind a NATS service
 * endpoint `bets.place` in one queue group (any number of API nodes share the load), final
 * verdicts published on `bets.status.<userId>`, and status recovery on `bets.lookup`.
 */

import type { NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { type Backend, createHlc, type Hlc } from '../../crdt/index.ts'
import { parseLedgerEntry } from '../../ledger/index.ts'
import {
  apiError,
  LOOKUP_BYTES_MAX,
  type LookupReply,
  parseLookup,
  REQUEST_BYTES_MAX,
} from '../../protocol/bets.ts'
import {
  DEPOSIT_SUBJECT,
  LOOKUP_SUBJECT,
  PLACE_SUBJECT,
  QUEUE_GROUP,
  routedSubject,
  statusSubject,
} from '../../protocol/subjects.ts'
import { APPEND_TIMEOUT_MS, createLedgerSync, type LedgerSync } from '../fabric/ledger-sync.ts'
import { homeRegionOf, natsFabricTransport, routedRegion } from '../fabric/regions.ts'
import { createReplicaSync, type ReplicaSync } from '../fabric/replica-sync.ts'
import type { BetLimits } from './bet-limits.ts'
import { type LookupSources, lookupStatuses } from './bet-lookup.ts'
import { type BetService, createBetService } from './bet-service.ts'

export interface ApiNodeOptions {
  readonly nc: NatsConnection
  readonly region: string
  readonly node: string
  readonly backend: Backend
  readonly shards: number
  readonly log: Logger
  readonly limits?: Partial<BetLimits>
  readonly hlc?: Hlc
  /** Every region of a super-cluster, this one included (see nodes/fabric/regions.ts). */
  readonly regions?: readonly string[]
  /** The node's clock source (wall ms): its stamps and staleness checks read it. */
  readonly clock?: () => number
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
  const hlc =
    options.hlc ?? createHlc({ node: options.node, ...(options.clock ? { clock: options.clock } : {}) })
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
  // In a super-cluster this node books only the users homed in its region, on its region's subjects.
  const routed = routedRegion(region, options.regions)
  const allRegions = options.regions ?? []
  const homeHere =
    routed === null ? undefined : (userId: string) => homeRegionOf(userId, allRegions) === region
  const service = createBetService({
    replicas,
    ledger,
    hlc,
    log,
    limits: options.limits,
    ...(options.clock ? { now: options.clock } : {}),
    ...(homeHere ? { homeHere } : {}),
    publishStatus: (userId, status) => transport.publish(statusSubject(userId), JSON.stringify(status)),
  })
  // A queue group: each request goes to one API node, and nodes come and go freely.
  const endpoint = nc.subscribe(routedSubject(PLACE_SUBJECT, routed), {
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
              apiError(
                'INTERNAL',
                'the node failed to place the bet; it may stand: retry with the same bet id',
              ),
            ),
          )
        },
      )
    },
  })
  const admin = serveDeposits(nc, ledger, log, routed, homeHere)
  const lookups = serveLookups(nc, { replicas, ledger, now: options.clock ?? Date.now }, routed, homeHere)
  log.info({ node: options.node, region }, `api node serving ${routedSubject(PLACE_SUBJECT, routed)}`)
  return {
    service,
    replicas,
    ledger,
    hlc,
    ready: () => replicas.caughtUp() && ledger.caughtUp() && replicas.clock.unsafe() === null,
    async close() {
      await endpoint.drain()
      await admin.drain()
      await lookups.drain()
      service.close()
      await ledger.close()
      await replicas.close()
    },
  }
}

/** Status recovery on `bets.lookup` (see bet-lookup.ts), in the same queue group. */
function serveLookups(
  nc: NatsConnection,
  sources: LookupSources,
  routed: string | null,
  homeHere: ((userId: string) => boolean) | undefined,
) {
  return serveJson(nc, routedSubject(LOOKUP_SUBJECT, routed), LOOKUP_BYTES_MAX, (value, answer) => {
    const request = parseLookup(value)
    if (Array.isArray(request)) return answer(apiError('BAD_REQUEST', request.join('; ')))
    if (homeHere !== undefined && !homeHere(request.userId))
      return answer(apiError('WRONG_REGION', `user ${request.userId} is not homed in this region`))
    const reply: LookupReply = { ok: true, data: { statuses: lookupStatuses(sources, request) } }
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
 * on `admin.deposit`, answered with the balance after the deposit is folded. Deposits are ledger
 * entries like any other; the id makes a retried credit land once.
 */
function serveDeposits(
  nc: NatsConnection,
  ledger: LedgerSync,
  log: Logger,
  routed: string | null,
  homeHere: ((userId: string) => boolean) | undefined,
) {
  return serveJson(nc, routedSubject(DEPOSIT_SUBJECT, routed), REQUEST_BYTES_MAX, (value, answer) => {
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
    if (homeHere !== undefined && !homeHere(entry.userId)) {
      answer(apiError('WRONG_REGION', `user ${entry.userId} is not homed in this region`))
      return
    }
    ledger
      .append(entry)
      .then((seq) => ledger.resultAt(seq, APPEND_TIMEOUT_MS))
      .then((result) => answer({ ok: true, status: result.status, balanceCents: result.balanceCents }))
      .catch((error) => {
        log.warn({ err: error }, 'deposit failed')
        answer(apiError('LEDGER_UNAVAILABLE', 'the ledger did not acknowledge the deposit'))
      })
  })
}
