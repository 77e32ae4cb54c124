/**
 * Run the simulator from the command line.
 *
 *   npm run sim                          # seeds 1..100 on both backends
 *   npm run sim -- --seed 42             # replay one seed (both backends)
 *   npm run sim -- --seeds 500 --from 1000 --backend yjs
 */

import { parseArgs } from 'node:util'
import { BACKENDS, type BackendName } from '../../crdt/index.ts'
import { runSimulation, type SimReport } from './simulator.ts'

const SEEDS_MAX = 1_000_000

function parseOptions() {
  const { values } = parseArgs({
    options: {
      seed: { type: 'string' },
      seeds: { type: 'string', default: '100' },
      from: { type: 'string', default: '1' },
      backend: { type: 'string', default: 'both' },
      verbose: { type: 'boolean', default: false },
    },
  })
  const integer = (name: string, text: string, min: number, max: number) => {
    const value = Number(text)
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      console.error(`--${name} must be an integer in ${min}..${max}, got ${JSON.stringify(text)}`)
      process.exit(1)
    }
    return value
  }
  const backends =
    values.backend === 'both' ? (Object.keys(BACKENDS) as BackendName[]) : [values.backend as BackendName]
  if (!backends.every((name) => name in BACKENDS)) {
    console.error(`--backend must be yjs, automerge or both, got ${JSON.stringify(values.backend)}`)
    process.exit(1)
  }
  const first =
    values.seed !== undefined
      ? integer('seed', values.seed, 0, 2 ** 32 - 1)
      : integer('from', values.from, 0, 2 ** 32 - 1)
  const count = values.seed !== undefined ? 1 : integer('seeds', values.seeds, 1, SEEDS_MAX)
  return { first, count, backends, verbose: values.verbose || values.seed !== undefined }
}

function describe(report: SimReport): string {
  const n = report.network
  return (
    `seed ${report.seed} ${report.backend}: ${report.bets} bets, ${report.accepted} accepted, ` +
    `${report.provisionalChanged} provisional verdicts changed, ${report.restarts} restarts, ` +
    `${n.sent} messages (${n.duplicated} duplicated, ${n.lost} lost, ${n.parked} held by ${n.partitions} partitions), ` +
    `hash ${report.stateHash.slice(0, 12)}`
  )
}

const options = parseOptions()
const startedMs = Date.now()
let failed = 0
for (let i = 0; i < options.count; i++) {
  const seed = options.first + i
  for (const backend of options.backends) {
    const report = runSimulation({ seed, backend })
    if (options.verbose) console.log(describe(report))
    if (report.failures.length > 0) {
      failed++
      console.error(`FAIL ${describe(report)}`)
      for (const failure of report.failures) console.error(`  ${failure}`)
      console.error(`  replay: npm run sim -- --seed ${seed} --backend ${backend}`)
    }
  }
  if (!options.verbose && (i + 1) % 25 === 0) {
    console.log(
      `${i + 1}/${options.count} seeds, ${failed} failed, ${((Date.now() - startedMs) / 1000).toFixed(1)} s`,
    )
  }
}
const runs = options.count * options.backends.length
console.log(`${runs - failed} passed, ${failed} failed`)
process.exit(failed > 0 ? 1 : 0)
