// Takeover at the document level, on both backends: a writer fences another; the fenced writer's
// later entries stop counting, finality stops waiting for it, and only a writer active at the
// fence's stamp can fence one that is still active. (That a replica holding the fence holds every
// entry of the fenced writer that counts is the fabric's part: test/nodes/takeover.test.ts.)

import t from 'tap'
import {
  activeWriters,
  BACKENDS,
  type Backend,
  fenceOf,
  isFinal,
  judge,
  parseEntry,
  type Replica,
} from '../../crdt/index.ts'
import { createTestWriter, NEXT_POINT, stampAt, transition } from '../helpers/game-writer.ts'

const BET = { marketId: 'point-1', selectionId: 'home', odds: 1_800, policy: 'any' as const }

function deliver(replica: Replica, ...updates: Uint8Array[]): Replica {
  for (const update of updates) replica.apply(update)
  return replica
}

/** trader-1 runs the game and opens the market; trader-2 is a standby writer that holds it all. */
function standbyGame(backend: Backend) {
  const active = createTestWriter(backend, 'trader-1', 1_000)
  const standby = createTestWriter(backend, 'trader-2', 1_000)
  const opened = active.write(
    { kind: 'game', gameId: 'g', writers: ['trader-1', 'trader-2'] },
    NEXT_POINT,
    transition('open'),
  )
  deliver(standby.replica, opened)
  return { active, standby, opened }
}

for (const backend of Object.values(BACKENDS) as Backend[]) {
  t.test(`${backend.name}: a standby fences a silent writer and takes over`, async (t) => {
    const { active, standby, opened } = standbyGame(backend)
    const beat = standby.at(2_000).heartbeat()
    const reader = deliver(backend.create(), opened)
    reader.applyHeartbeat(beat)
    t.equal(isFinal(reader.game, stampAt(3_000)), false, 'trader-1 has not passed 3,000')

    const takeover = standby.at(5_000).write({ kind: 'fence', writer: 'trader-1' }, transition('suspended'))
    reader.apply(takeover)
    t.ok(fenceOf(reader.game, 'trader-1'), 'the fence counts')
    t.same(activeWriters(reader.game), ['trader-2'])
    t.same(
      judge(reader.game, { ...BET, stamp: stampAt(3_000) }),
      { accepted: true, reason: null, odds: 1_800, gameClockMs: null, final: true },
      'final without waiting for trader-1: open at its last word',
    )
    t.equal(judge(reader.game, { ...BET, stamp: stampAt(5_500) }).reason, 'MARKET_NOT_OPEN')

    const late = active.at(6_000).write(transition('open', 1_700, 2_100))
    reader.apply(late)
    t.equal(
      judge(reader.game, { ...BET, stamp: stampAt(6_500) }).reason,
      'MARKET_NOT_OPEN',
      'an entry trader-1 stamped after its fence does not count',
    )
    t.equal(fenceOf(reader.game, 'trader-2'), null)
  })

  t.test(`${backend.name}: who may fence`, async (t) => {
    const { active, standby, opened } = standbyGame(backend)
    const outsider = createTestWriter(backend, 'trader-9', 1_000)
    deliver(outsider.replica, opened)
    const reader = deliver(
      backend.create(),
      opened,
      outsider.at(3_000).write({ kind: 'fence', writer: 'trader-1' }),
    )
    t.equal(fenceOf(reader.game, 'trader-1'), null, 'a fence by a non-writer does not count')

    // Each fences the other; trader-1 stamps its fence later, after trader-2's has ended its span.
    const fenced = standby.at(4_000).write({ kind: 'fence', writer: 'trader-1' })
    const counter = active.at(4_500).write({ kind: 'fence', writer: 'trader-2' })
    deliver(reader, counter, fenced)
    t.equal(fenceOf(reader.game, 'trader-1')?.stamp.slice(0, 13), '0000000004000')
    t.equal(fenceOf(reader.game, 'trader-2'), null, 'a writer fenced at 4,000 cannot fence anyone at 4,500')
    t.same(activeWriters(reader.game), ['trader-2'])
  })

  t.test(`${backend.name}: a writer cannot fence itself`, async (t) => {
    const stamp = stampAt(1_000, 'trader-1')
    t.equal(parseEntry({ kind: 'fence', writer: 'trader-1', stamp }), null)
    t.same(parseEntry({ kind: 'fence', writer: 'trader-2', stamp }), {
      kind: 'fence',
      writer: 'trader-2',
      stamp,
    })
  })
}
