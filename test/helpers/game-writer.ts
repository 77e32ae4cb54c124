/** A writer for tests: a replica of a chosen backend, a clock it controls, and op shortcuts. */

import {
  type Backend,
  createHlc,
  encodeStamp,
  type Heartbeat,
  type Hlc,
  type MarketOp,
  type MarketStatus,
  type Op,
  type Replica,
  type StampKey,
  stampOps,
} from '../../crdt/index.ts'

export interface TestWriter {
  readonly node: string
  readonly hlc: Hlc
  readonly replica: Replica
  /** Set the physical clock this writer's HLC reads. */
  at(wallMs: number): TestWriter
  /** Stamp and commit ops; returns the update to deliver elsewhere. */
  write(...ops: Op[]): Uint8Array
  /** Heartbeat at the clock's next tick; returns the heartbeat to deliver elsewhere. */
  heartbeat(): Heartbeat
  /** The stamp of the last op written. */
  lastStamp(): StampKey
}

export function createTestWriter(backend: Backend, node: string, startMs = 1_000): TestWriter {
  let wallMs = startMs
  const hlc = createHlc({ node, clock: () => wallMs })
  const replica = backend.create()
  const writer: TestWriter = {
    node,
    hlc,
    replica,
    at(ms) {
      wallMs = ms
      return writer
    },
    write(...ops) {
      return replica.commit(stampOps(hlc, ops))
    },
    heartbeat() {
      return replica.heartbeat(encodeStamp(hlc.now()))
    },
    lastStamp() {
      return encodeStamp(hlc.last())
    },
  }
  return writer
}

/** A stamp of a node that is not a writer, e.g. an API node stamping a bet. */
export function stampAt(wallMs: number, node = 'api-1', logical = 0): StampKey {
  return encodeStamp({ wall: wallMs, logical, node })
}

export const NEXT_POINT: MarketOp = {
  kind: 'market',
  marketId: 'point-1',
  name: 'Next point winner',
  selections: [
    { id: 'home', name: 'Home' },
    { id: 'away', name: 'Away' },
  ],
}

export function transition(status: MarketStatus, home = 1_800, away = 2_050, marketId = 'point-1'): Op {
  return { kind: 'transition', marketId, status, prices: { home, away }, reason: status }
}
