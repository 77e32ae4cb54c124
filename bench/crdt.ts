/**
 * CRDT core benchmark: for Yjs and Automerge side by side, how fast a replica applies remote
 * updates, how big updates and snapshots are, how fast snapshots restore, and how many judge()
 * calls per second a replica answers. The baseline is raw `Y.applyUpdate` of the very same Yjs
 * updates into a bare Y.Doc, measured in the same run; the fabric's overhead is the ratio.
 *
 *   npm run bench:crdt                  # default workload
 *   npm run bench:crdt -- --points 400 --rounds 7
 */

import * as Automerge from '@automerge/automerge'
import * as Y from 'yjs'
import {
  BACKENDS,
  type Backend,
  type BetTerms,
  encodeStamp,
  judge,
  ODDS_POLICIES,
  type Replica,
} from '../crdt/index.ts'
import { createPrng } from '../nodes/fabric/prng.ts'
import { parseCommandLine, usageError } from '../scripts/command-line.ts'
import { runScript } from '../test/helpers/scripted-updates.ts'
import { tennisScript } from '../test/sim/tennis-script.ts'

const USAGE = '--points n --rounds n --judges n (positive integers)'
const values = parseCommandLine(
  {
    points: { type: 'string', default: '500' },
    rounds: { type: 'string', default: '9' },
    judges: { type: 'string', default: '200000' },
  },
  USAGE,
)
const POINTS = Number(values.points)
const ROUNDS = Number(values.rounds)
const JUDGE_CALLS = Number(values.judges)
for (const [name, value] of Object.entries({ points: POINTS, rounds: ROUNDS, judges: JUDGE_CALLS })) {
  if (!Number.isSafeInteger(value) || value < 1) {
    usageError(`--${name} must be a positive integer`, USAGE)
  }
}

function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] as number
}

function elapsedMs(work: () => void): number {
  const start = process.hrtime.bigint()
  work()
  return Number(process.hrtime.bigint() - start) / 1e6
}

/** Median wall time of `rounds` runs of `work`, after one warm-up run. */
function timeMs(work: () => void): number {
  return timeAlternating([work])[0] as number
}

/**
 * Median wall time of `rounds` runs of `work`, each on a value `setup()` made fresh and not timed,
 * after one warm-up run: for work whose first run differs from the next (admitting a heartbeat).
 */
function timeFresh<T>(setup: () => T, work: (value: T) => void): number {
  work(setup())
  const samples: number[] = []
  for (let i = 0; i < ROUNDS; i++) {
    const value = setup()
    samples.push(elapsedMs(() => work(value)))
  }
  return median(samples)
}

/** Median times of several works, run in alternation so that drift in the machine hits them alike. */
function timeAlternating(works: readonly (() => void)[]): number[] {
  for (const work of works) work()
  const samples = works.map(() => [] as number[])
  for (let i = 0; i < ROUNDS; i++) {
    works.forEach((work, w) => {
      samples[w]?.push(elapsedMs(work))
    })
  }
  return samples.map(median)
}

function workload(backend: Backend) {
  const steps = tennisScript(createPrng(42), {
    gameId: 'bench',
    writers: ['trader-1'],
    points: POINTS,
    startMs: 1_700_000_000_000,
    windowMs: 4_000,
    heartbeatMs: 50,
  })
  return runScript(backend, 'trader-1', steps)
}

function applyAll(backend: Backend, updates: readonly Uint8Array[]): Replica {
  const replica = backend.create()
  for (const update of updates) replica.apply(update)
  return replica
}

function randomBets(count: number): BetTerms[] {
  const prng = createPrng(7)
  return Array.from({ length: count }, () => ({
    stamp: encodeStamp({ wall: 1_700_000_000_000 + prng.int(0, POINTS * 5_200), logical: 0, node: 'api-1' }),
    marketId: `point-${prng.int(1, POINTS)}`,
    selectionId: prng.pick(['home', 'away']),
    odds: prng.int(1_100, 3_000),
    policy: prng.pick(ODDS_POLICIES),
  }))
}

