/**
 * The JetStream objects of the fabric and their names, created idempotently.
 *
 * | what                | object                                   | subjects                           |
 * |---------------------|------------------------------------------|------------------------------------|
 * | CRDT updates        | stream FABRIC_<REGION>, R3               | fabric.<region>.game.<gameId>      |
 * | writer beats        | core NATS, not stored                    | heartbeat.<region>.writers         |
 * | snapshots           | KV bucket snapshots_<region>, R3         | key: game.<gameId>                 |
 * | money and bets      | stream LEDGER_<REGION>_<SHARD>, R3, one per shard | ledger.<region>.<shard>.<userId> |
 * | bet and settlement batches | the shard's stream                | ledger.<region>.<shard>.bets, .settlements |
 *
 * Beats are ephemeral by design: a replica that misses one waits for the next, and their
 * soundness never depends on delivery (see crdt/backend.ts and writer-beats.ts). Everything else is R3 and only
 * 2.9 features are used, so the same code runs on 2.9.10 and on newer servers.
 *
 * The ledger's shard count is fixed when a region is created: each shard stream's description
 * records it, and a node configured with another count refuses to start, as does one that finds
 * the single ledger stream of the layout before shard streams (`LEDGER_<REGION>`): see
 * docs/operations.md for both.
 */

import {
  DiscardPolicy,
  type JetStreamManager,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type StreamConfig,
} from '@nats-io/jetstream'
import { type KV, Kvm, type KvOptions } from '@nats-io/kv'
import type { NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { REGION_PATTERN } from '../../protocol/ids.ts'
import { DEFAULT_SHARDS, SHARDS_MAX } from '../../protocol/shards.ts'
import { names } from '../../protocol/subjects.ts'
import { requestStepDown } from './leader-spread.ts'

export { names }

export const STREAM_REPLICAS = 3
export const DUPLICATE_WINDOW_MS = 120_000
export const UPDATE_BYTES_MAX = 256 * 1024
export const SNAPSHOT_BYTES_MAX = 1024 * 1024
/** One ledger message: an entry, or a batch of settlements packed to fit. */
export const LEDGER_MESSAGE_BYTES_MAX = 16 * 1024
/** Stream byte limits are reserved on every server: together they must fit max_file_store (nats.conf). */
export const FABRIC_STREAM_BYTES_MAX = 256 * 1024 ** 2
/** A region's ledger, over all its shard streams: each shard stream holds an equal part. */
export const LEDGER_STREAM_BYTES_MAX = 512 * 1024 ** 2
export const SNAPSHOT_BUCKET_BYTES_MAX = 256 * 1024 ** 2
const NANOS_PER_MS = 1_000_000

export interface StreamLimits {
  readonly fabricBytesMax: number
  /** The region's ledger over all shards. */
  readonly ledgerBytesMax: number
  readonly replicas: number
  /**
   * Ledger shards (protocol/shards.ts), fixed when the region is created; 0 for a process that
   * never touches the ledger (a trader), which leaves the ledger streams alone.
   */
  readonly ledgerShards: number
}

export const DEFAULT_STREAM_LIMITS: StreamLimits = {
  fabricBytesMax: FABRIC_STREAM_BYTES_MAX,
  ledgerBytesMax: LEDGER_STREAM_BYTES_MAX,
  replicas: STREAM_REPLICAS,
  ledgerShards: DEFAULT_SHARDS,
}

/** The default limits with `shards` ledger shards. */
export const limitsWithShards = (shards: number): StreamLimits => ({
  ...DEFAULT_STREAM_LIMITS,
  ledgerShards: shards,
})

/** A region's ledger layout is not what this process was configured for: it must not start. */
export class LedgerLayoutError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'LedgerLayoutError'
  }
}

const shardDescription = (region: string, shard: number, shards: number) =>
  `ledger shard ${shard} of ${shards} of region ${region}`

