/**
 * The simulated network between replicas. It delays every message by a random time (so it
 * reorders them), sometimes much longer, duplicates some, loses some (JetStream redelivers them
 * after an ack timeout, so a loss is a long delay, never a hole), and cuts links during
 * partitions: a message that meets a cut link waits until the partition heals.
 */

import type { Prng } from '../../nodes/fabric/prng.ts'
import type { Scheduler } from './scheduler.ts'

export interface NetworkOptions {
  readonly delayMsMin: number
  readonly delayMsMax: number
  readonly longDelayChance: number
  readonly longDelayMsMax: number
  readonly duplicateChance: number
  readonly lossChance: number
  readonly redeliveryMs: number
}

export const DEFAULT_NETWORK: NetworkOptions = {
  delayMsMin: 1,
  delayMsMax: 120,
  longDelayChance: 0.03,
  longDelayMsMax: 3_000,
  duplicateChance: 0.05,
  lossChance: 0.03,
  redeliveryMs: 2_000,
}

export interface NetworkStats {
  sent: number
  delivered: number
  duplicated: number
  lost: number
  parked: number
  partitions: number
}

export interface Network {
  readonly stats: NetworkStats
  send(from: string, to: string, deliver: () => void): void
  /** Cut every link between nodes on different sides; nodes not named stay on side 0. */
  partition(sides: ReadonlyMap<string, number>): void
  heal(): void
  isPartitioned(): boolean
}

export function createNetwork(
  prng: Prng,
  scheduler: Scheduler,
  options: NetworkOptions = DEFAULT_NETWORK,
): Network {
  const stats: NetworkStats = { sent: 0, delivered: 0, duplicated: 0, lost: 0, parked: 0, partitions: 0 }
  let sides: ReadonlyMap<string, number> = new Map()
  let parked: { from: string; to: string; deliver: () => void }[] = []

  const isCut = (from: string, to: string) => (sides.get(from) ?? 0) !== (sides.get(to) ?? 0)

  function delayMs(): number {
    const longDelay = prng.chance(options.longDelayChance)
    return longDelay
      ? prng.int(options.delayMsMax, options.longDelayMsMax)
      : prng.int(options.delayMsMin, options.delayMsMax)
  }

  function transmit(from: string, to: string, deliver: () => void): void {
    const lost = prng.chance(options.lossChance)
    if (lost) stats.lost++
    scheduler.after(delayMs() + (lost ? options.redeliveryMs : 0), () => arrive(from, to, deliver))
  }

  function arrive(from: string, to: string, deliver: () => void): void {
    if (isCut(from, to)) {
      stats.parked++
      parked.push({ from, to, deliver })
      return
    }
    stats.delivered++
    deliver()
  }

  return {
    stats,
    send(from, to, deliver) {
      stats.sent++
      transmit(from, to, deliver)
      if (prng.chance(options.duplicateChance)) {
        stats.duplicated++
        transmit(from, to, deliver)
      }
    },
    partition(next) {
      stats.partitions++
      sides = next
    },
    heal() {
      sides = new Map()
      const waiting = parked
      parked = []
      for (const message of waiting) transmit(message.from, message.to, message.deliver)
    },
    isPartitioned: () => [...sides.values()].some((side) => side !== 0),
  }
}
