/** Turn a trader script into the updates a writer of a given backend publishes. */

import { type Backend, createHlc, type Replica, stampOps } from '../../crdt/index.ts'
import { createPrng } from '../sim/prng.ts'
import { type ScriptStep, tennisScript } from '../sim/tennis-script.ts'

export interface ScriptedRun {
  readonly writer: Replica
  readonly updates: Uint8Array[]
}

export function runScript(backend: Backend, node: string, steps: readonly ScriptStep[]): ScriptedRun {
  let wallMs = 0
  const hlc = createHlc({ node, clock: () => wallMs })
  const writer = backend.create()
  const updates = steps.map((step) => {
    wallMs = step.atMs
    return writer.commit(stampOps(hlc, step.ops))
  })
  return { writer, updates }
}

/** A generated match of `points` points by writer `trader-1`. */
export function scriptedMatch(backend: Backend, seed: number, points = 6): ScriptedRun {
  const steps = tennisScript(createPrng(seed), {
    gameId: 'match-1',
    writers: ['trader-1'],
    points,
    startMs: 1_000_000,
    windowMs: 4_000,
    heartbeatMs: 250,
  })
  return runScript(backend, 'trader-1', steps)
}