export function assertRegion(region: string): void {
  if (!REGION_PATTERN.test(region))
    throw new RangeError(`region must match ${REGION_PATTERN}, got ${JSON.stringify(region)}`)
}

export function fabricStream(region: string, limits: StreamLimits): Partial<StreamConfig> & { name: string } {
  return {
    name: names.fabricStream(region),
    subjects: [names.allGamesSubject(region)],
    storage: StorageType.File,
    num_replicas: limits.replicas,
    retention: RetentionPolicy.Limits,
    // A replica restores from a snapshot and then needs every update after it: never drop
    // updates to make room; refuse new ones and let the writer see the error.
    discard: DiscardPolicy.New,
    max_bytes: limits.fabricBytesMax,
    max_msg_size: UPDATE_BYTES_MAX,
    duplicate_window: DUPLICATE_WINDOW_MS * NANOS_PER_MS,
    // Followers read on by direct gets while no consumer can be opened (direct-reading.ts).
    allow_direct: true,
  }
}

export function ledgerStream(
  region: string,
  shard: number,
  limits: StreamLimits,
): Partial<StreamConfig> & { name: string } {
  return {
    name: names.ledgerStream(region, shard),
    description: shardDescription(region, shard, limits.ledgerShards),
    subjects: [names.ledgerShardSubject(region, shard)],
    storage: StorageType.File,
    num_replicas: limits.replicas,
    retention: RetentionPolicy.Limits,
    // Money is never dropped to make room.
    discard: DiscardPolicy.New,
    max_bytes: Math.floor(limits.ledgerBytesMax / limits.ledgerShards),
    max_msg_size: LEDGER_MESSAGE_BYTES_MAX,
    duplicate_window: DUPLICATE_WINDOW_MS * NANOS_PER_MS,
    // Followers read on by direct gets while no consumer can be opened (direct-reading.ts).
    allow_direct: true,
  }
}

/** Every shard stream of a region's ledger. */
export function ledgerStreams(
  region: string,
  limits: StreamLimits,
): (Partial<StreamConfig> & { name: string })[] {
  return Array.from({ length: limits.ledgerShards }, (_, shard) => ledgerStream(region, shard, limits))
}

/**
 * Refuse a region whose ledger is not laid out for `limits.ledgerShards` shard streams: one that
 * holds the single stream of the layout before shard streams, or shard streams of another count.
 */
export async function checkLedgerLayout(
  jsm: JetStreamManager,
  region: string,
  limits: StreamLimits,
): Promise<void> {
  const { ledgerShards } = limits
  if (!Number.isSafeInteger(ledgerShards) || ledgerShards < 1 || ledgerShards > SHARDS_MAX)
    throw new RangeError(`ledger shards must be 1..${SHARDS_MAX}, got ${ledgerShards}`)
  const found: string[] = []
  for await (const name of jsm.streams.names(names.allLedgerSubject(region))) found.push(name)
  const unsharded = names.unshardedLedgerStream(region)
  if (found.includes(unsharded))
    throw new LedgerLayoutError(
      `region ${region} holds ${unsharded}, the single ledger stream of the layout before shard streams; ` +
        'this version reads one stream per shard and cannot start on it (docs/operations.md, "Ledger shards")',
    )
  const expected = new Set(ledgerStreams(region, limits).map(({ name }) => name))
  const other = found.filter((name) => !expected.has(name))
  if (other.length > 0) {
    const info = await jsm.streams.info(other[0] as string).catch(() => null)
    throw new LedgerLayoutError(
      `region ${region} was created with another ledger shard count (${info?.config.description ?? other.join(', ')}); ` +
        `this process is configured for ${ledgerShards}, and the count is fixed when a region is created`,
    )
  }
  for (const name of found) {
    const info = await jsm.streams.info(name)
    const description = info.config.description ?? ''
    if (!description.endsWith(` of ${ledgerShards} of region ${region}`))
      throw new LedgerLayoutError(
        `${name} says "${description}", but this process is configured for ${ledgerShards} ledger shards; ` +
          'the count is fixed when a region is created',
      )
  }
}

