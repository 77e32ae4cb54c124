// Proves that the log's fence decisions (log-fences.ts) never disagree with the replica's reading
// of the fences it applied (crdt/game.ts reads them in stamp order). Three writers fence each other
// at random stamps, in a random log order; every node applies what the log accepts. For every
// writer, the fencer the log names must be the fencer the replica names. Before the third rule
// (do not fence a writer before a fence it has already made), B fencing A at 100 and then C
// fencing B at 95 left A fenced by the log and active in the replica, so finality waited for good.

import fc from 'fast-check'
import t from 'tap'
import { fenceOf, writerOf, yjsBackend } from '../../../crdt/index.ts'
import { createLogFences } from '../../../nodes/fabric/log-fences.ts'
import { createTestWriter } from '../../helpers/game-writer.ts'

const WRITERS = ['trader-1', 'trader-2', 'trader-3'] as const

/** Apply `fences` (author, target, wall ms) in log order; return the log's and replica's fencers. */
function run(fences: readonly { author: number; target: number; wallMs: number }[]) {
  const writers = WRITERS.map((node) => createTestWriter(yjsBackend, node, 1))
  const genesis = (writers[0] as (typeof writers)[number]).write({
    kind: 'game',
    gameId: 'g',
    writers: [...WRITERS],
  })
  const reader = yjsBackend.create()
  reader.apply(genesis)
  const log = createLogFences()
  // A writer whose update the log dropped stands down and writes nothing more (trader.ts): its own
  // replica holds what no other will, and its later updates could not be applied elsewhere anyway.
  const stoodDown = new Set<string>()
  for (const { author, target, wallMs } of fences) {
    const writer = writers[author] as (typeof writers)[number]
    if (stoodDown.has(writer.node)) continue
    const update = writer.at(wallMs).write({ kind: 'fence', writer: WRITERS[target] as string })
    const stamp = writer.lastStamp()
    if (log.decide(writer.node, [{ target: WRITERS[target] as string, stamp }]) === null) reader.apply(update)
    else stoodDown.add(writer.node)
  }
  return WRITERS.map((node) => {
    const fence = fenceOf(reader.game, node)
    return { node, log: log.fencedBy(node), replica: fence === null ? null : writerOf(fence) }
  })
}

t.test('three writers racing fences: the log and the replica name the same fencers', async (t) => {
  const fence = fc
    .record({
      author: fc.integer({ min: 0, max: 2 }),
      offset: fc.integer({ min: 1, max: 2 }),
      wallMs: fc.integer({ min: 100, max: 200 }),
    })
    .map(({ author, offset, wallMs }) => ({ author, target: (author + offset) % 3, wallMs }))
  fc.assert(
    fc.property(fc.array(fence, { minLength: 1, maxLength: 6 }), (fences) => {
      for (const { node, log, replica } of run(fences)) {
        if (log !== replica) throw new Error(`${node}: the log says ${log}, the replica ${replica}`)
      }
    }),
    { numRuns: 2_000 },
  )
  t.pass('2,000 random races agree')
})

t.test('a writer that lost a fence race has its later updates dropped too', async (t) => {
  const log = createLogFences()
  t.equal(log.decide('trader-2', [{ target: 'trader-1' }]), null, 'trader-2 wins')
  t.equal(log.decide('trader-3', [{ target: 'trader-1' }]), 'already fenced', 'trader-3 loses')
  t.equal(
    log.decide('trader-3', []),
    'lost a fence race',
    'what trader-3 wrote after its takeover counts nowhere',
  )
  t.equal(log.decide('trader-2', []), null, 'the winner writes on')
})

t.test('the race the review found: B fences A at 100, then C fences B at 95', async (t) => {
  const result = run([
    { author: 1, target: 0, wallMs: 100 },
    { author: 2, target: 1, wallMs: 95 },
  ])
  t.same(result, [
    { node: 'trader-1', log: 'trader-2', replica: 'trader-2' },
    { node: 'trader-2', log: null, replica: null },
    { node: 'trader-3', log: null, replica: null },
  ])
})
