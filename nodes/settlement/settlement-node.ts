/**
 * A settlement process's wiring: replicas and the ledger shards it serves, the settler (run after
 * every change, at most once per tick), the SQLite projection, its queries over NATS, and settled
 * statuses on `bets.status.<userId>`.
 *
 * Queries (request/reply, JSON), one set per served shard (`[.<region>]` in a super-cluster):
 * `bets.history.<shard>.<userId>` returns the user's bets, newest first;
 * `bets.balance.<shard>.<userId>` the user's balance and open stakes in the shard's fold;
 * `bets.exposure.<shard>` with `{ gameId, marketId }` returns the market's open bets, stakes,
 * potential payout and liability (at the offered odds, from the shard's fold: exact) among that
 * shard's users. `queryExposure` asks every shard and sums.
 */

import { jetstreamManager } from '@nats-io/jetstream'
import type { NatsConnection, Subscription } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { type Backend, createHlc, isId } from '../../crdt/index.ts'
import { apiError, REQUEST_BYTES_MAX, type SettledStatus } from '../../protocol/bets.ts'
import {
  BALANCE_BASE,
  EXPOSURE_BASE,
  exposureSubject,
  HISTORY_BASE,
  names,
  SETTLEMENT_QUEUE,
  shardSubject,
  statusSubject,
} from '../../protocol/subjects.ts'
import { createLeaderSpreader, type LeaderSpreader, serversOf } from '../fabric/leader-spread.ts'
import { createNodeLedger, type LedgerSync } from '../fabric/ledger-sync.ts'
import { natsFabricTransport, routedRegion } from '../fabric/regions.ts'
import { createReplicaSync, type ReplicaSync } from '../fabric/replica-sync.ts'
import { openProjection, type Projection } from './projection.ts'
import { createSettler, type Settler } from './settler.ts'

export interface SettlementNodeOptions {
  readonly nc: NatsConnection
  readonly region: string
  readonly node: string
  readonly backend: Backend
  /** The region's ledger shards, and the ones this node serves (default all). */
  readonly shards: number
  readonly served?: readonly number[]
  readonly databasePath: string
  readonly log: Logger
  /** Counts ledger messages read, per shard. */
  readonly onLedgerRead?: (shard: number) => void
  /**
   * How often to check that the served shards' stream leaders are spread evenly over the region's
   * servers, and step leaders down when not (leader-spread.ts); 0: never. Run it on one settlement
   * node per region: two would step down the same leaders at once.
   */
  readonly leaderSpreadMs?: number
  /** Restore the served shards from their ledger checkpoints at start (ledger-checkpoints.ts). */
  readonly ledgerCheckpoints?: boolean
  /**
   * How often to store each served shard's fold as its checkpoint; 0 (default): never. Writing
   * needs `ledgerCheckpoints`.
   */
  readonly ledgerCheckpointMs?: number
  /** Every region of a super-cluster, this one included (see nodes/fabric/regions.ts). */
  readonly regions?: readonly string[]
  /** The node's clock source (wall ms). */
  readonly clock?: () => number
}

export interface SettlementNode {
  readonly settler: Settler
  /** The served shards' stream leaders as last read, by shard (empty without a spreader). */
  leaders(): ReadonlyMap<number, string | null>
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
  const reply = (shard: number, verb: string, answer: (id: string) => unknown) => {
    const prefix = shardSubject(verb, shard, routed)
    return nc.subscribe(`${prefix}.*`, {
      queue: SETTLEMENT_QUEUE,
      callback: (_error, message) => {
        const id = message.subject.slice(prefix.length + 1)
        message.respond(
          JSON.stringify(
            !isId(id)
              ? apiError('BAD_REQUEST', 'bad id')
              : ledger.shardOf(id) !== shard
                ? apiError('WRONG_SHARD', `user ${id} is on ledger shard ${ledger.shardOf(id)}, not ${shard}`)
                : { ok: true, data: answer(id) },
          ),
        )
      },
    })
  }
  const exposure = (shard: number) =>
    nc.subscribe(shardSubject(EXPOSURE_BASE, shard, routed), {
      queue: SETTLEMENT_QUEUE,
      callback: (_error, message) => {
        const market = parseMarketRef(message.data)
        if (typeof market === 'string') {
          message.respond(JSON.stringify(apiError('BAD_REQUEST', market)))
          return
        }
        const { gameId, marketId } = market
        const liabilityCents = ledger.fold(shard).marketLiability(gameId, marketId)
        message.respond(
          JSON.stringify({
            ok: true,
            data: { ...projection.exposure(gameId, marketId, shard), shard, liabilityCents },
          }),
        )
      },
    })
  return ledger.served.flatMap((shard) => [
    exposure(shard),
    reply(shard, HISTORY_BASE, (userId) => projection.history(userId)),
    reply(shard, BALANCE_BASE, (userId) => ({
      userId,
      balanceCents: ledger.foldFor(userId).balance(userId),
      openStakesCents: ledger.foldFor(userId).exposure(userId).openStakesCents,
    })),
  ])
}

