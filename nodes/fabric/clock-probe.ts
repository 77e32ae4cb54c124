/**
 * The cluster clock probe: how far this node's clock is from the other nodes' of its region.
 *
 * Every node answers `clock.<region>.probe` with its wall clock. Every `intervalMs` a node asks,
 * gathers the answers that come within `windowMs`, and estimates each peer's offset as NTP does:
 * the peer's clock minus the midpoint of the round trip. Its own offset is the median of those
 * offsets and its own zero, negated; of two middle values it takes the one nearer zero, so a node
 * blames itself only when most of the region disagrees with it. With one peer nobody is blamed
 * (the stamps check of clock-guard.ts still refuses what cannot be merged).
 */

import { createInbox, type NatsConnection, type Subscription } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { probeSubject } from '../../protocol/subjects.ts'

export const DEFAULT_PROBE_INTERVAL_MS = 5_000
export const PROBE_WINDOW_MS = 250
/** Answers read from one probe; a region has far fewer nodes. */
export const PROBE_ANSWERS_MAX = 256
export const PROBE_ANSWER_BYTES_MAX = 256

/** One answer: the peer's clock, and the local clock when the probe left and when it came back. */
export interface ProbeSample {
  readonly peerMs: number
  readonly sentMs: number
  readonly receivedMs: number
}

/** This node's offset from the region (positive: it runs ahead), or null with no answers. */
export function offsetFromSamples(samples: readonly ProbeSample[]): number | null {
  if (samples.length === 0) return null
  const peers = samples.map((s) => s.peerMs - (s.sentMs + s.receivedMs) / 2)
  const offsets = [...peers, 0].sort((a, b) => a - b)
  const middle = offsets.length >> 1
  const median =
    offsets.length % 2 === 1
      ? (offsets[middle] as number)
      : nearerZero(offsets[middle - 1] as number, offsets[middle] as number)
  return median === 0 ? 0 : -Math.round(median)
}

function nearerZero(a: number, b: number): number {
  return Math.abs(a) <= Math.abs(b) ? a : b
}

export interface ClockProbeOptions {
  readonly nc: NatsConnection
  readonly region: string
  readonly node: string
  readonly now: () => number
  readonly log: Logger
  readonly intervalMs?: number
  /** Each estimate, as it is made. */
  readonly onOffset: (offsetMs: number | null) => void
}

export interface ClockProbe {
  /** Probe now; resolves with the estimate (also passed to onOffset). */
  probe(): Promise<number | null>
  stop(): void
}

export function startClockProbe(options: ClockProbeOptions): ClockProbe {
  const { nc, region, node, now, log } = options
  const subject = probeSubject(region)
  const answering: Subscription = nc.subscribe(subject, {
    callback: (_error, message) => {
      if (message.reply) message.respond(JSON.stringify({ node, wallMs: now() }))
    },
  })

  async function probe(): Promise<number | null> {
    const reply = createInbox()
    const samples: ProbeSample[] = []
    const sentMs = now()
    const answers = nc.subscribe(reply, {
      max: PROBE_ANSWERS_MAX,
      callback: (_error, message) => {
        const receivedMs = now()
        if (message.data.length > PROBE_ANSWER_BYTES_MAX) return
        try {
          const value = message.json() as { node?: unknown; wallMs?: unknown }
          if (value.node === node || !Number.isSafeInteger(value.wallMs)) return
          samples.push({ peerMs: value.wallMs as number, sentMs, receivedMs })
        } catch {
          // Not an answer: ignored.
        }
      },
    })
    nc.publish(subject, '', { reply })
    await new Promise((resolve) => setTimeout(resolve, PROBE_WINDOW_MS))
    answers.unsubscribe()
    const offset = offsetFromSamples(samples)
    options.onOffset(offset)
    return offset
  }

  const timer = setInterval(() => {
    probe().catch((error) => log.warn({ err: error }, 'clock probe failed'))
  }, options.intervalMs ?? DEFAULT_PROBE_INTERVAL_MS)
  timer.unref()
  return {
    probe,
    stop() {
      clearInterval(timer)
      answering.unsubscribe()
    },
  }
}
