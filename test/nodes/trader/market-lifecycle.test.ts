// Proves the pure steps of the market lifecycle on a real Yjs replica: a point opens suspended
// while the kill switch is thrown; after a fault only the markets the serve suspended are
// repriced, each reopened at second-serve prices or frozen when a price would jump past the band;
// the markets of the current point that are open, and the last point the game holds, are read
// from the game.

import t from 'tap'
import { AFTER_ALL_STAMPS, type Op, transitionAt, yjsBackend } from '../../../crdt/index.ts'
import { openMarkets, pointStartOps, secondServeOps } from '../../../nodes/trader/market-lifecycle.ts'
import { lastPoint, marketIds, transitionTo } from '../../../nodes/trader/point-markets.ts'
import { createTestWriter } from '../../helpers/game-writer.ts'

const MARGIN = 0.05

function gameWithPoint(point: number) {
  const writer = createTestWriter(yjsBackend, 'trader-1')
  writer.write({ kind: 'game', gameId: 'match-1', writers: ['trader-1'] })
  writer.write(...pointStartOps(point, 'home', false, MARGIN))
  return writer
}

t.test('a point opens suspended while the kill switch is thrown', async (t) => {
  const ops = pointStartOps(3, 'away', true, MARGIN)
  const transitions = ops.filter((op): op is Extract<Op, { kind: 'transition' }> => op.kind === 'transition')
  t.same(
    transitions.map((op) => [op.marketId, op.status, op.reason]),
    [
      ['p3-winner', 'suspended', 'kill switch'],
      ['p3-ace', 'suspended', 'kill switch'],
    ],
  )
  const winner = transitions[0]?.prices ?? {}
  t.ok((winner.away ?? 0) < (winner.home ?? 0), 'the server is the favourite')
})

t.test('after a fault, only the served markets reprice, and a jump past the band freezes', async (t) => {
  const writer = gameWithPoint(1)
  const ids = marketIds(1)
  const current = { point: 1, server: 'home' } as const
  const game = writer.replica.game
  t.same(secondServeOps(game, current, { margin: MARGIN, priceJumpMax: 0.5 }), { ops: [], frozen: 0 })
  t.same(openMarkets(game, current), [ids.winner, ids.ace])

  writer.write(...[ids.winner, ids.ace].map((id) => transitionTo(game, id, 'suspended', 'serve')))
  t.same(openMarkets(game, current), [])
  const banded = secondServeOps(game, current, { margin: MARGIN, priceJumpMax: 0.5 })
  t.equal(banded.frozen, 1, 'the ace price would jump past the band')
  t.match(banded.ops, [
    { marketId: ids.winner, status: 'open', reason: 'second serve' },
    {
      marketId: ids.ace,
      status: 'suspended',
      reason: 'price jump: frozen',
      prices: transitionAt(game, ids.ace, AFTER_ALL_STAMPS)?.prices,
    },
  ])
  const wide = secondServeOps(game, current, { margin: MARGIN, priceJumpMax: 100 })
  t.equal(wide.frozen, 0)
  t.same(
    wide.ops.map((op) => op.kind === 'transition' && op.status),
    ['open', 'open'],
  )
})

t.test('the last point is read from the market ids the game holds', async (t) => {
  t.equal(lastPoint(yjsBackend.create().game), 0)
  const writer = gameWithPoint(12)
  writer.write(...pointStartOps(9, 'home', false, MARGIN))
  t.equal(lastPoint(writer.replica.game), 12)
  t.same(openMarkets(writer.replica.game, null), [], 'no current point, nothing open')
})
