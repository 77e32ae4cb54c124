import t from 'tap'
import { marketIds } from '../../nodes/trader/trader.ts'
import { GAME, ofType, openClient, startGatewayStack } from '../helpers/gateway-stack.ts'

t.test('smoke', async (t) => {
  const stack = await startGatewayStack()
  t.teardown(() => stack.close())
  await stack.deposit('alice', 10_000)
  const client = await openClient(stack.wsUrl, { token: await stack.token('alice') })
  t.teardown(() => client.close())
  const hello = await client.next(ofType('hello'))
  t.equal(hello.userId, 'alice')
  client.send({ type: 'subscribe', gameId: GAME, ref: 's1' })
  const snap = await client.next(ofType('snapshot'))
  t.equal(snap.gameId, GAME)
  stack.feed.emit({ type: 'point-start', point: 1, server: 'home' })
  const delta = await client.next(ofType('delta', (d) => (d.markets ?? []).some((m) => m.status === 'open')))
  const market = (delta.markets ?? []).find((m) => m.marketId === marketIds(1).winner)
  t.ok(market)
  client.send({
    type: 'place',
    ref: 'p1',
    betId: 'bet-alice-000001',
    gameId: GAME,
    marketId: marketIds(1).winner,
    selectionId: 'home',
    stakeCents: 500,
    odds: market?.prices.home ?? 0,
    policy: 'exact',
  })
  const provisional = await client.next(ofType('bet', (b) => b.status === 'provisional'))
  t.match(provisional, { accepted: true, balanceCents: 9_500 })
  const final = await client.next(ofType('bet', (b) => b.status === 'final'))
  t.match(final, { accepted: true })
  stack.feed.emit({ type: 'serve', point: 1, second: false })
  stack.feed.emit({ type: 'point-end', point: 1, winner: 'home', ace: false })
  const settled = await client.next(ofType('bet', (b) => b.status === 'settled'))
  t.match(settled, { outcome: 'won' })
  t.same(client.invalid, [])
  console.log(client.frames.map((f) => JSON.stringify(f).slice(0, 200)).join('\n'))
})
