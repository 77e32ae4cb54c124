/**
 * Every NATS subject, queue group, stream and bucket name of the fabric, in one place. Nodes, the
 * gateway, scripts and tests build subjects only with these; a test checks that no other source
 * file spells one out.
 *
 * | what | subject |
 * |---|---|
 * | bets, deposits, status lookups (queue group `bets-api`) | `bets.place`, `admin.deposit`, `bets.lookup` (`.<region>` in a super-cluster) |
 * | a user's bet statuses (final, settled) | `bets.status.<userId>` |
 * | settlement queries (queue group `bets-settlement`) | `bets.history[.<region>].<userId>`, `bets.balance[.<region>].<userId>`, `bets.exposure[.<region>]` (body `{ gameId, marketId }`) |
 * | CRDT updates (stream `FABRIC_<REGION>`) | `fabric.<region>.game.<gameId>` |
 * | heartbeats | `heartbeat.<region>.game.<gameId>` |
 * | money (stream `LEDGER_<REGION>`) | `ledger.<region>.<shard>.<userId>`, `ledger.<region>.<shard>.settlements` |
 * | the trader's kill switch | `trader.<region>.kill`, `trader.<region>.resume` |
 * | the clock probe | `clock.<region>.probe` |
 */

export const PLACE_SUBJECT = 'bets.place'
export const DEPOSIT_SUBJECT = 'admin.deposit'
/**
 * Status recovery: `{ userId, betIds }` asks an API node for the final and settled statuses it
 * holds for those bets of that user (protocol/bets.ts). Status events are core NATS and may be
 * lost (a server paused or cut off); a client that missed one asks again.
 */
export const LOOKUP_SUBJECT = 'bets.lookup'
export const QUEUE_GROUP = 'bets-api'
export const SETTLEMENT_QUEUE = 'bets-settlement'

/**
 * Where a region's nodes take requests: `bets.place` in a lone region, `bets.place.<region>` in a
 * super-cluster, where a client sends each request to the user's home region (regions.ts,
 * `homeRegionOf`). The same goes for deposits, lookups and settlement queries.
 */
export function routedSubject(base: string, region: string | null): string {
  return region === null ? base : `${base}.${region}`
}

export const statusSubject = (userId: string) => `bets.status.${userId}`
/** Every user's statuses: what a gateway relays from. */
export const ALL_STATUSES_SUBJECT = 'bets.status.*'
/** Settlement queries: the verb, routed like placements, then the user or market id. */
export const HISTORY_SUBJECT = 'bets.history'
export const BALANCE_SUBJECT = 'bets.balance'
export const EXPOSURE_SUBJECT = 'bets.exposure'
export const historySubject = (userId: string, region: string | null = null) =>
  `${routedSubject(HISTORY_SUBJECT, region)}.${userId}`
export const balanceSubject = (userId: string, region: string | null = null) =>
  `${routedSubject(BALANCE_SUBJECT, region)}.${userId}`
/** A market's exposure: request `{ gameId, marketId }` (nodes/settlement/settlement-node.ts). */
export const exposureSubject = (region: string | null = null) => routedSubject(EXPOSURE_SUBJECT, region)

export const killSubject = (region: string) => `trader.${region}.kill`
export const resumeSubject = (region: string) => `trader.${region}.resume`
export const probeSubject = (region: string) => `clock.${region}.probe`

/** Streams, buckets and the subjects they hold. */
export const names = {
  fabricStream: (region: string) => `FABRIC_${region.toUpperCase().replaceAll('-', '_')}`,
  ledgerStream: (region: string) => `LEDGER_${region.toUpperCase().replaceAll('-', '_')}`,
  snapshotBucket: (region: string) => `snapshots_${region.replaceAll('-', '_')}`,
  gameSubject: (region: string, gameId: string) => `fabric.${region}.game.${gameId}`,
  allGamesSubject: (region: string) => `fabric.${region}.game.*`,
  heartbeatSubject: (region: string, gameId: string) => `heartbeat.${region}.game.${gameId}`,
  allHeartbeatsSubject: (region: string) => `heartbeat.${region}.game.*`,
  snapshotKey: (gameId: string) => `game.${gameId}`,
  /** A writer's clock ceiling in the snapshot bucket (nodes/trader/clock-ceiling.ts). */
  ceilingKey: (gameId: string, writer: string) => `clock.${gameId}.${writer}`,
  ledgerSubject: (region: string, shard: number, userId: string) => `ledger.${region}.${shard}.${userId}`,
  ledgerShardSubject: (region: string, shard: number) => `ledger.${region}.${shard}.*`,
  /** Every shard's entries of a region: what its ledger stream holds. */
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
  /** Every region's heartbeats. */
  everyRegionHeartbeatsSubject: 'heartbeat.*.game.*',
}
