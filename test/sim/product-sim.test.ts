// Runs the product simulator (test/sim/product/) over PRODUCT_SIM_SEEDS seeds (500 by default):
// the nodes' own code, the trader node, bet service, settler, replica sync and ledger fold, over the
// memory transport, in one seeded world with cut-off, paused and restarted nodes, one to three
// writers with takeovers, clock offsets beyond the drift bound every fourth seed, hostile
// bettors, and markets busy enough that their shards move liability allowance between them. Each seed must end with every invariant of product/checks.ts holding; a failure prints
// the command that replays it.

import t from 'tap'
import { mixedProfile, replayCommand, runProductSimulation } from './product/simulation.ts'

const SEEDS = Number(process.env.PRODUCT_SIM_SEEDS ?? 500)

t.test(`${SEEDS} seeds of the product simulator`, async (t) => {
  let failed = 0
  let acknowledged = 0
  let moves = 0
  for (let seed = 1; seed <= SEEDS; seed++) {
    const options = { seed, ...mixedProfile(seed) }
    const report = await runProductSimulation(options)
    acknowledged += report.stats.acknowledged ?? 0
    moves += report.stats.allowanceMoves ?? 0
    if (report.failures.length === 0) continue
    failed++
    t.fail(`seed ${seed} failed; replay: ${replayCommand(options)}`, { failures: report.failures })
  }
  t.equal(failed, 0, `${SEEDS} seeds, ${acknowledged} acknowledged bets checked`)
  // The markets' liability limit is tight enough that shards move allowance, or the escrow's
  // checks would hold vacuously.
  t.ok(moves >= SEEDS, `${moves} allowance moves between shards`)
})
