/**
 * DRAFT
 */

import type { StreamConfig, StreamSource } from '@nats-io/jetstream'
import { jetstreamManager } from '@nats-io/jetstream'
import { Kvm } from '@nats-io/kv'
import type { NatsConnection } from '@nats-io/transport-node'
import {
  assertRegion,
  DEFAULT_STREAM_LIMITS,
  ENSURE_ATTEMPTS_MAX,
  ENSURE_RETRY_MS,
  ensureStream,
  type FabricObjects,
  fabricStream,
  ledgerStream,
  names,
  type StreamLimits,
  snapshotBucketOptions,
} from './streams.ts'

export function assertRegions(region: string, allRegions: readonly string[]): void {
  for (const each of allRegions) assertRegion(each)
  if (new Set(allRegions).size !== allRegions.length)
    throw new RangeError(`regions must be distinct: ${allRegions.join(', ')}`)
  if (!allRegions.includes(region))
    throw new RangeError(`region ${JSON.stringify(region)} is not one of ${allRegions.join(', ')}`)
}

function placedIn(region: string) {
  return { cluster: region, tags: [] }
}

export const globalFabricStreamName = (region: string) => `GLOBAL_${names.fabricStream(region)}`

export function regionalFabricStream(
  region: string,
  limits: StreamLimits,
): Partial<StreamConfig> & { name: string } {
  return { ...fabricStream(region, limits), placement: placedIn(region) }
}

export function globalFabricStream(
  region: string,
  allRegions: readonly string[],
  limits: StreamLimits,
): Partial<StreamConfig> & { name: string } {
  const { subjects: _own, ...base } = fabricStream(region, limits)
  const sources: StreamSource[] = allRegions.map((origin) => ({
    name: names.fabricStream(origin),
    filter_subject: names.allGamesSubject(origin),
  }))
  return {
    ...base,
    name: globalFabricStreamName(region),
    max_bytes: limits.fabricBytesMax * allRegions.length,
    placement: placedIn(region),
    sources,
  }
}

export function regionalLedgerStream(
  region: string,
  limits: StreamLimits,
): Partial<StreamConfig> & { name: string } {
  return { ...ledgerStream(region, limits), placement: placedIn(region) }
}

export async function ensureRegionalFabric(
  nc: NatsConnection,
  region: string,
  allRegions: readonly string[],
  limits = DEFAULT_STREAM_LIMITS,
): Promise<FabricObjects> {
  assertRegions(region, allRegions)
  for (let attempt = 1; ; attempt++) {
    try {
      const jsm = await jetstreamManager(nc)
      await ensureStream(jsm, regionalFabricStream(region, limits))
      await ensureStream(jsm, globalFabricStream(region, allRegions, limits))
      await ensureStream(jsm, regionalLedgerStream(region, limits))
      const snapshots = await new Kvm(nc).create(names.snapshotBucket(region), {
        ...snapshotBucketOptions(limits),
        placement: placedIn(region),
      })
      return { jsm, snapshots }
    } catch (error) {
      if (attempt >= ENSURE_ATTEMPTS_MAX) throw error
      await new Promise((resolve) => setTimeout(resolve, ENSURE_RETRY_MS * attempt))
    }
  }
}
