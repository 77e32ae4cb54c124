/**
 * The product's own nodes, started in the simulated world: the real trader node (trader-node.ts,
 * with its clock ceiling, rejoin and takeover), the real bet service over real replica sync and
 * ledger sync, and the real settler with a real SQLite projection in memory. Only the wiring to
 * NATS is left out: each node gets the world's transport, clock and timers instead.
 */

import pino from 'pino'
import { type Backend, createHlc } from '../../../crdt/index.ts'
import type { Ask } from '../../../nodes/api/allowance.ts'
import type { BetLimits } from '../../../nodes/api/bet-limits.ts'
import { type BetService, createBetService } from '../../../nodes/api/bet-service.ts'
import { createLedgerSync, type LedgerSync } from '../../../nodes/fabric/ledger-sync.ts'
import { createReplicaSync, type ReplicaSync } from '../../../nodes/fabric/replica-sync.ts'
import { openProjection } from '../../../nodes/settlement/projection.ts'
import { createSettler, type Settler } from '../../../nodes/settlement/settler.ts'
import type { FeedAdapter, FeedEvent, FeedResume } from '../../../nodes/trader/feed.ts'
import { startTraderNode, type TraderNode } from '../../../nodes/trader/trader-node.ts'
import { apiError, type FinalStatus } from '../../../protocol/bets.ts'
import { REGION, SIM_SHARDS, type World } from './world.ts'

export const GAME = 'match-1'
export const SHARDS = SIM_SHARDS
export const HEARTBEAT_MS = 50
export const SNAPSHOT_MS = 700
export const SETTLE_PASS_MS = 100
export const TAKEOVER_AFTER_MS = 600
export const POINT_MS = 1_200
/**
 * The nodes' clock bound in the simulator. A match here runs points of POINT_MS, so the bound is
 * scaled down with it from the product's 5 s: an offset beyond it must reach back into an earlier
 * open window for a past-posted bet to be possible, as 5 s does in a real tennis point.
 */
export const SIM_MAX_DRIFT_MS = 400

const log = pino({ level: process.env.SIM_LOG_LEVEL ?? 'silent' })

/** A finality announcement, as a client would hear it. */
export interface HeardFinal {
  readonly node: string
  readonly userId: string
  readonly status: FinalStatus
  readonly atMs: number
}

/**
 * A seeded tennis feed in simulated time: each point opens, is served (a first-serve fault now and
 * then reopens it at second-serve prices), ends with a result, and is sometimes corrected soon
 * after. A resumed feed starts after the point it is given, with no match start.
 */
