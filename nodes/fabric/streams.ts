/**
 * The JetStream objects of the fabric and their names, created idempotently.
 *
 * | what                | object                                   | subjects                           |
 * |---------------------|------------------------------------------|------------------------------------|
 * | CRDT updates        | stream FABRIC_<REGION>, R3               | fabric.<region>.game.<gameId>      |
 * | heartbeats          | core NATS, not stored                    | heartbeat.<region>.game.<gameId>   |
 * | snapshots           | KV bucket snapshots_<region>, R3         | key: game.<gameId>                 |
 * | money and bets      | stream LEDGER_<REGION>, R3               | ledger.<region>.<shard>.<userId>   |
 * | settlement batches  | the same stream                          | ledger.<region>.<shard>.settlements |
 *
 * Heartbeats are ephemeral by design: a replica that misses one waits for the next, and their
 * soundness never depends on delivery (see crdt/backend.ts). Everything else is R3 and only
 * 2.9 features are used, so the same code runs on 2.9.10 and on newer servers.
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
import { REGION_PATTERN } from '../../protocol/ids.ts'
import { names } from '../../protocol/subjects.ts'

export { names }

export const STREAM_REPLICAS = 3
export const DUPLICATE_WINDOW_MS = 120_000
export const UPDATE_BYTES_MAX = 256 * 1024
export const SNAPSHOT_BYTES_MAX = 1024 * 1024
/** One ledger message: an entry, or a batch of settlements packed to fit. */
export const LEDGER_MESSAGE_BYTES_MAX = 16 * 1024
/** Stream byte limits are reserved on every server: together they must fit max_file_store (nats.conf). */
export const FABRIC_STREAM_BYTES_MAX = 256 * 1024 ** 2
export const LEDGER_STREAM_BYTES_MAX = 512 * 1024 ** 2
export const SNAPSHOT_BUCKET_BYTES_MAX = 256 * 1024 ** 2
const NANOS_PER_MS = 1_000_000

export interface StreamLimits {
  readonly fabricBytesMax: number
  readonly ledgerBytesMax: number
  readonly replicas: number
}

export const DEFAULT_STREAM_LIMITS: StreamLimits = {
  fabricBytesMax: FABRIC_STREAM_BYTES_MAX,
  ledgerBytesMax: LEDGER_STREAM_BYTES_MAX,
  replicas: STREAM_REPLICAS,
}

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
  }
}

export function ledgerStream(region: string, limits: StreamLimits): Partial<StreamConfig> & { name: string } {
  return {
    name: names.ledgerStream(region),
    subjects: [names.allLedgerSubject(region)],
    storage: StorageType.File,
    num_replicas: limits.replicas,
    retention: RetentionPolicy.Limits,
    // Money is never dropped to make room.
    discard: DiscardPolicy.New,
    max_bytes: limits.ledgerBytesMax,
    max_msg_size: LEDGER_MESSAGE_BYTES_MAX,
    duplicate_window: DUPLICATE_WINDOW_MS * NANOS_PER_MS,
  }
}

/** Add the stream, or bring an existing one to this config; nodes may race here harmlessly. */
export async function ensureStream(
  jsm: JetStreamManager,
  config: Partial<StreamConfig> & { name: string },
): Promise<void> {
  try {
    await jsm.streams.add(config)
  } catch (error) {
    if (!/already in use/i.test(errorText(error))) throw error
    await jsm.streams.update(config.name, config)
  }
}

function errorText(error: unknown): string {
  return String((error as { message?: string })?.message ?? error)
}

export interface FabricObjects {
  readonly jsm: JetStreamManager
  readonly snapshots: KV
}

/** Attempts at creating the fabric: a cluster that has just formed may time out JetStream API calls. */
export const ENSURE_ATTEMPTS_MAX = 10
export const ENSURE_RETRY_MS = 500

/**
 * Errors JetStream gives while it elects its leaders (at start, or right after a partition
 * heals): worth another try. A node started again just after a heal saw "JetStream system
 * temporarily unavailable" and died.
 */
const TRANSIENT_JETSTREAM_ERROR = /timeout|no responders|leader|temporarily unavailable/i

/**
 * Create (or update) the region's streams and snapshot bucket; safe to run from every node at
 * once. Retries a bounded number of times while JetStream is still electing its leaders.
 */
export async function ensureFabric(
  nc: NatsConnection,
  region: string,
  limits = DEFAULT_STREAM_LIMITS,
): Promise<FabricObjects> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await ensureFabricOnce(nc, region, limits)
    } catch (error) {
      if (attempt >= ENSURE_ATTEMPTS_MAX || !TRANSIENT_JETSTREAM_ERROR.test(errorText(error))) throw error
      await new Promise((resolve) => setTimeout(resolve, ENSURE_RETRY_MS * attempt))
    }
  }
}

async function ensureFabricOnce(
  nc: NatsConnection,
  region: string,
  limits: StreamLimits,
): Promise<FabricObjects> {
  assertRegion(region)
  const jsm = await jetstreamManager(nc)
  await ensureStream(jsm, fabricStream(region, limits))
  await ensureStream(jsm, ledgerStream(region, limits))
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
