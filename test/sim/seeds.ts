/** Run a range of simulator seeds as tap assertions; a failure names the seed and how to replay it. */

import type { Test } from 'tap'
import type { BackendName } from '../../crdt/index.ts'
import { runSimulation } from './simulator.ts'

/** CI runs at least this many seeds per backend; SIM_SEEDS raises it for a soak. */
export const SIM_SEEDS = Number(process.env.SIM_SEEDS ?? 500)

export function runSeeds(t: Test, backend: BackendName, first: number, count: number): void {
  let bets = 0
  let failed = 0
  for (let seed = first; seed < first + count; seed++) {
    const report = runSimulation({ seed, backend })
    bets += report.bets
    if (report.failures.length === 0) continue
    failed++
    t.fail(`seed ${seed} failed; replay: npm run sim -- --model --seed ${seed} --backend ${backend}`, {
      failures: report.failures,
    })
  }
  t.equal(failed, 0, `${count} seeds on ${backend}, ${bets} bets judged on 4 replicas each`)
}
