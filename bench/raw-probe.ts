/**
 * The baseline beside every bet figure: raw JetStream publishes of 200-byte messages to an R3
 * stream of their own, at a low fixed rate, each awaiting its ack. It runs on its own connection
 * during the bet load (how much the load slows the cluster's own path) and alone on the idle
 * cluster (what that path costs with nothing else running), over the same window plan.
 */

import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import { nowUs, openLoop } from './open-loop.ts'
import { type Histogram, histograms, planSeconds, type WindowPlan, windowOf } from './windows.ts'

export const RAW_STREAM = 'BENCH_RAW'
export const RAW_SUBJECT = 'bench-raw.x'
const RAW_STREAM_BYTES_MAX = 256 * 1024 ** 2
const PAYLOAD = 'x'.repeat(200)
/** A publish not acked within this counts as an error, not a latency. */
const RAW_ACK_TIMEOUT_MS = 10_000

export async function addRawStream(nc: NatsConnection): Promise<void> {
  const jsm = await jetstreamManager(nc)
  await jsm.streams.add({
    name: RAW_STREAM,
    subjects: [RAW_SUBJECT],
    num_replicas: 3,
    storage: StorageType.File,
    max_bytes: RAW_STREAM_BYTES_MAX,
  })
}

export interface RawWindows {
  /** Ack latency from the scheduled send, one histogram per window. */
  readonly latency: Histogram[]
  /** Publishes that failed (no ack in time, or an error), per window. */
  readonly errors: number[]
}

/** Publish at `rate` per second over the plan; resolves once every publish has been answered. */
export async function runRawProbe(nc: NatsConnection, rate: number, plan: WindowPlan): Promise<RawWindows> {
  const js = jetstream(nc, { timeout: RAW_ACK_TIMEOUT_MS })
  const result: RawWindows = { latency: histograms(plan.windows), errors: new Array(plan.windows).fill(0) }
  let inFlight = 0
  let drained: () => void = () => {}
  const settle = () => {
    if (--inFlight === 0) drained()
  }
  await openLoop(
    rate,
    planSeconds(plan),
    (scheduledUs, i) => {
      const window = windowOf(plan, scheduledUs)
      const measured = window >= 0 && window < plan.windows
      inFlight++
      js.publish(RAW_SUBJECT, JSON.stringify({ i, pad: PAYLOAD })).then(
        () => {
          if (measured) result.latency[window]!.recordValue(nowUs() - scheduledUs)
          settle()
        },
        () => {
          if (measured) result.errors[window]!++
          settle()
        },
      )
    },
    plan.startUs,
  )
  if (inFlight > 0) await new Promise<void>((resolve) => (drained = resolve))
  return result
}

/** Async publish throughput on the idle cluster: 20,000 messages, 500 in flight. */
export async function rawThroughput(nc: NatsConnection): Promise<number> {
  const js = jetstream(nc)
  const count = 20_000
  const window = 500
  const start = performance.now()
  for (let sent = 0; sent < count; sent += window) {
    await Promise.all(
      Array.from({ length: window }, (_, i) =>
        js.publish(RAW_SUBJECT, JSON.stringify({ i: sent + i, pad: PAYLOAD })),
      ),
    )
  }
  return count / ((performance.now() - start) / 1000)
}
