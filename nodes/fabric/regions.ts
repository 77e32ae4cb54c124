/**
 * The fabric's JetStream layout across regions (docs/architecture.md, "Regions"): one NATS cluster per
 * region, joined by gateways into a super-cluster.
 *
 * | what                        | object                             | placed in | holds                        |
 * |-----------------------------|------------------------------------|-----------|------------------------------|
 * | a region's own CRDT updates | stream FABRIC_<R>, R3              | R         | fabric.<r>.game.<gameId>     |
 * | every region's updates      | stream GLOBAL_FABRIC_<R>, R3       | R         | sources FABRIC_<X> for all X |
 * | money and bets, per shard   | stream LEDGER_<R>_<S>, R3, not sourced | R     | ledger.<r>.<s>.<userId>      |
 * | snapshots                   | KV bucket snapshots_<r>, R3        | R         | key: game.<gameId>           |
 *
 * Writers publish to their own region's FABRIC_<R> exactly as in one region (streams.ts). Each
 * region's GLOBAL_FABRIC_<R> sources every region's FABRIC_<X>, its own included, so it holds
 * every region's updates under their original subjects; replicas in R read it. A user's ledger
 * lives in the user's home region only.
 *
 * How JetStream behaves in a 2.9 super-cluster, measured on nats-server 2.9.10 with regions of
 * three servers (scripts/nats-cluster.ts, `startSuperCluster`; a cut was made by SIGSTOPping
 * every server of the other regions, which looks exactly like a silent network to the rest):
 *
 * - There is ONE meta group over all servers of all regions: every server's /jsz names the same
 *   meta leader, with cluster_size 6 for two regions. A stream goes to the cluster named by
 *   `placement.cluster`; without it, to the cluster of the server the creating client is connected
 *   to. That default depends on where a connection happens to land, so everything here is placed.
 * - The meta group needs a majority of ALL servers. With two regions a cut leaves 3 of 6 on each
 *   side: neither side has a meta leader. With three regions, the two that still see each other
 *   (6 of 9) elected a new meta leader about 8 s after the cut and could create streams and
 *   consumers; the region alone (3 of 9) could not.
 * - In a region without a meta leader, what already exists keeps working, because each R3 stream
 *   or durable consumer is its own Raft group inside the region: publishes to the region's streams
 *   are acked, KV puts succeed, existing durable and ordered consumers keep delivering, stream info
 *   answers, and GLOBAL_FABRIC_<R> keeps sourcing its own region's updates. Stream leaders still
 *   fail over inside the region: after a SIGKILL of the server leading FABRIC_<R>, publishes failed
 *   for about 5 s (nats.js reports the missing responder as "jetstream is not enabled") and then
 *   succeeded on a new leader; the sourcing into GLOBAL_FABRIC_<R> resumed by itself.
 * - Everything that goes through the meta leader fails there: creating, updating or deleting a
 *   stream, and creating ANY consumer, ordered (ephemeral) ones included, so an ordered consumer
 *   that must be re-created (its server died, or it missed heartbeats) stays down until the cut
 *   heals; nats.js re-created one about 7 s after the heal. `jetstreamManager(nc)` fails too, since
 *   its default API check asks for account info. While the old meta leader still believes it leads
 *   (15-20 s after the cut), these calls time out; after it steps down they fail at once with 503
 *   "JetStream system temporarily unavailable" (10008). Publishing to another region's subjects
 *   times out.
 * - After the heal, every server named the same meta leader within 1-6 s, and each sourced stream
 *   had caught up within 5-13 s: a source resumes after the last sequence it stored, so an update
 *   made on either side during the cut arrives once, late.
 *
 * Two server behaviours shape the layout:
 *
 * - 2.9.10 refuses sources that form a cycle by stream name, whatever their filter subjects
 *   ("detected cycle"), so FABRIC_EU and FABRIC_US cannot source each other. 2.9.12 and later
 *   (nats-server commit f4e6481ce) accept such a cycle when no filter overlaps the sourcing
 *   stream's own subjects; the layout above has no cycle, so it runs on both.
 * - A stream deduplicates SOURCED messages by Nats-Msg-Id too, across all its sources: when two
 *   regions published different updates under one id, each region's merged stream kept only the
 *   one it saw first, and the regions diverged. Message ids must therefore be unique across the
 *   super-cluster: writers use HLC stamps, which carry the node id, so node ids must be unique
 *   across regions. The merged stream's window is the server's minimum; it cannot be turned off.
 */