/** A market's exposure over every shard of a region: the sum of each shard's answer. */
export interface MarketExposure {
  readonly gameId: string
  readonly marketId: string
  readonly openBets: number
  readonly openStakesCents: number
  readonly potentialPayoutCents: number
  readonly liabilityCents: number
}

/**
 * Ask every shard of a region for a market's exposure and sum the answers. Rejects when a shard
 * does not answer in `timeoutMs` or answers with an error: a partial sum is never returned.
 */
export async function queryExposure(
  nc: NatsConnection,
  request: { gameId: string; marketId: string; shards: number; region?: string | null; timeoutMs: number },
): Promise<MarketExposure> {
  const body = JSON.stringify({ gameId: request.gameId, marketId: request.marketId })
  const answers = await Promise.all(
    Array.from({ length: request.shards }, async (_, shard) => {
      const reply = (
        await nc.request(exposureSubject(shard, request.region ?? null), body, { timeout: request.timeoutMs })
      ).json<{ ok: boolean; data?: Omit<MarketExposure, 'gameId' | 'marketId'>; error?: { code: string } }>()
      if (!reply.ok || reply.data === undefined)
        throw new Error(`shard ${shard} refused the exposure query: ${reply.error?.code ?? 'no data'}`)
      return reply.data
    }),
  )
  const sum = (key: 'openBets' | 'openStakesCents' | 'potentialPayoutCents' | 'liabilityCents') =>
    answers.reduce((total, answer) => total + answer[key], 0)
  return {
    gameId: request.gameId,
    marketId: request.marketId,
    openBets: sum('openBets'),
    openStakesCents: sum('openStakesCents'),
    potentialPayoutCents: sum('potentialPayoutCents'),
    liabilityCents: sum('liabilityCents'),
  }
}

export async function startSettlementNode(options: SettlementNodeOptions): Promise<SettlementNode> {
  const { nc, region, log } = options
  const hlc = createHlc({ node: options.node, ...(options.clock ? { clock: options.clock } : {}) })
  // One transport for the streams, the heartbeats and the statuses (nodes/fabric/transport.ts).
  const transport = await natsFabricTransport(nc, region, options.regions, options.shards, undefined, log)
  const replicas = await createReplicaSync({
    transport,
    region,
    backend: options.backend,
    hlc,
    log,
    purgeArchived: true,
    ...(options.regions ? { regions: options.regions } : {}),
    ...(options.clock ? { now: options.clock } : {}),
  })
  // The node that writes checkpoints also purges what they cover (ledger-sync.ts, `purge`).
  const ledger = await createNodeLedger(transport, {
    ...options,
    ledgerPurge: (options.ledgerCheckpointMs ?? 0) > 0,
  })
  const restored = [...ledger.restoredFrom].flatMap(([shard, seq]) => (seq > 0 ? [shard] : []))
  const projection = openProjection(options.databasePath, options.shards, restored)
  reconcileKeptRows(projection, ledger, restored, options.clock ?? Date.now, log)
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
  const stopArchives = replicas.onArchive(schedule)
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
  const spreader = await spreadLeaders(nc, ledger, region, options.leaderSpreadMs ?? 0, log)
  const checkpoints = writeCheckpoints(
    ledger,
    options.ledgerCheckpoints ? (options.ledgerCheckpointMs ?? 0) : 0,
    log,
  )
  const queries = serveQueries(nc, projection, ledger, routedRegion(region, options.regions))
  log.info(
    { node: options.node, database: options.databasePath, shards: ledger.served },
    'settlement node running',
  )
  return {
    settler,
    replicas,
    ledger,
    projection,
    leaders: () => shardLeaders(spreader, ledger, region),
    ready: () => replicas.caughtUp() && ledger.caughtUp(),
    async close() {
      spreader?.stop()
      checkpoints.stop()
      for (const subscription of queries) subscription.unsubscribe()
      stopReplicas()
      stopArchives()
      stopLedger()
      settler.close()
      await ledger.close()
      await replicas.close()
      projection.close()
    },
  }
}

