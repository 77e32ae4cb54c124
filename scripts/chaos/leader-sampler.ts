/**
 * Samples which server leads each ledger shard stream of a region, its fabric stream (the writers'
 * updates, which every bet's judgement needs) and its snapshot bucket's stream (the writers' clock
 * ceilings, without which their heartbeats stop), every LEADER_SAMPLE_MS, from the fault until
 * it is stopped: the samples from which figures.ts derives each shard's leader window
 * and the shards whose leader stayed with the majority. A sample whose info request failed or timed
 * out records no leader for that shard, which never counts as a leader having moved.
 */

import { jetstreamManager } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import { readLeaders } from '../../nodes/fabric/leader-spread.ts'
import { names } from '../../protocol/subjects.ts'
import type { LeaderSample } from './figures.ts'

/** How often the leaders are read: the resolution of a measured leader window. */
export const LEADER_SAMPLE_MS = 250
/** A sample's info requests time out after this; a request answered later is not waited for. */
const LEADER_SAMPLE_TIMEOUT_MS = 1_000
/** Samples kept at most: a run of FAULT_MS_MAX plus its aftermath at LEADER_SAMPLE_MS fits. */
const LEADER_SAMPLES_MAX = 2_000

export interface LeaderSampler {
  /** Resolves once the first sample is taken (or the sampling failed). */
  readonly ready: Promise<void>
  /**
   * Stops sampling and resolves with every sample, in time order: the ledger shards' leaders by
   * shard, and the fabric stream's and the bucket's each as shard 0 of samples of its own.
   */
  stop(): Promise<{ ledger: LeaderSample[]; fabric: LeaderSample[]; bucket: LeaderSample[] }>
}

/** Starts sampling now through `nc`, which it closes when stopped; the first sample is taken at once (`ready`). */
export function sampleLeaders(nc: NatsConnection, region: string, shards: number): LeaderSampler {
  const streams = Array.from({ length: shards }, (_, shard) => names.ledgerStream(region, shard))
  const fabricStream = names.fabricStream(region)
  // The snapshot bucket's stream: writers store their clock ceilings there (clock-ceiling.ts).
  const bucketStream = `KV_${names.snapshotBucket(region)}`
  const samples: LeaderSample[] = []
  const fabric: LeaderSample[] = []
  const bucket: LeaderSample[] = []
  let stopped = false
  let sampled: () => void = () => {}
  const ready = new Promise<void>((resolve) => {
    sampled = resolve
  })
  const loop = (async () => {
    const jsm = await jetstreamManager(nc)
    while (!stopped && samples.length < LEADER_SAMPLES_MAX) {
      const atMs = Date.now()
      const byStream = await readLeaders(
        jsm,
        [...streams, fabricStream, bucketStream],
        LEADER_SAMPLE_TIMEOUT_MS,
      )
      fabric.push({ atMs, leaders: new Map([[0, byStream.get(fabricStream) ?? null]]) })
      bucket.push({ atMs, leaders: new Map([[0, byStream.get(bucketStream) ?? null]]) })
      samples.push({
        atMs,
        leaders: new Map(streams.map((stream, shard) => [shard, byStream.get(stream) ?? null])),
      })
      sampled()
      const wait = LEADER_SAMPLE_MS - (Date.now() - atMs)
      if (wait > 0 && !stopped) await new Promise((resolve) => setTimeout(resolve, wait))
    }
  })().finally(() => sampled())
  return {
    ready,
    async stop() {
      stopped = true
      await loop.catch(() => {})
      await nc.close().catch(() => {})
      return { ledger: samples, fabric, bucket }
    },
  }
}
