/**
 * A seeded script of a trader's ops over a tennis match, for the simulator, the conformance
 * tests and the benchmarks: genesis, the match clock, and per point a "next point winner" market
 * (and sometimes "next serve is an ace") that opens with prices, reprices, suspends when the
 * serve is struck, is resulted and closed, and is now and then voided over a window (sometimes
 * after its correction deadline, when the void must count nowhere). Heartbeats
 * advance the writer's watermark in between.
 */

import {
  CORRECTION_WINDOW_MS,
  firstStampAt,
  GAME_PERIOD_MAX,
  lastStampAt,
  type MarketOp,
  type Op,
  type Prices,
} from '../../crdt/index.ts'
import type { Prng } from '../../nodes/fabric/prng.ts'

/** At `atMs` on its own clock the writer commits ops, or sends a heartbeat (no ops). */
export interface ScriptStep {
  readonly atMs: number
  readonly ops: readonly Op[]
}

export const isHeartbeat = (step: ScriptStep) => step.ops.length === 0

export interface ScriptOptions {
  readonly gameId: string
  readonly writers: readonly string[]
  readonly points: number
  readonly startMs: number
  /** The bet window of a point; the whole cycle is about 1.25 times this. */
  readonly windowMs: number
  readonly heartbeatMs: number
}

export interface MarketPlan {
  readonly marketId: string
  readonly selections: readonly string[]
}

const MARGIN = 1.05

/** Decimal odds in thousandths for a win probability, with the book's margin. */
export function oddsFor(probability: number): number {
  return Math.max(1_001, Math.round(1_000 / (probability * MARGIN)))
}

function twoWayPrices(prng: Prng, a: string, b: string, base: number): Prices {
  const p = Math.min(0.9, Math.max(0.1, base + (prng.next() - 0.5) * 0.1))
  return { [a]: oddsFor(p), [b]: oddsFor(1 - p) }
}

function marketSpec(marketId: string, name: string, selections: readonly string[]): MarketOp {
  return { kind: 'market', marketId, name, selections: selections.map((id) => ({ id, name: id })) }
}

function pointSteps(prng: Prng, point: number, startMs: number, options: ScriptOptions): ScriptStep[] {
  const markets: MarketPlan[] = [{ marketId: `point-${point}`, selections: ['home', 'away'] }]
  if (prng.chance(0.4)) markets.push({ marketId: `ace-${point}`, selections: ['yes', 'no'] })
  const steps: ScriptStep[] = []
  const base = 0.35 + prng.next() * 0.3
  const prices = (m: MarketPlan) =>
    twoWayPrices(prng, m.selections[0] as string, m.selections[1] as string, base)
  steps.push({
    atMs: startMs,
    ops: markets.flatMap((m) => [
      marketSpec(m.marketId, m.marketId, m.selections),
      { kind: 'transition', marketId: m.marketId, status: 'open', prices: prices(m), reason: 'open' } as Op,
    ]),
  })
  for (let i = prng.int(0, 3); i > 0; i--) {
    const m = prng.pick(markets)
    steps.push({
      atMs: startMs + prng.int(1, options.windowMs - 1),
      ops: [
        { kind: 'transition', marketId: m.marketId, status: 'open', prices: prices(m), reason: 'reprice' },
      ],
    })
  }
  const servedMs = startMs + options.windowMs
  steps.push({
    atMs: servedMs,
    ops: markets.map(
      (m) =>
        ({
          kind: 'transition',
          marketId: m.marketId,
          status: 'suspended',
          prices: {},
          reason: 'serve',
        }) as Op,
    ),
  })
  const endedMs = servedMs + prng.int(options.windowMs / 10, options.windowMs / 4)
  steps.push({
    atMs: endedMs,
    ops: markets.flatMap((m) => [
      { kind: 'result', marketId: m.marketId, winners: [prng.pick(m.selections)] } as Op,
      { kind: 'transition', marketId: m.marketId, status: 'closed', prices: {}, reason: 'resulted' } as Op,
    ]),
  })
  return steps
}

/** The whole script, sorted by time; heartbeats fill the gaps. */
export function tennisScript(prng: Prng, options: ScriptOptions): ScriptStep[] {
  const steps: ScriptStep[] = [
    {
      atMs: options.startMs,
      ops: [
        { kind: 'game', gameId: options.gameId, writers: [...options.writers] },
        { kind: 'clock', period: 1, running: true, clockMs: 0 },
      ],
    },
  ]
  let atMs = options.startMs + 1
  for (let point = 1; point <= options.points; point++) {
    const cycle = pointSteps(prng, point, atMs, options)
    steps.push(...cycle)
    const lastMs = Math.max(...cycle.map((s) => s.atMs))
    if (prng.chance(0.15)) {
      const from = atMs + prng.int(0, options.windowMs / 2)
      steps.push({
        atMs: lastMs + 1,
        ops: [voidOp(`point-${point}`, from, from + prng.int(1, options.windowMs / 2))],
      })
    }
    if (prng.chance(0.1)) {
      // A correction after the market's correction deadline: it must void nothing anywhere.
      const from = atMs + prng.int(0, options.windowMs / 2)
      steps.push({
        atMs: lastMs + CORRECTION_WINDOW_MS + prng.int(1, 50),
        ops: [voidOp(`point-${point}`, from, from + prng.int(1, options.windowMs / 2))],
      })
    }
    if (point % 4 === 0) {
      // A change of ends every few points: the clock stops, then runs again in the next period.
      const period = ((point / 4) % GAME_PERIOD_MAX) + 1
      steps.push({
        atMs: lastMs + 2,
        ops: [{ kind: 'clock', period, running: false, clockMs: 0 }],
      })
      steps.push({
        atMs: lastMs + 20,
        ops: [{ kind: 'clock', period, running: true, clockMs: 0 }],
      })
    }
    atMs = lastMs + 30
  }
  const endMs = atMs
  for (let hb = options.startMs + options.heartbeatMs; hb < endMs; hb += options.heartbeatMs) {
    steps.push({ atMs: hb, ops: [] })
  }
  return steps.sort((a, b) => a.atMs - b.atMs)
}

function voidOp(marketId: string, fromMs: number, toMs: number): Op {
  return {
    kind: 'void',
    marketId,
    from: firstStampAt(fromMs),
    to: lastStampAt(toMs),
    reason: 'feed correction',
  }
}