export function simulatedFeed(world: World, node: string, points: number): FeedAdapter {
  let generation = 0
  return {
    name: 'sim',
    start(emit: (event: FeedEvent) => void, resume?: FeedResume) {
      const mine = ++generation
      const timers = world.timers(node)
      const prng = world.prng
      let atMs = 10
      const at = (event: FeedEvent | (() => FeedEvent)) => {
        timers.setTimeout(() => {
          if (generation === mine) emit(typeof event === 'function' ? event() : event)
        }, atMs)
      }
      const clock = world.clock(node)
      if (resume === undefined) at({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
      for (let point = (resume?.afterPoint ?? 0) + 1; point <= points; point++) {
        const server = point % 2 === 1 ? 'home' : 'away'
        atMs += 50
        at({ type: 'point-start', point, server })
        atMs += prng.int(300, 500)
        if (prng.chance(0.3)) {
          at({ type: 'serve', point, second: false })
          atMs += 40
          at({ type: 'fault', point })
          atMs += prng.int(100, 200)
          at({ type: 'serve', point, second: true })
        } else {
          at({ type: 'serve', point, second: false })
        }
        atMs += prng.int(200, 400)
        at({ type: 'point-end', point, winner: prng.chance(0.5) ? 'home' : 'away', ace: prng.chance(0.1) })
        if (prng.chance(0.15)) {
          atMs += prng.int(20, 200)
          // The provider takes back the last half second of the point's bets (trader clock).
          at(() => ({ type: 'correction', point, fromMs: clock() - 700, toMs: clock() - 200 }))
        }
        atMs = Math.max(atMs, POINT_MS * (point - (resume?.afterPoint ?? 0)))
      }
      atMs += 200
      at({ type: 'match-end' })
    },
    stop() {
      generation++
    },
  }
}

export async function startTrader(
  world: World,
  backend: Backend,
  node: string,
  writers: readonly string[],
  role: 'active' | 'standby',
  points: number,
  /** How long after the match ends the trader archives it (0: never). */
  archiveAfterMs: number,
): Promise<TraderNode> {
  const clock = world.clock(node)
  return startTraderNode({
    hlc: createHlc({ node, clock, maxDriftMs: SIM_MAX_DRIFT_MS }),
    transport: world.fabric.transport(node),
    timers: world.timers(node),
    region: REGION,
    node,
    gameId: GAME,
    writers,
    feed: simulatedFeed(world, node, points),
    backend,
    log: log.child({ node }),
    snapshotIntervalMs: SNAPSHOT_MS,
    limits: { heartbeatMs: HEARTBEAT_MS, takeoverAfterMs: writers.length > 1 ? TAKEOVER_AFTER_MS : 0 },
    role,
    archiveAfterMs,
    now: clock,
  })
}

export interface ApiSim {
  readonly node: string
  readonly service: BetService
  readonly replicas: ReplicaSync
  readonly ledger: LedgerSync
  close(): Promise<void>
}

/** What an API or settlement node holds in the world: its clock, replicas and ledger. */
/**
 * What an API or settlement node holds in the world: its clock, replicas and the ledger shards it
 * serves (default all). `onRead` hears each ledger message it reads, by shard.
 */
export async function joinWorld(
  world: World,
  backend: Backend,
  node: string,
  served?: readonly number[],
  onRead?: (shard: number) => void,
) {
  const clock = world.clock(node)
  const transport = world.fabric.transport(node)
  const hlc = createHlc({ node, clock, maxDriftMs: SIM_MAX_DRIFT_MS })
  const replicas = await createReplicaSync({ transport, region: REGION, backend, hlc, log, now: clock })
  const ledger = await createLedgerSync({
    transport,
    region: REGION,
    shards: SHARDS,
    log,
    timers: world.timers(node),
    now: clock,
    ...(served ? { served } : {}),
    ...(onRead ? { onRead } : {}),
  })
  return { clock, hlc, replicas, ledger }
}

export async function startApi(
  world: World,
  backend: Backend,
  node: string,
  limits: Partial<BetLimits>,
  heard: (final: HeardFinal) => void,
  askAllowance: Ask,
  shards?: { readonly served: readonly number[]; readonly onRead: (shard: number) => void },
): Promise<ApiSim> {
  const { clock, hlc, replicas, ledger } = await joinWorld(
    world,
    backend,
    node,
    shards?.served,
    shards?.onRead,
  )
  const service = createBetService({
    replicas,
    ledger,
    hlc,
    log,
    limits,
    now: clock,
    misrouted: (userId) =>
      ledger.serves(ledger.shardOf(userId))
        ? null
        : apiError('WRONG_SHARD', `${node} does not serve ${userId}'s shard`),
    publishStatus: (userId, status) => heard({ node, userId, status, atMs: world.scheduler.nowMs() }),
    askAllowance,
  })
  return {
    node,
    service,
    replicas,
    ledger,
    async close() {
      service.close()
      await ledger.close()
      await replicas.close()
    },
  }
}

export interface SettlementSim {
  readonly settler: Settler
  readonly replicas: ReplicaSync
  readonly ledger: LedgerSync
  close(): Promise<void>
}

export async function startSettlement(
  world: World,
  backend: Backend,
  node: string,
  heard: (final: HeardFinal) => void,
): Promise<SettlementSim> {
  const { clock, replicas, ledger } = await joinWorld(world, backend, node)
  const projection = openProjection(':memory:', SHARDS)
  const settler = createSettler({
    replicas,
    ledger,
    projection,
    log,
    now: clock,
    publishFinal: (userId, status) => heard({ node, userId, status, atMs: world.scheduler.nowMs() }),
  })
  const stopPasses = world.timers(node).setInterval(() => settler.pass(), SETTLE_PASS_MS)
  return {
    settler,
    replicas,
    ledger,
    async close() {
      stopPasses()
      settler.close()
      await ledger.close()
      await replicas.close()
      projection.close()
    },
  }
}
