/**
 * The simulated world the product simulator runs the nodes' own code in: one seeded scheduler owns
 * time; every node has its own clock (the scheduler's time plus the node's offset), its own timers
 * and its own transport to one memory fabric (nodes/fabric/memory-transport.ts). The world decides
 * every delivery's delay, loses and duplicates core messages, cuts nodes off and pauses them:
 * - a cut-off node's appends fail, its followers stall and its core messages are lost;
 * - a paused node (SIGSTOP) runs nothing: its timers and every delivery to it wait until it wakes,
 *   then run in their order, as a process woken from a stop would.
 */

import {
  createMemoryFabric,
  type MemoryFabric,
  regionStreams,
} from '../../../nodes/fabric/memory-transport.ts'
import type { Prng } from '../../../nodes/fabric/prng.ts'
import type { Timers } from '../../../nodes/fabric/timers.ts'
import { createScheduler, type Scheduler } from '../scheduler.ts'

export const REGION = 'eu'
/** The region's ledger shards in the simulated world. */
export const SIM_SHARDS = 4
/** Delivery delays, simulated ms. */
export const DELAY_MS = { ack: [1, 6], stream: [1, 12], core: [1, 15] } as const
/** Share of core messages (heartbeats, statuses) lost on the way, and delivered twice. */
export const CORE_LOSS = 0.03
export const CORE_DUPLICATION = 0.02

export interface World {
  readonly scheduler: Scheduler
  readonly fabric: MemoryFabric
  readonly prng: Prng
  /** The node's wall clock: simulated time plus its offset. */
  clock(node: string): () => number
  setOffset(node: string, offsetMs: number): void
  offset(node: string): number
  /** The node's timers: they fire in simulated time, and wait while the node is paused. */
  timers(node: string): Timers
  cut(node: string, forMs: number): void
  pause(node: string, forMs: number): void
  isUp(node: string): boolean
}

export function createWorld(prng: Prng, startMs: number): World {
  const scheduler = createScheduler(startMs)
  const offsets = new Map<string, number>()
  const cutUntil = new Map<string, number>()
  const pausedUntil = new Map<string, number>()
  /** Run `fn` for `node` at `atMs`, or, if the node is paused then, as soon as it wakes. */
  function runFor(node: string, atMs: number, fn: () => void): void {
    scheduler.at(atMs, () => {
      const wake = pausedUntil.get(node) ?? 0
      if (scheduler.nowMs() < wake) runFor(node, wake, fn)
      else fn()
    })
  }
  const reachable = (node: string) => scheduler.nowMs() >= (cutUntil.get(node) ?? 0)
  const fabric = createMemoryFabric({
    streams: regionStreams(REGION, SIM_SHARDS),
    reachable,
    now: () => scheduler.nowMs(),
    schedule(deliver, kind, node) {
      if (kind === 'core' && prng.chance(CORE_LOSS)) return
      const [min, max] = DELAY_MS[kind]
      runFor(node, scheduler.nowMs() + prng.int(min, max), deliver)
      if (kind === 'core' && prng.chance(CORE_DUPLICATION))
        runFor(node, scheduler.nowMs() + prng.int(min, max), deliver)
    },
  })
  return {
    scheduler,
    fabric,
    prng,
    clock: (node) => () => scheduler.nowMs() + (offsets.get(node) ?? 0),
    setOffset: (node, offsetMs) => offsets.set(node, offsetMs),
    offset: (node) => offsets.get(node) ?? 0,
    timers(node) {
      return {
        setTimeout(fn, ms) {
          let cancelled = false
          runFor(node, scheduler.nowMs() + ms, () => {
            if (!cancelled) fn()
          })
          return () => {
            cancelled = true
          }
        },
        setInterval(fn, ms) {
          let stopped = false
          const tick = () => {
            if (stopped) return
            fn()
            runFor(node, scheduler.nowMs() + ms, tick)
          }
          runFor(node, scheduler.nowMs() + ms, tick)
          return () => {
            stopped = true
          }
        },
      }
    },
    cut(node, forMs) {
      cutUntil.set(node, Math.max(cutUntil.get(node) ?? 0, scheduler.nowMs() + forMs))
    },
    pause(node, forMs) {
      pausedUntil.set(node, Math.max(pausedUntil.get(node) ?? 0, scheduler.nowMs() + forMs))
    },
    isUp: (node) => reachable(node) && scheduler.nowMs() >= (pausedUntil.get(node) ?? 0),
  }
}

/** Let every promise chain the last event started run to its next wait. */
export const settle = () => new Promise<void>((resolve) => setImmediate(resolve))

/** Run the world until `untilMs`, letting promises settle after every event. */
export async function runUntil(world: World, untilMs: number, stepsMax: number): Promise<number> {
  let steps = 0
  for (;;) {
    const next = world.scheduler.nextAtMs()
    if (next === null || next > untilMs) break
    if (steps++ >= stepsMax) throw new Error(`passed ${stepsMax} steps before ${untilMs}`)
    world.scheduler.step()
    await settle()
  }
  world.scheduler.runUntil(untilMs, 0)
  return steps
}
