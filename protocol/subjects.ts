/**
 * Every NATS subject, queue group, stream and bucket name of the fabric, in one place. Nodes, the
 * gateway, scripts and tests build subjects only with these; a test checks that no other source
 * file spells one out.
 *
 * | what | subject |
 * |---|---|
 * | bets, deposits, status lookups (queue group `bets-api`) | `bets.place[.<region>].<shard>`, `admin.deposit[.<region>].<shard>`, `bets.lookup[.<region>].<shard>` |
 * | liability allowance between shards (queue group `bets-api`) | `allowance.grant[.<region>].<shard>` |
 * | API nodes: announcements, and each node's own placement subject | `bets.nodes`, `bets.direct.<id>` |
 * | a user's bet statuses (final, settled) | `bets.status.<userId>` |
 * | settlement queries (queue group `bets-settlement`) | `bets.history[.<region>].<shard>.<userId>`, `bets.balance[.<region>].<shard>.<userId>`, `bets.exposure[.<region>].<shard>` (body `{ gameId, marketId }`) |
 * | CRDT updates (stream `FABRIC_<REGION>`) | `fabric.<region>.game.<gameId>` |
 * | writer beats (one per writer process, for all its games; writer-beats.ts) | `heartbeat.<region>.writers` |
 * | money (stream `LEDGER_<REGION>_<SHARD>`, one per shard) | `ledger.<region>.<shard>.<userId>`, `ledger.<region>.<shard>.settlements`, `ledger.<region>.<shard>.bets`, `ledger.<region>.<shard>.~book` (allowance transfers) |
 * | the trader's kill switch | `trader.<region>.kill`, `trader.<region>.resume` |
 * | the clock probe | `clock.<region>.probe` |
 *
 * `<region>` appears in a super-cluster only (each request goes to the user's home region), and
 * `<shard>` is the user's ledger shard (protocol/shards.ts): every request about a user goes to the
 * nodes that serve that user's shard.
 */

import { shardOf } from './shards.ts'

/** The bases of the requests about a user; a request goes to `<base>[.<region>].<shard>`. */
export const PLACE_BASE = 'bets.place'
export const DEPOSIT_BASE = 'admin.deposit'
/**
 * Status recovery: `{ userId, betIds }` asks an API node for the final and settled statuses it
 * holds for those bets of that user (protocol/bets.ts). Status events are core NATS and may be
 * lost (a server paused or cut off); a client that missed one asks again.
 */
export const LOOKUP_BASE = 'bets.lookup'
/**
 * Liability allowance between ledger shards: an API node whose shard used its share of a market's
 * limit asks `allowance.grant[.<region>].<shard>` of another shard (protocol/allowance.ts).
 */
export const ALLOWANCE_BASE = 'allowance.grant'
export const QUEUE_GROUP = 'bets-api'
/**
 * API nodes announce themselves on `bets.nodes` (protocol/api-nodes.ts), each with a subject of
 * its own, `bets.direct.<id>`, where it takes placements of every shard it serves: a gateway that
 * got no answer from one node in time sends the bet, same id, to another (hedging).
 */
export const API_NODES_SUBJECT = 'bets.nodes'
export const DIRECT_BASE = 'bets.direct'
export const directSubject = (id: string) => `${DIRECT_BASE}.${id}`
export const SETTLEMENT_QUEUE = 'bets-settlement'

/**
 * `base` in a lone region, `base.<region>` in a super-cluster, where a client sends each request to
 * the user's home region (regions.ts, `homeRegionOf`).
 */
export function routedSubject(base: string, region: string | null): string {
  return region === null ? base : `${base}.${region}`
}

/** Where the nodes serving `shard` take requests of kind `base` (a queue group per subject). */
export const shardSubject = (base: string, shard: number, region: string | null = null) =>
  `${routedSubject(base, region)}.${shard}`

/** Where a request of kind `base` about `userId` goes: the user's shard of `shards`. */
export const userShardSubject = (
  base: string,
  userId: string,
  shards: number,
  region: string | null = null,
) => shardSubject(base, shardOf(userId, shards), region)

/**
 * How a client addresses a request about a user: `<base>[.<home region>].<shard>`. Every client of
 * the nodes (the gateway, tools, tests) builds its subjects with one, made from the region's shard
 * count and, in a super-cluster, the users' home regions.
 */
export type UserRouting = (base: string, userId: string) => string

export function userRouting(
  shards: number,
  homeRegion: (userId: string) => string | null = () => null,
): UserRouting {
  return (base, userId) => userShardSubject(base, userId, shards, homeRegion(userId))
}

export const placeSubject = (userId: string, shards: number, region: string | null = null) =>
  userShardSubject(PLACE_BASE, userId, shards, region)