const fmt = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })

const bets = randomBets(JUDGE_CALLS)
const rows: Record<string, Record<string, string>> = {}
let yjsApplyMs = 0
let rawYjsApplyMs = 0
let updateCount = 0
let heartbeatCount = 0

for (const backend of Object.values(BACKENDS) as Backend[]) {
  const { updates, heartbeats, writer } = workload(backend)
  updateCount = updates.length
  heartbeatCount = heartbeats.length
  const rawYjs = () => {
    const doc = new Y.Doc()
    for (const update of updates) Y.applyUpdate(doc, update)
  }
  const fabric = () => applyAll(backend, updates)
  const [applyMs = 0, rawMs = 0] =
    backend.name === 'yjs' ? timeAlternating([fabric, rawYjs]) : [timeMs(fabric)]
  const snapshot = writer.snapshot()
  // Each round admits every heartbeat for the first time, into a replica restored afresh (untimed):
  // timing a replica that had admitted them in the warm-up measured the cheap repeat instead.
  const heartbeatMs = timeFresh(
    () => backend.restore(snapshot),
    (caughtUp) => {
      for (const heartbeat of heartbeats) caughtUp.applyHeartbeat(heartbeat)
    },
  )
  const restoreMs = timeMs(() => backend.restore(snapshot))
  const replica = applyAll(backend, updates)
  let accepted = 0
  const judgeMs = timeMs(() => {
    accepted = 0
    for (const bet of bets) if (judge(replica.game, bet).accepted) accepted++
  })
  const bytes = updates.reduce((sum, u) => sum + u.length, 0)
  if (backend.name === 'yjs') {
    yjsApplyMs = applyMs
    rawYjsApplyMs = rawMs
  } else {
    const rawMs = timeMs(() => {
      let doc = Automerge.init()
      for (const update of updates) doc = Automerge.loadIncremental(doc, update)
    })
    rows['raw Automerge.loadIncremental, updates/s'] = { automerge: fmt(updates.length / (rawMs / 1000)) }
  }
  const column = backend.name
  const set = (label: string, value: string) => {
    rows[label] = { ...rows[label], [column]: value }
  }
  set('apply remote updates, updates/s', fmt(updates.length / (applyMs / 1000)))
  set('apply remote updates, entries/s', fmt(replica.game.entries.size / (applyMs / 1000)))
  set('admit heartbeats, heartbeats/s', fmt(heartbeats.length / (heartbeatMs / 1000)))
  set('update size, mean bytes', fmt(bytes / updates.length, 1))
  set('snapshot size, bytes', fmt(snapshot.length))
  set('snapshot restore, ms', fmt(restoreMs, 1))
  set('judge() calls/s', fmt(JUDGE_CALLS / (judgeMs / 1000)))
  set('judge() accepted (sanity)', fmt(accepted))
}
rows['raw Y.applyUpdate (baseline), updates/s'] = { yjs: fmt(updateCount / (rawYjsApplyMs / 1000)) }

console.log(
  `CRDT benchmark: ${POINTS} points, ${updateCount} document updates and ${heartbeatCount} heartbeats per backend, median of ${ROUNDS} rounds`,
)
console.log(`node ${process.version}, ${process.platform}/${process.arch}`)
const labelWidth = Math.max(...Object.keys(rows).map((l) => l.length))
console.log(`${''.padEnd(labelWidth)}  ${'yjs'.padStart(14)}  ${'automerge'.padStart(14)}`)
for (const [label, cells] of Object.entries(rows)) {
  console.log(
    `${label.padEnd(labelWidth)}  ${(cells.yjs ?? '').padStart(14)}  ${(cells.automerge ?? '').padStart(14)}`,
  )
}
const ratio = yjsApplyMs / rawYjsApplyMs
console.log(
  `fabric apply on Yjs vs raw Y.applyUpdate of the same updates: ${ratio.toFixed(2)}x the time (goal <= 1.5x)`,
)
