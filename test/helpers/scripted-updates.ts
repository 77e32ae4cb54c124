/** Turn a trader script into the updates a writer of a given backend publishes. */

import {
  type Backend,
  createHlc,
  encodeStamp,
  type Heartbeat,
  type Replica,
  stampOps,
} from '../../crdt/index.ts'
import { createPrng } from '../../nodes/fabric/prng.ts'
import { isHeartbeat, type ScriptStep, tennisScript } from '../sim/tennis-script.ts'

export interface ScriptedRun {
  readonly writer: Replica
  /** Document updates, in publish order. */
  readonly updates: Uint8Array[]
  /** Heartbeats, in publish order. */
  readonly heartbeats: Heartbeat[]
}

export function runScript(backend: Backend, node: string, steps: readonly ScriptStep[]): ScriptedRun {
  let wallMs = 0
  const hlc = createHlc({ node, clock: () => wallMs })
  const writer = backend.create()
  const updates: Uint8Array[] = []
  const heartbeats: Heartbeat[] = []
  for (const step of steps) {
    wallMs = step.atMs
    if (isHeartbeat(step)) heartbeats.push(writer.heartbeat(encodeStamp(hlc.now())))
    else updates.push(writer.commit(stampOps(hlc, step.ops)))
  }
  return { writer, updates, heartbeats }
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
