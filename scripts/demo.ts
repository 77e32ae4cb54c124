/**
 * The simulated match, narrated: one seed of the deterministic simulator, told as it happens in
 * simulated time. A trader writes the game, two API nodes take bets on their own replicas with no
 * lock, and every verdict turns final as the trader's heartbeats pass the bets' stamps, over a
 * network that delays, duplicates, loses and partitions. At the end the invariants are checked.
 *
 *   npm run sim:demo                       # a random seed on Yjs
 *   npm run sim:demo -- --seed 7 --backend automerge --points 8
 */

import {
  BACKENDS,
  type BackendName,
  type Entry,
  ODDS_SCALE,
  type RejectReason,
  stampWall,
} from '../crdt/index.ts'
import { runSimulation, type SimEvent } from '../test/sim/simulator.ts'
import { parseCommandLine } from './command-line.ts'

const POINTS_MAX = 200

function fail(message: string): never {
  console.error(message)
  process.exit(1)
}

const values = parseCommandLine(
  {
    seed: { type: 'string' },
    backend: { type: 'string', default: 'yjs' },
    points: { type: 'string', default: '4' },
  },
  `[--seed n] [--backend ${Object.keys(BACKENDS).join('|')}] [--points 1..${POINTS_MAX}]`,
)
const seed = values.seed === undefined ? Math.floor(Math.random() * 1_000_000) : Number(values.seed)
const points = Number(values.points)
const backend = values.backend as BackendName
if (!Number.isSafeInteger(seed) || seed < 0) fail(`--seed must be a non-negative integer, got ${values.seed}`)
if (!Number.isSafeInteger(points) || points < 1 || points > POINTS_MAX)
  fail(`--points must be 1..${POINTS_MAX}`)
if (!(backend in BACKENDS)) fail(`--backend must be one of ${Object.keys(BACKENDS).join(', ')}`)

const odds = (thousandths: number | null | undefined) =>
  thousandths == null ? '-' : (thousandths / ODDS_SCALE).toFixed(2)
const clock = (ms: number | null) =>
  ms === null
    ? '--:--'
    : `${Math.floor(ms / 60_000)}:${String(Math.floor(ms / 1000) % 60).padStart(2, '0')}.${String(ms % 1000).padStart(3, '0')}`

let startMs: number | null = null
function line(atMs: number, who: string, text: string): void {
  startMs ??= atMs
  console.log(`+${((atMs - startMs) / 1000).toFixed(3).padStart(7)}s  ${who.padEnd(8)}  ${text}`)
}

function describeEntry(entry: Entry): string | null {
  switch (entry.kind) {
    case 'game':
      return `game ${entry.gameId} created; writers ${entry.writers.join(', ')}`
    case 'clock':
      return `clock ${entry.running ? 'runs' : 'stops'} (period ${entry.period})`
    case 'transition': {
      const prices = Object.entries(entry.prices).map(([id, price]) => `${id} ${odds(price)}`)
      return `${entry.marketId} ${entry.status.toUpperCase()}${prices.length ? ` ${prices.join(' / ')}` : ''} (${entry.reason})`
    }
    case 'result':
      return `${entry.marketId} result: ${entry.winners.join(', ') || 'no winner'}`
    case 'void':
      return `${entry.marketId} VOID window (${entry.reason})`
    default:
      return null
  }
}

const finalityMs: number[] = []
const reasons = new Map<RejectReason | 'ACCEPTED', number>()

function narrate(event: SimEvent): void {
  switch (event.type) {
    case 'ops':
      for (const entry of event.entries) {
        const text = describeEntry(entry)
        if (text) line(event.atMs, 'trader-1', text)
      }
      return
    case 'bet': {
      const { bet } = event
      const verdict = bet.provisional.accepted ? 'accepted' : `rejected ${bet.provisional.reason}`
      line(
        event.atMs,
        bet.node,
        `bet ${bet.id}: ${bet.terms.marketId} ${bet.terms.selectionId} @${odds(bet.terms.odds)} ${bet.terms.policy} -> provisional ${verdict}`,
      )
      return
    }
    case 'final': {
      const waitedMs = event.atMs - stampWall(event.bet.terms.stamp)
      finalityMs.push(Math.max(0, waitedMs))
      const key = event.verdict.reason ?? 'ACCEPTED'
      reasons.set(key, (reasons.get(key) ?? 0) + 1)
      const verdict = event.verdict.accepted
        ? `ACCEPTED @${odds(event.verdict.odds)}`
        : `REJECTED ${event.verdict.reason}`
      line(
        event.atMs,
        event.bet.node,
        `bet ${event.bet.id} final: ${verdict}, game clock ${clock(event.verdict.gameClockMs)}`,
      )
      return
    }
    case 'partition': {
      const sides = [0, 1].map((side) =>
        [...event.sides]
          .filter(([, s]) => s === side)
          .map(([id]) => id)
          .join(', '),
      )
      line(event.atMs, 'network', `PARTITION {${sides[0]}} | {${sides[1]}}`)
      return
    }
    case 'heal':
      line(event.atMs, 'network', 'partition healed; held messages flow')
      return
    case 'restart':
      line(event.atMs, event.node, 'restarts from snapshots')
  }
}

function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0
}

console.log(
  `Simulated tennis match, seed ${seed}, ${backend} replicas: trader-1 writes the game; api-1 and api-2 take bets;`,
)
console.log(
  'settle-1 follows. Time is simulated; the network delays, duplicates, loses and partitions messages.\n',
)
const report = runSimulation({ seed, backend, points, onEvent: narrate })
console.log(
  `\n${report.bets} bets; final verdicts on the placing node: ${[...reasons].map(([r, n]) => `${r} ${n}`).join(', ')}`,
)
console.log(
  `time from a bet's stamp to its final verdict (simulated ms): p50 ${percentile(finalityMs, 50)}, p99 ${percentile(finalityMs, 99)}`,
)
console.log(
  `${report.provisionalChanged} provisional verdicts changed when the node caught up; ${report.restarts} restarts`,
)
if (report.failures.length > 0) {
  console.error(`\nINVARIANTS BROKEN (replay: npm start -- --seed ${seed} --backend ${backend}):`)
  for (const failure of report.failures) console.error(`  ${failure}`)
  process.exit(1)
}
console.log(
  `all four replicas converged (state ${report.stateHash.slice(0, 16)}) and agree on every verdict and game-clock ms`,
)