import {
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  type Placement,
  type StreamConfig,
} from '@nats-io/jetstream'
import { Kvm } from '@nats-io/kv'
import type { NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { shardOf } from '../../protocol/shards.ts'
import { regionNames } from '../../protocol/subjects.ts'
import { createLedgerSync, type LedgerSync, type LedgerSyncOptions } from './ledger-sync.ts'
import { createReplicaSync, type ReplicaSync, type ReplicaSyncOptions } from './replica-sync.ts'
import {
  assertRegion,
  DEFAULT_STREAM_LIMITS,
  ensureFabric,
  ensureLedger,
  ensureStream,
  type FabricObjects,
  type FormingRetry,
  fabricStream,
  ledgerStreams,
  limitsWithShards,
  logFormingRetry,
  names,
  retryWhileForming,
  type StreamLimits,
  snapshotBucketOptions,
} from './streams.ts'
import { type AppendHedge, natsTransport } from './transport.ts'

/**
 * Every region's merged stream reserves room for every region's updates on each of its servers:
 * with the default limits that is 1 GiB plus 256 MiB per region, and nats.conf allows 2 GiB.
 */
export const REGIONS_MAX = 4
/** The smallest duplicate window nats-server accepts; see the header for why the merged stream wants it. */
export const MERGED_DUPLICATE_WINDOW_MS = 100
const NANOS_PER_MS = 1_000_000

type NamedStreamConfig = Partial<StreamConfig> & { name: string }

export function assertRegions(region: string, allRegions: readonly string[]): void {
  for (const each of allRegions) assertRegion(each)
  if (allRegions.length > REGIONS_MAX) {
    throw new RangeError(`at most ${REGIONS_MAX} regions, got ${allRegions.length}`)
  }
  if (new Set(allRegions).size !== allRegions.length) {
    throw new RangeError(`regions must be distinct: ${allRegions.join(', ')}`)
  }
  if (!allRegions.includes(region)) {
    throw new RangeError(`region ${JSON.stringify(region)} is not one of ${allRegions.join(', ')}`)
  }
}

function placedIn(region: string): Placement {
  return { cluster: region, tags: [] }
}

/** The region's own updates, as in one region but kept on the region's own servers. */
export function regionalFabricStream(region: string, limits: StreamLimits): NamedStreamConfig {
  return { ...fabricStream(region, limits), placement: placedIn(region) }
}

/** Every region's updates, sourced from each region's FABRIC_<X> (none of which sources anything). */
export function globalFabricStream(
  region: string,
  allRegions: readonly string[],
  limits: StreamLimits,
): NamedStreamConfig {
  // No subjects of its own: writers publish to FABRIC_<R>, and a second stream on the same
  // subjects would be refused as an overlap anyway.
  const { subjects: _written, ...config } = fabricStream(region, limits)
  return {
    ...config,
    name: regionNames.globalFabricStream(region),
    max_bytes: limits.fabricBytesMax * allRegions.length,
    duplicate_window: MERGED_DUPLICATE_WINDOW_MS * NANOS_PER_MS,
    // Followers read on by direct gets while no consumer can be opened (direct-reading.ts).
    allow_direct: true,
    placement: placedIn(region),
    sources: allRegions.map((origin) => ({
      name: names.fabricStream(origin),
      // Takes only the origin's own updates, should an origin ever hold sourced ones too.
      filter_subject: names.allGamesSubject(origin),
    })),
  }
}

/** A user's ledger stays in the user's home region: its shard streams are never sourced elsewhere. */
export function regionalLedgerStreams(region: string, limits: StreamLimits): NamedStreamConfig[] {
  return ledgerStreams(region, limits).map((config) => ({ ...config, placement: placedIn(region) }))
}

/**
 * Create (or bring to this config) the region's streams and snapshot bucket in a super-cluster;
 * safe to run from every node of every region at once, in any order (a source waits for a stream
 * that does not exist yet). What already matches is left alone, using calls that need no meta
 * leader, so a node restarting in a region cut off from the others can still start.
 */
export function ensureRegionalFabric(
  nc: NatsConnection,
  region: string,
  allRegions: readonly string[],
  limits = DEFAULT_STREAM_LIMITS,
  onRetry?: FormingRetry,
): Promise<FabricObjects> {
  assertRegions(region, allRegions)
  return retryWhileForming(() => ensureRegionalFabricOnce(nc, region, allRegions, limits), { onRetry })
}

async function ensureRegionalFabricOnce(
  nc: NatsConnection,
  region: string,
  allRegions: readonly string[],
  limits: StreamLimits,
): Promise<FabricObjects> {
  // The default API check asks the meta leader for account info, which a cut-off region has not got.
  const js = jetstream(nc, { checkAPI: false })
  const jsm = await jetstreamManager(nc, { checkAPI: false })
  const ensure = (jsm: JetStreamManager, config: NamedStreamConfig) => ensureStreamHolds(jsm, config, nc)
  await ensure(jsm, regionalFabricStream(region, limits))
  await ensure(jsm, globalFabricStream(region, allRegions, limits))
  await ensureLedger(jsm, region, limits, regionalLedgerStreams(region, limits), ensure)
  // Kvm.create only looks the bucket up when it exists, and creates it otherwise.
  const snapshots = await new Kvm(js).create(names.snapshotBucket(region), {
    ...snapshotBucketOptions(limits),
    placement: placedIn(region),
  })
  return { jsm, snapshots }
}

/** Stream info is answered by the stream's own leader; only a missing or different stream needs the meta leader. */
async function ensureStreamHolds(
  jsm: JetStreamManager,
  config: NamedStreamConfig,
  nc: NatsConnection,
): Promise<void> {
  let existing: StreamConfig | undefined
  try {
    existing = (await jsm.streams.info(config.name)).config
  } catch (error) {
    if (!/stream not found/i.test(errorText(error))) throw error
  }
  if (existing && holds(existing, config)) return
  await ensureStream(jsm, config, nc)
}

/** True when `actual` has every value `wanted` sets; the server adds defaults and omits empty lists. */
function holds(actual: unknown, wanted: unknown): boolean {
  if (Array.isArray(wanted)) {
    const list: unknown[] = Array.isArray(actual) ? actual : []
    return list.length === wanted.length && wanted.every((item, i) => holds(list[i], item))
  }
  if (typeof wanted === 'object' && wanted !== null) {
    const record: Record<string, unknown> = typeof actual === 'object' && actual !== null ? { ...actual } : {}
    return Object.entries(wanted).every(([key, value]) => holds(record[key], value))
  }
  return actual === wanted
}

function errorText(error: unknown): string {
  return String((error as { message?: string })?.message ?? error)
}

/** Whether a node's `--regions` name a super-cluster (more than its own region). */
export function isSuperCluster(regions: readonly string[] | undefined): regions is readonly string[] {
  return regions !== undefined && regions.length > 1
}

/** The region that routes a node's subjects (`bets.place.<region>`, ...): null in a lone region. */
export function routedRegion(region: string, regions: readonly string[] | undefined): string | null {
  return isSuperCluster(regions) ? region : null
}

/**
 * The fabric of a node: its region's alone, or, given every region of a super-cluster, the regional
 * layout; with the ledger's `shards` streams, or none for a process that never touches the ledger (0).
 * With `log`, each retry while JetStream forms is logged.
 */
export function ensureFabricFor(
  nc: NatsConnection,
  region: string,
  regions: readonly string[] | undefined,
  shards = 0,
  log?: Logger,
): Promise<FabricObjects> {
  const limits = limitsWithShards(shards)
  const onRetry = log === undefined ? undefined : logFormingRetry(log)
  return isSuperCluster(regions)
    ? ensureRegionalFabric(nc, region, regions, limits, onRetry)
    : ensureFabric(nc, region, limits, onRetry)
}

/**
 * A user's home region, where the user's ledger lives: a stable hash of the user id over the
 * regions in the order configured (every node must list them in the same order). A real
 * deployment would read it from the account; the hash keeps tests and demos self-contained.
 */
export function homeRegionOf(userId: string, regions: readonly string[]): string {
  if (regions.length === 0) throw new RangeError('no regions')
  return regions[shardOf(userId, regions.length)] as string
}

/**
 * What every node does first: make sure the fabric exists (one region's, or the regional layout of
 * a super-cluster), then restore and follow its replicas.
 */
export async function joinFabric(
  options: Omit<ReplicaSyncOptions, 'transport'> & {
    readonly nc: NatsConnection
    readonly regions?: readonly string[]
    /** The region's ledger shards, whose streams are made sure of too; none by default (a gateway). */
    readonly shards?: number
  },
): Promise<ReplicaSync> {
  const { nc, shards, ...rest } = options
  return createReplicaSync({
    ...rest,
    transport: await natsFabricTransport(nc, options.region, options.regions, shards, undefined, options.log),
  })
}

/** The transport of a node over NATS (transport.ts), its region's streams made sure of first. */
export async function natsFabricTransport(
  nc: NatsConnection,
  region: string,
  regions: readonly string[] | undefined,
  shards = 0,
  hedge?: AppendHedge,
  log?: Logger,
): Promise<ReturnType<typeof natsTransport>> {
  const { snapshots } = await ensureFabricFor(nc, region, regions, shards, log)
  return natsTransport(nc, snapshots, hedge)
}

/** The region's ledger over NATS, its streams made sure of first (see joinFabric). */
export async function joinLedger(
  options: Omit<LedgerSyncOptions, 'transport'> & {
    readonly nc: NatsConnection
    readonly regions?: readonly string[]
  },
): Promise<LedgerSync> {
  const { nc, regions, ...rest } = options
  return createLedgerSync({
    ...rest,
    transport: await natsFabricTransport(nc, options.region, regions, options.shards, undefined, options.log),
  })
}
