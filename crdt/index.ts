/** The CRDT core: stamps, the game document, verdicts and the two replica backends. */

import { automergeBackend } from './automerge.ts'
import type { Backend, BackendName } from './backend.ts'
import { yjsBackend } from './yjs.ts'

export * from './backend.ts'
export * from './errors.ts'
export * from './game.ts'
export * from './hlc.ts'
export * from './judge.ts'
export * from './limits.ts'
export * from './ops.ts'
export { automergeBackend, yjsBackend }

export const BACKENDS: Readonly<Record<BackendName, Backend>> = {
  yjs: yjsBackend,
  automerge: automergeBackend,
}

/** Yjs is the default: the benchmark (BENCHMARKS.md) measures it faster on every figure. */
export const DEFAULT_BACKEND: BackendName = 'yjs'

export function backendNamed(name: string): Backend {
  const backend = BACKENDS[name as BackendName]
  if (backend === undefined) {
    throw new RangeError(
      `unknown CRDT backend ${JSON.stringify(name)}; expected one of ${Object.keys(BACKENDS).join(', ')}`,
    )
  }
  return backend
}