/**
 * Add the stream, or bring an existing one to this config; nodes may race here harmlessly.
 *
 * nats-server 2.9.10 turns `allow_direct` on for a replicated stream's replicas only when its
 * leader changes (an update subscribes them only for a single replica): a stream made by a version
 * before direct gets (direct-reading.ts) would answer none until then. So when this update turns
 * them on, and `nc` is given, the stream's leader is asked to step down once, and the next one awaited.
 */
export async function ensureStream(
  jsm: JetStreamManager,
  config: Partial<StreamConfig> & { name: string },
  nc?: Pick<NatsConnection, 'request'>,
): Promise<void> {
  try {
    await jsm.streams.add(config)
  } catch (error) {
    if (!/already in use/i.test(errorText(error))) throw error
    const before = (await jsm.streams.info(config.name)).config
    await jsm.streams.update(config.name, config)
    if (nc !== undefined && config.allow_direct === true && !before.allow_direct && before.num_replicas > 1) {
      await requestStepDown(nc, config.name)
      await awaitLeaders(jsm, [config.name])
    }
  }
}

function errorText(error: unknown): string {
  return String((error as { message?: string })?.message ?? error)
}

/** How long a stream just created may take to elect its first leader before the attempt fails. */
export const LEADER_WAIT_MS = 10_000
const LEADER_POLL_MS = 50

/**
 * Wait until each stream has a leader: a stream just created takes appends only once its group has
 * elected one (before that, a publish finds no responders), and a region's shard streams elect
 * theirs one by one. Throws a transient error (`leader`) past LEADER_WAIT_MS.
 */
export async function awaitLeaders(jsm: JetStreamManager, streams: readonly string[]): Promise<void> {
  const deadline = Date.now() + LEADER_WAIT_MS
  for (const stream of streams) {
    for (;;) {
      const leader = await jsm.streams.info(stream).then(
        (info) => info.cluster?.leader ?? null,
        () => null,
      )
      if (leader !== null) break
      if (Date.now() >= deadline) throw new Error(`stream ${stream} has no leader yet`)
      await new Promise((resolve) => setTimeout(resolve, LEADER_POLL_MS))
    }
  }
}

/**
 * Make sure of a region's ledger shard streams (`configs`, each with `ensure`), after checking the
 * region's layout, and wait for their leaders; nothing for a process that never touches the ledger.
 */
export async function ensureLedger(
  jsm: JetStreamManager,
  region: string,
  limits: StreamLimits,
  configs: readonly (Partial<StreamConfig> & { name: string })[],
  ensure: (jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }) => Promise<void>,
): Promise<void> {
  if (limits.ledgerShards === 0) return
  await checkLedgerLayout(jsm, region, limits)
  // Each stream is a Raft group of its own: they are created at once, not one election after another.
  await Promise.all(configs.map((config) => ensure(jsm, config)))
  await awaitLeaders(
    jsm,
    configs.map(({ name }) => name),
  )
}

export interface FabricObjects {
  readonly jsm: JetStreamManager
  readonly snapshots: KV
}

/**
 * How long the fabric is tried while JetStream forms: a cluster that has just formed times out
 * JetStream API calls, and after a partition heals nats-server 2.9.10 was seen answering
 * "temporarily unavailable" for over 25 s (a node restarting then died after its tries ran out).
 */
export const ENSURE_FORMING_MS = 120_000
/** The wait after the first try; it grows by as much with each try, up to ENSURE_RETRY_MAX_MS. */
export const ENSURE_RETRY_MS = 500
export const ENSURE_RETRY_MAX_MS = 5_000