/** The leader spreader of the served shards' streams, checking at once and every `intervalMs`; null for 0. */
async function spreadLeaders(
  nc: NatsConnection,
  ledger: LedgerSync,
  region: string,
  intervalMs: number,
  log: Logger,
): Promise<LeaderSpreader | null> {
  if (intervalMs === 0) return null
  return createLeaderSpreader({
    jsm: await jetstreamManager(nc),
    nc,
    streams: ledger.served.map((shard) => names.ledgerStream(region, shard)),
    servers: (infos) => serversOf(infos.values()),
    intervalMs,
    log: log.child({ component: 'leader-spread' }),
  })
}

function shardLeaders(
  spreader: LeaderSpreader | null,
  ledger: LedgerSync,
  region: string,
): ReadonlyMap<number, string | null> {
  const leaders = spreader?.leaders() ?? new Map<string, string | null>()
  const byShard = new Map<number, string | null>()
  for (const shard of ledger.served) {
    const leader = leaders.get(names.ledgerStream(region, shard))
    if (leader !== undefined) byShard.set(shard, leader)
  }
  return byShard
}

/**
 * Every `everyMs`, store each served shard's fold as its checkpoint, one shard after the other
 * (each is a snapshot of the fold built on the event loop, then compressed off it); 0: never. A
 * round still running when the next is due is not doubled.
 */
function writeCheckpoints(ledger: LedgerSync, everyMs: number, log: Logger): { stop(): void } {
  if (everyMs <= 0) return { stop() {} }
  let running = false
  const timer = setInterval(async () => {
    if (running) return
    running = true
    // One shard's failure (a fold too large to write, the bucket full) does not stop the others'.
    for (const shard of ledger.served)
      await ledger.writeCheckpoint(shard).catch((error: unknown) => {
        log.warn({ shard, err: error }, 'a ledger checkpoint was not written; trying again next round')
      })
    running = false
  }, everyMs)
  timer.unref()
  return { stop: () => clearInterval(timer) }
}

/** The outcome a kept row gets when its bet settled and retired before the checkpoint it was restored from. */
export const OUTCOME_UNKNOWN = 'unknown'

/**
 * A kept projection may be older than the checkpoint its shard was restored from (the node was
 * down longer than a checkpoint round): a bet placed before the checkpoint that it holds open may
 * have settled meanwhile. Each such row is settled from the fold if the fold still holds the bet;
 * one the fold holds no more settled and retired before the checkpoint, with an outcome this node
 * cannot know (`unknown`). Rows of bets placed after the checkpoint are left to the entries folded
 * next. Bets placed and settled entirely between the rows and the checkpoint are missing from this
 * projection (docs/operations.md).
 */
export function reconcileKeptRows(
  projection: Projection,
  ledger: Pick<LedgerSync, 'fold' | 'restoredFrom'>,
  shards: readonly number[],
  now: () => number,
  log: Logger,
): void {
  for (const shard of shards) {
    let reconciled = 0
    const restoredAt = ledger.restoredFrom.get(shard) ?? 0
    for (const { userId, betId, ledgerSeq } of projection.unsettled(shard)) {
      // A bet placed after the checkpoint (the rows may be ahead of it) is folded again next.
      if (ledgerSeq > restoredAt) continue
      const bet = ledger.fold(shard).bet(userId, betId)
      if (bet?.status === 'open') continue
      if (bet?.status === 'settled') projection.settled(userId, betId, bet.outcome, bet.payoutCents, now())
      else projection.settled(userId, betId, OUTCOME_UNKNOWN, null, now())
      reconciled++
    }
    if (reconciled > 0)
      log.info({ shard, reconciled }, 'settled kept projection rows the checkpoint had settled')
  }
}
