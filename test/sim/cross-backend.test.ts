// Proves that the two backends are interchangeable: the same seed drives the same trader ops through
// the simulator, and the run ends with the same state hash on Yjs and on Automerge, every invariant
// holding on both. (The bets may differ: a bettor reacts to what its replica shows, and the
// backends make some ops visible at different moments, seen after restarts and reordered
// deliveries. Verdicts for the same bets are compared in properties.test.ts.)

import t from 'tap'
import { runSimulation } from './simulator.ts'

for (let seed = 1_000; seed < 1_020; seed++) {
  const yjs = runSimulation({ seed, backend: 'yjs' })
  const automerge = runSimulation({ seed, backend: 'automerge' })
  t.equal(automerge.stateHash, yjs.stateHash, `seed ${seed}: same state hash`)
  t.same([automerge.failures, yjs.failures], [[], []], `seed ${seed}: every invariant holds on both`)
}