/**
 * Errors JetStream gives while it elects its leaders or re-forms (at start, or right after a
 * partition heals), all worth another try: API timeouts and missing responders, no meta or stream
 * leader yet (10008 "JetStream system temporarily unavailable"; a node started just after a heal
 * saw it and died), servers the meta leader does not count yet (10005 "no suitable peers for
 * placement, peer offline": a stream created through a server that has just rejoined), and a
 * region whose JetStream the super-cluster does not know yet ("not enabled").
 */
const TRANSIENT_JETSTREAM_ERROR =
  /timeout|no responders|leader|temporarily unavailable|not enabled|no suitable peers/i

export function isTransientJetStreamError(error: unknown): boolean {
  return TRANSIENT_JETSTREAM_ERROR.test(errorText(error))
}

/**
 * Run `once` until it succeeds, retrying a transient JetStream error for up to `withinMs`
 * (ENSURE_FORMING_MS) with a growing wait (`retryMs` times the attempt, at most
 * ENSURE_RETRY_MAX_MS); any other error, or the last one once the time is up, is thrown. Each
 * retry is told to `onRetry`, so that a node waiting on its servers says so.
 */
export async function retryWhileForming<T>(
  once: () => Promise<T>,
  {
    withinMs = ENSURE_FORMING_MS,
    retryMs = ENSURE_RETRY_MS,
    onRetry,
  }: { withinMs?: number; retryMs?: number; onRetry?: FormingRetry | undefined } = {},
): Promise<T> {
  const deadline = Date.now() + withinMs
  for (let attempt = 1; ; attempt++) {
    try {
      return await once()
    } catch (error) {
      const waitMs = Math.min(retryMs * attempt, ENSURE_RETRY_MAX_MS)
      if (Date.now() + waitMs >= deadline || !isTransientJetStreamError(error)) throw error
      onRetry?.({ attempt, waitMs, error })
      await new Promise((resolve) => setTimeout(resolve, waitMs))
    }
  }
}

/** A try at making the fabric that failed while JetStream forms, and the wait before the next. */
export type FormingRetry = (retry: {
  readonly attempt: number
  readonly waitMs: number
  readonly error: unknown
}) => void

/** A FormingRetry that logs each retry as a warning. */
export const logFormingRetry =
  (log: Logger): FormingRetry =>
  ({ attempt, waitMs, error }) =>
    log.warn(
      { attempt, waitMs, err: error },
      'the fabric streams cannot be made yet (JetStream is forming); trying again',
    )

/**
 * Create (or update) the region's streams and snapshot bucket; safe to run from every node at
 * once. Retries for a bounded time while JetStream is still electing its leaders.
 */
export function ensureFabric(
  nc: NatsConnection,
  region: string,
  limits = DEFAULT_STREAM_LIMITS,
  onRetry?: FormingRetry,
): Promise<FabricObjects> {
  return retryWhileForming(() => ensureFabricOnce(nc, region, limits), { onRetry })
}

async function ensureFabricOnce(
  nc: NatsConnection,
  region: string,
  limits: StreamLimits,
): Promise<FabricObjects> {
  assertRegion(region)
  const jsm = await jetstreamManager(nc)
  const ensure = (jsm: JetStreamManager, config: Partial<StreamConfig> & { name: string }) =>
    ensureStream(jsm, config, nc)
  await ensure(jsm, fabricStream(region, limits))
  await ensureLedger(jsm, region, limits, ledgerStreams(region, limits), ensure)
  const snapshots = await new Kvm(nc).create(names.snapshotBucket(region), snapshotBucketOptions(limits))
  return { jsm, snapshots }
}

export function snapshotBucketOptions(limits: StreamLimits): Partial<KvOptions> {
  // The KV client defaults to one replica; snapshots must survive a server loss like the streams.
  return {
    replicas: limits.replicas,
    history: 1,
    maxValueSize: SNAPSHOT_BYTES_MAX,
    max_bytes: SNAPSHOT_BUCKET_BYTES_MAX,
  }
}
