// Runs the deterministic simulator (simulator.ts) over SIM_SEEDS seeds on the yjs backend: a
// trader, two API nodes and a settlement node over a network that delays, reorders, duplicates,
// loses and partitions, with restarts from snapshots. Each seed must end converged, with identical
// final verdicts everywhere and no bet accepted where the trader's log says it should not be.

import t from 'tap'
import { runSeeds, SIM_SEEDS } from './seeds.ts'

runSeeds(t, 'yjs', 1, SIM_SEEDS)
