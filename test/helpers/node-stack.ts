/**
 * The stacks node tests need, on real nats-server clusters. `startNodeStack`: one region on a
 * 3-server cluster, with manual traders of game `match-1` (writer `trader-1` unless told otherwise),
 * API nodes and, when asked, settlement nodes with SQLite files in a temporary folder; the test can
 * start more nodes later, to replace or restart one it stopped. `startRegionStack`: a super-cluster,
 * a trader in the first region and an API and a settlement node in every region. Every node is
 * closed, the cluster stopped and the folder removed when the test ends.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { NatsConnection } from '@nats-io/transport-node'
import pino from 'pino'
import type { Test } from 'tap'
import { yjsBackend } from '../../crdt/index.ts'
import type { BetRelay } from '../../gateway/bets.ts'
import type { BetFrame, ErrorFrame, PlaceFrame } from '../../gateway/protocol.ts'
import { type ApiNode, type ApiNodeOptions, startApiNode } from '../../nodes/api/api-node.ts'
import { type SettlementNode, startSettlementNode } from '../../nodes/settlement/settlement-node.ts'
import type { FeedAdapter } from '../../nodes/trader/feed.ts'
import { marketIds } from '../../nodes/trader/point-markets.ts'
import { createManualFeed, type ManualFeed } from '../../nodes/trader/replay-feed.ts'
import { startTraderNode, type TraderNode } from '../../nodes/trader/trader-node.ts'
import type { TraderLimits, TraderRole } from '../../nodes/trader/trader-types.ts'
import type { PlaceBetReply } from '../../protocol/bets.ts'
import { depositSubject, placeSubject } from '../../protocol/subjects.ts'
import {
  type NatsCluster,
  type NatsSuperCluster,
  startNatsCluster,
  startSuperCluster,
} from '../../scripts/nats-cluster.ts'
import { waitFor } from './wait.ts'

export const STACK_REGION = 'eu'
export const STACK_GAME = 'match-1'
/** The ledger shards of a stack's region unless a test asks for another count. */
export const STACK_SHARDS = 4
const DEFAULT_TRADERS = ['trader-1']
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })

export type ManualTraderNode = TraderNode & { readonly feed: ManualFeed }

export interface NodeStackOptions {
  readonly shards?: number
  readonly apiNodes?: readonly string[]
  readonly settlementNodes?: readonly string[]
  /**
   * The game's writers, each run by a manual trader started with the stack, in this order: the
   * first active, the others standbys. `['trader-1']` by default; `[]` for a test that starts its
   * own trader with `startTrader`.
   */
  readonly traders?: readonly string[]
  /** The traders' limits, over the defaults. */
  readonly traderLimits?: Partial<TraderLimits>
  /** How often the traders write replica snapshots; 0 (never) by default. */
  readonly snapshotIntervalMs?: number
  /** The traders' clock; the machine's by default. */
  readonly traderClock?: () => number
  /** How long after its match ends the traders archive it; the default otherwise. */
  readonly traderArchiveAfterMs?: number
  /** Each API node's clock, by node id; the machine's by default. */
  readonly apiClocks?: Readonly<Record<string, () => number>>
  /** Every API node's bet limits, over the defaults. */
  readonly apiLimits?: ApiNodeOptions['limits']
}

/** A trader the test drives with a feed of its own. */
export interface StackTraderOptions {
  readonly node: string
  readonly feed: FeedAdapter
  /** Its clock; the stack's trader clock by default. */
  readonly now?: () => number
}

export interface NodeStack {
  readonly cluster: NatsCluster
  /** The region's ledger shards. */
  readonly shards: number
  /** The active trader, the first of `traders`; there is none when `traders` is empty. */
  readonly trader: ManualTraderNode
  readonly traders: readonly ManualTraderNode[]
  /** The API nodes of `apiNodes`, in order; not those started later. */
  readonly apis: readonly ApiNode[]
  /** The settlement nodes of `settlementNodes`, in order; not those started later. */
  readonly settlements: readonly SettlementNode[]
  /** A connection for the test's own requests. */
  readonly client: NatsConnection
  /** The temporary folder of the settlement nodes' SQLite files, removed when the test ends. */
  readonly dir: string
  /** Start another API node, a replacement for one the test stopped, say. */
  startApi(node: string, options?: ShardOptions): Promise<ApiNode>
  /** Start a settlement node; a node id used before reopens its SQLite file, as a restart does. */
  startSettlement(node: string, options?: ShardOptions): Promise<SettlementNode>
  /** Start a trader of the game driven by `feed` as its only writer, in a stack of `traders: []`. */
  startTrader(options: StackTraderOptions): Promise<TraderNode>
}

