/**
 * Run the simulators from the command line.
 *
 * The product simulator (test/sim/product/) runs the nodes' own code; it is the default:
 *   npm run sim                                    # seeds 1..100, the mixed profile of npm test
 *   npm run sim -- --seeds 500 --from 1000         # more seeds
 *   npm run sim -- --seed 42 --skew-ms 700 --writers 3   # one run, exactly (what a failure prints)
 *   npm run sim -- --skew-ms 700                   # every seed with offsets beyond the drift bound
 * Without --skew-ms and --writers each seed takes the mixed profile: one to three writers in turn,
 * offsets beyond the bound every fourth seed.
 *
 * The model simulator (test/sim/simulator.ts) checks the CRDT core under loss, duplication and
 * reordering of updates, on both backends:
 *   npm run sim -- --model --seeds 500 --backend yjs
 */

import { parseArgs } from 'node:util'
import { BACKENDS, type BackendName } from '../../crdt/index.ts'
import {
  mixedProfile,
  type ProductSimOptions,
  replayCommand,
  runProductSimulation,
  SKEW_MS_MAX,
  WRITERS_MAX,
} from './product/simulation.ts'
import { runSimulation, type SimReport } from './simulator.ts'

const SEEDS_MAX = 1_000_000
const PROGRESS_EVERY = 25

const USAGE = `usage: npm run sim -- [--seed N | --seeds N --from S] [--skew-ms 0-${SKEW_MS_MAX}] [--writers 1-${WRITERS_MAX}] [--backend yjs|automerge] [--verbose]
       npm run sim -- --model [--seed N | --seeds N --from S] [--backend yjs|automerge|both] [--verbose]`

function parseOptions() {
  let values: Record<string, string | boolean | undefined>
  try {
    values = parseArgs({
      options: {
        seed: { type: 'string' },
        seeds: { type: 'string', default: '100' },
        from: { type: 'string', default: '1' },
        backend: { type: 'string' },
        'skew-ms': { type: 'string' },
        writers: { type: 'string' },
        model: { type: 'boolean', default: false },
        verbose: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    }).values
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`)
    process.exit(1)
  }
  if (values.help) {
    console.log(USAGE)
    process.exit(0)
  }
  const integer = (name: string, text: unknown, min: number, max: number) => {
    const value = Number(text)
    if (typeof text !== 'string' || !Number.isSafeInteger(value) || value < min || value > max) {
      console.error(`--${name} must be an integer in ${min}..${max}, got ${JSON.stringify(text)}\n${USAGE}`)
      process.exit(1)
    }
    return value
  }
  const model = values.model === true
  const backendText = (values.backend as string | undefined) ?? (model ? 'both' : 'yjs')
  const backends =
    backendText === 'both' && model ? (Object.keys(BACKENDS) as BackendName[]) : [backendText as BackendName]
  if (!backends.every((name) => name in BACKENDS)) {
    console.error(
      `--backend must be yjs or automerge${model ? ' or both' : ''}, got ${JSON.stringify(backendText)}`,
    )
    process.exit(1)
  }
  const seed = values.seed
  const first =
    seed !== undefined ? integer('seed', seed, 0, 2 ** 32 - 1) : integer('from', values.from, 0, 2 ** 32 - 1)
  const count = seed !== undefined ? 1 : integer('seeds', values.seeds, 1, SEEDS_MAX)
  const skewMs =
    values['skew-ms'] === undefined ? undefined : integer('skew-ms', values['skew-ms'], 0, SKEW_MS_MAX)
  const writers =
    values.writers === undefined ? undefined : integer('writers', values.writers, 1, WRITERS_MAX)
  return {
    model,
    first,
    count,
    backends,
    skewMs,
    writers,
    verbose: values.verbose === true || seed !== undefined,
  }
}

const options = parseOptions()
const startedMs = Date.now()
let failed = 0
let runs = 0

function progress(done: number): void {
  if (!options.verbose && done % PROGRESS_EVERY === 0)
    console.log(
      `${done}/${options.count} seeds, ${failed} failed, ${((Date.now() - startedMs) / 1000).toFixed(1)} s`,
    )
}

function describeModel(report: SimReport): string {
  const n = report.network
  return (
    `seed ${report.seed} ${report.backend}: ${report.bets} bets, ${report.accepted} accepted, ` +
    `${report.provisionalChanged} provisional verdicts changed, ${report.restarts} restarts, ` +
    `${n.sent} messages (${n.duplicated} duplicated, ${n.lost} lost, ${n.parked} held by ${n.partitions} partitions), ` +
    `hash ${report.stateHash.slice(0, 12)}`
  )
}

for (let i = 0; i < options.count; i++) {
  const seed = options.first + i
  if (options.model) {
    for (const backend of options.backends) {
      runs++
      const report = runSimulation({ seed, backend })
      if (options.verbose) console.log(describeModel(report))
      if (report.failures.length === 0) continue
      failed++
      console.error(`FAIL ${describeModel(report)}`)
      for (const failure of report.failures) console.error(`  ${failure}`)
      console.error(`  replay: npm run sim -- --model --seed ${seed} --backend ${backend}`)
    }
  } else {
    runs++
    const profile = mixedProfile(seed)
    const run: ProductSimOptions = {
      seed,
      skewMs: options.skewMs ?? profile.skewMs,
      writers: options.writers ?? profile.writers,
      backend: options.backends[0] as BackendName,
    }
    const report = await runProductSimulation(run)
    const summary = `seed ${seed} (skew ${run.skewMs} ms, ${run.writers} writer(s)): ${JSON.stringify(report.stats)}`
    if (options.verbose) console.log(summary)
    if (report.failures.length > 0) {
      failed++
      console.error(`FAIL ${summary}`)
      for (const failure of report.failures) console.error(`  ${failure}`)
      console.error(
        `  replay: ${replayCommand(run)}${run.backend === 'yjs' ? '' : ` --backend ${run.backend}`}`,
      )
    }
  }
  progress(i + 1)
}
console.log(`${runs - failed} passed, ${failed} failed`)
process.exit(failed > 0 ? 1 : 0)