export const depositSubject = (userId: string, shards: number, region: string | null = null) =>
  userShardSubject(DEPOSIT_BASE, userId, shards, region)
export const lookupSubject = (userId: string, shards: number, region: string | null = null) =>
  userShardSubject(LOOKUP_BASE, userId, shards, region)

export const statusSubject = (userId: string) => `bets.status.${userId}`
/** Every user's statuses: what a gateway relays from. */
export const ALL_STATUSES_SUBJECT = 'bets.status.*'
/** Settlement queries: the verb, routed like placements, then the shard and the user id. */
export const HISTORY_BASE = 'bets.history'
export const BALANCE_BASE = 'bets.balance'
export const EXPOSURE_BASE = 'bets.exposure'
export const historySubject = (userId: string, shards: number, region: string | null = null) =>
  `${userShardSubject(HISTORY_BASE, userId, shards, region)}.${userId}`
export const balanceSubject = (userId: string, shards: number, region: string | null = null) =>
  `${userShardSubject(BALANCE_BASE, userId, shards, region)}.${userId}`
/**
 * One shard's part of a market's exposure: request `{ gameId, marketId }`
 * (nodes/settlement/settlement-node.ts). A market's exposure is the sum over the region's shards.
 */
export const exposureSubject = (shard: number, region: string | null = null) =>
  shardSubject(EXPOSURE_BASE, shard, region)

export const killSubject = (region: string) => `trader.${region}.kill`
export const resumeSubject = (region: string) => `trader.${region}.resume`
/** Hand a game over: its trader stands down, and a standby of the game takes it over. */
export const releaseSubject = (region: string) => `trader.${region}.release`
export const probeSubject = (region: string) => `clock.${region}.probe`

/** Streams, buckets and the subjects they hold. */
export const names = {
  fabricStream: (region: string) => `FABRIC_${region.toUpperCase().replaceAll('-', '_')}`,
  /** One ledger shard's stream. */
  ledgerStream: (region: string, shard: number) =>
    `LEDGER_${region.toUpperCase().replaceAll('-', '_')}_${shard}`,
  /** The one ledger stream of a region from before shard streams: its presence means old data. */
  unshardedLedgerStream: (region: string) => `LEDGER_${region.toUpperCase().replaceAll('-', '_')}`,
  snapshotBucket: (region: string) => `snapshots_${region.replaceAll('-', '_')}`,
  gameSubject: (region: string, gameId: string) => `fabric.${region}.game.${gameId}`,
  allGamesSubject: (region: string) => `fabric.${region}.game.*`,
  /** Writer processes' beats (nodes/fabric/writer-beats.ts): one subject per region. */
  beatSubject: (region: string) => `heartbeat.${region}.writers`,
  snapshotKey: (gameId: string) => `game.${gameId}`,
  /** An archived game's final snapshot (nodes/fabric/archive.ts). */
  archiveKey: (gameId: string) => `archive.${gameId}`,
  /** A ledger shard's checkpoint head, and its chunks (nodes/fabric/ledger-checkpoints.ts). */
  ledgerCheckpointKey: (shard: number) => `ledger.${shard}`,
  ledgerCheckpointChunkKey: (shard: number, id: string, index: number) => `ledger.${shard}.${id}.${index}`,
  /** A writer's clock ceiling in the snapshot bucket (nodes/trader/clock-ceiling.ts). */
  ceilingKey: (writer: string) => `ceiling.${writer}`,
  /** A writer's ceiling for one game, as versions before one ceiling per writer kept it. */
  gameCeilingKey: (gameId: string, writer: string) => `clock.${gameId}.${writer}`,
  ledgerSubject: (region: string, shard: number, userId: string) => `ledger.${region}.${shard}.${userId}`,
  /** One shard's entries: what its stream holds. */
  ledgerShardSubject: (region: string, shard: number) => `ledger.${region}.${shard}.*`,
  /** Every shard's entries of a region. */
  allLedgerSubject: (region: string) => `ledger.${region}.*.*`,
  /** Batches of settlements (ledger/); the last token names no user. */
  ledgerBatchSubject: (region: string, shard: number, kind: 'settlements' | 'bets') =>
    `ledger.${region}.${shard}.${kind}`,
}

/** The streams of a super-cluster (nodes/fabric/regions.ts). */
export const regionNames = {
  /** GLOBAL_ cannot start a region's name (FABRIC_, LEDGER_, KV_ do), so this never collides. */
  globalFabricStream: (region: string) => `GLOBAL_${names.fabricStream(region)}`,
  /** Every region's updates of every game, as GLOBAL_FABRIC_<R> holds them. */
  everyRegionGamesSubject: 'fabric.*.game.*',
  /** Every region's writer beats. */
  everyRegionBeatsSubject: 'heartbeat.*.writers',
}