/**
 * Where a stack's nodes run and what they share. Every node started is closed, once, in the reverse
 * order of starting, before the cluster stops; a node the test closed itself is not closed again.
 */
interface Site {
  connect(region: string): Promise<NatsConnection>
  /** Every region of a super-cluster; undefined on a single cluster. */
  readonly regions?: readonly string[]
  readonly shards: number
  readonly dir: string
  readonly started: { close(): Promise<void> }[]
}

function createSite(t: Test, site: Omit<Site, 'dir' | 'started'>): Site {
  const dir = mkdtempSync(join(tmpdir(), 'node-stack-'))
  const started: Site['started'] = []
  t.teardown(async () => {
    for (const node of started.reverse()) await node.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return { ...site, dir, started }
}

/** The node, with a `close` that runs once however often it is called, closed at teardown. */
function tracked<Node extends { close(): Promise<void> }>(site: Site, node: Node): Node {
  let closing: Promise<void> | undefined
  const once = { ...node, close: () => (closing ??= node.close()) }
  site.started.push(once)
  return once
}

function regional(site: Site, region: string) {
  return { region, backend: yjsBackend, ...(site.regions ? { regions: site.regions } : {}) }
}

/** The ledger shards a node serves (all by default), and a counter of the ledger messages it reads. */
export interface ShardOptions {
  readonly served?: readonly number[]
  readonly onLedgerRead?: (shard: number) => void
}

const shardOptions = (options: ShardOptions) => ({
  ...(options.served ? { served: options.served } : {}),
  ...(options.onLedgerRead ? { onLedgerRead: options.onLedgerRead } : {}),
})

interface ApiOptions extends ShardOptions {
  readonly clock?: () => number
  readonly limits?: ApiNodeOptions['limits']
}

async function startApi(
  site: Site,
  region: string,
  node: string,
  options: ApiOptions = {},
): Promise<ApiNode> {
  const api = await startApiNode({
    nc: await site.connect(region),
    ...regional(site, region),
    node,
    shards: site.shards,
    log: log.child({ node }),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.limits ? { limits: options.limits } : {}),
    ...shardOptions(options),
  })
  return tracked(site, api)
}

async function startSettlement(
  site: Site,
  region: string,
  node: string,
  options: ShardOptions = {},
): Promise<SettlementNode> {
  const settlement = await startSettlementNode({
    nc: await site.connect(region),
    ...regional(site, region),
    node,
    shards: site.shards,
    databasePath: join(site.dir, `${node}.db`),
    log: log.child({ node }),
    ...shardOptions(options),
  })
  return tracked(site, settlement)
}

interface TraderOptions extends StackTraderOptions {
  readonly writers: readonly string[]
  readonly role?: Exclude<TraderRole, 'fenced'>
  readonly limits?: Partial<TraderLimits>
  readonly snapshotIntervalMs?: number
  readonly archiveAfterMs?: number | undefined
}

async function startTrader(site: Site, region: string, options: TraderOptions): Promise<TraderNode> {
  const trader = await startTraderNode({
    nc: await site.connect(region),
    ...regional(site, region),
    node: options.node,
    gameId: STACK_GAME,
    writers: options.writers,
    feed: options.feed,
    log: log.child({ node: options.node }),
    snapshotIntervalMs: options.snapshotIntervalMs ?? 0,
    ...(options.role ? { role: options.role } : {}),
    ...(options.limits ? { limits: options.limits } : {}),
    ...(options.now ? { now: options.now } : {}),
    ...(options.archiveAfterMs !== undefined ? { archiveAfterMs: options.archiveAfterMs } : {}),
  })
  return tracked(site, trader)
}

async function startManualTrader(
  site: Site,
  region: string,
  options: Omit<TraderOptions, 'feed'>,
): Promise<ManualTraderNode> {
  const feed = createManualFeed()
  return { ...(await startTrader(site, region, { ...options, feed })), feed }
}

export async function startNodeStack(t: Test, options: NodeStackOptions = {}): Promise<NodeStack> {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const site = createSite(t, { connect: () => cluster.connect(), shards: options.shards ?? STACK_SHARDS })
  const writers = options.traders ?? DEFAULT_TRADERS
  const traderOptions = {
    writers,
    limits: options.traderLimits,
    snapshotIntervalMs: options.snapshotIntervalMs,
    now: options.traderClock,
    archiveAfterMs: options.traderArchiveAfterMs,
  }
  const traders: ManualTraderNode[] = []
  for (const [i, node] of writers.entries()) {
    const role = i === 0 ? 'active' : 'standby'
    traders.push(await startManualTrader(site, STACK_REGION, { ...traderOptions, node, role }))
  }
  const api = (node: string, shards: ShardOptions = {}) =>
    startApi(site, STACK_REGION, node, {
      clock: options.apiClocks?.[node],
      limits: options.apiLimits,
      ...shards,
    })
  const apis: ApiNode[] = []
  for (const node of options.apiNodes ?? ['api-1']) apis.push(await api(node))
  const settlements: SettlementNode[] = []
  for (const node of options.settlementNodes ?? [])
    settlements.push(await startSettlement(site, STACK_REGION, node))
  return {
    cluster,
    shards: site.shards,
    get trader() {
      const [first] = traders
      if (first === undefined) throw new Error('this stack was started with no manual trader')
      return first
    },
    traders,
    apis,
    settlements,
    client: await cluster.connect(),
    dir: site.dir,
    startApi: api,
    startSettlement: (node, shards) => startSettlement(site, STACK_REGION, node, shards),
    startTrader: (trader) =>
      startTrader(site, STACK_REGION, { ...traderOptions, ...trader, writers: [trader.node] }),
  }
}

export interface RegionStackOptions {
  /** One cluster per region, joined by gateways; the trader runs in the first. */
  readonly regions: readonly string[]
  readonly shards?: number
  /** How long after its match ends the trader archives it; the default otherwise. */
  readonly traderArchiveAfterMs?: number
}

export interface RegionStack {
  readonly cluster: NatsSuperCluster
  /** Each region's ledger shards. */
  readonly shards: number
  /** Writer `trader-1` of game `match-1`, in the first region. */
  readonly trader: ManualTraderNode
  /** `api-<region>` for each region, in the order of `regions`. */
  readonly apis: readonly ApiNode[]
  /** `settle-<region>` for each region, in the order of `regions`. */
  readonly settlements: readonly SettlementNode[]
}

export async function startRegionStack(t: Test, options: RegionStackOptions): Promise<RegionStack> {
  const [first] = options.regions
  if (first === undefined) throw new RangeError('a region stack needs at least one region')
  const cluster = await startSuperCluster({ regions: options.regions })
  t.teardown(() => cluster.close())
  const site = createSite(t, {
    connect: (region) => cluster.connect(region),
    regions: options.regions,
    shards: options.shards ?? STACK_SHARDS,
  })
  const trader = await startManualTrader(site, first, {
    node: 'trader-1',
    writers: DEFAULT_TRADERS,
    archiveAfterMs: options.traderArchiveAfterMs,
  })
  const apis: ApiNode[] = []
  for (const region of options.regions) apis.push(await startApi(site, region, `api-${region}`))
  const settlements: SettlementNode[] = []
  for (const region of options.regions)
    settlements.push(await startSettlement(site, region, `settle-${region}`))
  return { cluster, shards: site.shards, trader, apis, settlements }
}

/**
 * Credit a user through the ledger of the first API node serving the user's shard, and wait until
 * every API node serving it folded it.
 */
export async function deposit(stack: NodeStack, userId: string, amountCents: number): Promise<void> {
  const serving = stack.apis.filter(({ ledger }) => ledger.serves(ledger.shardOf(userId)))
  const [first] = serving
  if (first === undefined) throw new Error(`no API node of the stack serves ${userId}'s shard`)
  const before = first.ledger.foldFor(userId).balance(userId)
  await first.ledger.append({ type: 'deposit', id: `deposit-${userId}-${before}`, userId, amountCents })
  await waitFor(`${userId}'s deposit folded`, () =>
    serving.every((api) => api.ledger.foldFor(userId).balance(userId) === before + amountCents),
  )
}

/** Credit each user through its shard's deposit subject, as a client would; asserts each was credited. */
export async function depositThrough(
  t: Test,
  client: NatsConnection,
  userIds: readonly string[],
  shards: number,
  amountCents: number,
): Promise<void> {
  for (const userId of userIds) {
    const reply = await client.request(
      depositSubject(userId, shards),
      JSON.stringify({ id: `deposit-${userId}`, userId, amountCents }),
      { timeout: 5_000 },
    )
    t.match(reply.json(), { ok: true }, `${userId} funded`)
  }
}

/** A gateway placement frame backing `home` in point 1 of the stack's game at 1.001 under `any`. */
export function placeFrame(betId: string, stakeCents: number): PlaceFrame {
  return {
    type: 'place',
    ref: betId,
    betId,
    gameId: STACK_GAME,
    marketId: marketIds(1).winner,
    selectionId: 'home',
    stakeCents,
    odds: 1_001,
    policy: 'any',
  }
}

/**
 * Watch the users' frames on a gateway relay; returns a bet's answers so far: its provisional
 * verdict or refusal, or an error frame about it.
 */
export function watchAnswers(
  t: Test,
  relay: BetRelay,
  userIds: readonly string[],
): (betId: string) => (BetFrame | ErrorFrame)[] {
  const seen: (BetFrame | ErrorFrame)[] = []
  for (const userId of userIds) t.teardown(relay.watch(userId, (frame) => seen.push(frame)))
  return (betId) =>
    seen.filter((frame) =>
      frame.type === 'error'
        ? frame.ref === betId
        : frame.betId === betId && (frame.status === 'provisional' || frame.status === 'refused'),
    )
}

/** Place a bet on the subject of its user's shard, of a region of `shards` shards (the stack's by default). */
export async function placeBet(
  nc: NatsConnection,
  request: Record<string, unknown>,
  shards = STACK_SHARDS,
): Promise<PlaceBetReply> {
  const subject = placeSubject(String(request.userId), shards)
  const reply = await nc.request(subject, JSON.stringify(request), { timeout: 10_000 })
  return reply.json<PlaceBetReply>()
}

/**
 * Start the match and open point `point` on the stack's trader, and resolve with the point's
 * winner market once every API node holds it.
 */
export async function openPoint(stack: NodeStack, point = 1): Promise<string> {
  if (point === 1) stack.trader.feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  stack.trader.feed.emit({ type: 'point-start', point, server: 'home' })
  const marketId = marketIds(point).winner
  await waitFor(`point ${point} open on every API node`, () =>
    stack.apis.every((api) => api.replicas.replica(STACK_GAME)?.game.markets.get(marketId) !== undefined),
  )
  return marketId
}

/** A placement backing `home` on the stack's game at 1.001 under `any`, with the fields given. */
export function betOn(
  marketId: string,
  fields: { readonly betId: string; readonly userId: string } & Record<string, unknown>,
): Record<string, unknown> {
  return {
    gameId: STACK_GAME,
    marketId,
    selectionId: 'home',
    stakeCents: 1_000,
    odds: 1_001,
    policy: 'any',
    ...fields,
  }
}

/**
 * Where a node's ledger folds stand: each served shard with the last sequence folded of its
 * stream. Two nodes serving the same shards have folded the same messages when these are equal.
 */
export function ledgerPosition(ledger: ApiNode['ledger']): string {
  return ledger.served.map((shard) => `${shard}:${ledger.lastSeq(shard)}`).join(' ')
}
