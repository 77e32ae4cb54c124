// Proves the clock bound on a real 3-server cluster: a node whose clock is further from a writer's
// than `maxDriftMs` stops judging. An API node 5.6 s behind its trader, and a trader 5.6 s ahead of
// its API node, once accepted a bet placed after the API node had applied the suspension, stamped
// before it, as final. Now the API node refuses every bet with CLOCK_DRIFT and is not ready while the
// offset lasts; once the clocks agree again it judges, and a bet after the suspension is rejected
// MARKET_NOT_OPEN. The cluster probe names the node whose clock is off.

import pino from 'pino'
import t, { type Test } from 'tap'
import { DEFAULT_MAX_DRIFT_MS } from '../../crdt/index.ts'
import type { ApiNode } from '../../nodes/api/api-node.ts'
import { startClockProbe } from '../../nodes/fabric/clock-probe.ts'
import { marketIds } from '../../nodes/trader/trader.ts'
import { startNatsCluster } from '../../scripts/nats-cluster.ts'
import { deposit, placeBet, startNodeStack } from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })
const REGION = 'eu'
const BEYOND_BOUND_MS = DEFAULT_MAX_DRIFT_MS + 600

/** A stack whose trader and API node clocks run `skews.trader` and `skews.api` ms off. */
async function startSkewedStack(t: Test, skews: { trader: number; api: number }) {
  const stack = await startNodeStack(t, {
    shards: 2,
    traderClock: () => Date.now() + skews.trader,
    apiClocks: { 'api-1': () => Date.now() + skews.api },
  })
  await deposit(stack, 'alice', 100_000)
  return { trader: stack.trader, api: stack.apis[0] as ApiNode, client: stack.client, shards: stack.shards }
}

for (const [name, skews] of [
  ['an API node behind its trader', { trader: 0, api: -BEYOND_BOUND_MS }],
  ['a trader ahead of its API node', { trader: BEYOND_BOUND_MS, api: 0 }],
] as const) {
  t.test(`${name} by more than the bound judges nothing`, async (t) => {
    const clocks = { ...skews }
    const { trader, api, client, shards } = await startSkewedStack(t, clocks)
    trader.feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
    trader.feed.emit({ type: 'point-start', point: 1, server: 'home' })
    const ids = marketIds(1)
    trader.feed.emit({ type: 'serve', point: 1, second: false })
    await waitFor('the suspension reached the API node', () => {
      const transitions = api.replicas.replica('match-1')?.game.markets.get(ids.winner)?.transitions ?? []
      return transitions.at(-1)?.status === 'suspended'
    })
    const bet = {
      betId: 'bet-alice-late-0001',
      userId: 'alice',
      gameId: 'match-1',
      marketId: ids.winner,
      selectionId: 'home',
      stakeCents: 1_000,
      odds: 1_001,
      policy: 'any',
    }
    const refused = await placeBet(client, bet, shards)
    t.match(refused, { ok: false, error: { code: 'CLOCK_DRIFT' } }, 'a bet after the suspension is refused')
    t.notOk(api.ready(), 'the API node is not ready')
    t.match(api.replicas.clock.unsafe(), /beyond the 5000 ms bound/)
    t.equal(api.ledger.foldFor('alice').balance('alice'), 100_000, 'nothing was debited')

    clocks.trader = 0
    clocks.api = 0
    await waitFor('the clocks agree again', () => api.replicas.clock.unsafe() === null)
    t.ok(api.ready(), 'ready again')
    const judged = await placeBet(client, bet, shards)
    t.match(
      judged,
      { ok: true, verdict: { accepted: false, reason: 'MARKET_NOT_OPEN' } },
      'the same bet, judged now, is after the suspension',
    )
  })
}

t.test('the cluster probe names the node whose clock is off', async (t) => {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const skews: Record<string, number> = { a: 0, b: 0, c: 8_000 }
  const probes = await Promise.all(
    Object.keys(skews).map(async (node) =>
      startClockProbe({
        nc: await cluster.connect(),
        region: REGION,
        node,
        now: () => Date.now() + (skews[node] as number),
        log,
        intervalMs: 60_000,
        onOffset: () => {},
      }),
    ),
  )
  t.teardown(() => {
    for (const probe of probes) probe.stop()
  })
  // Interest in the probe subject reaches the other servers of the cluster a little after each
  // node subscribes: probe until every node has heard both others.
  let offsets: (number | null)[] = []
  await waitFor('every node heard both peers', async () => {
    offsets = await Promise.all(probes.map((probe) => probe.probe()))
    return Math.abs((offsets[2] ?? 0) - 8_000) < 1_000
  })
  const [a, b, c] = offsets
  t.ok(Math.abs(a as number) < 1_000, `a is near the region (${a} ms)`)
  t.ok(Math.abs(b as number) < 1_000, `b is near the region (${b} ms)`)
  t.ok(Math.abs((c as number) - 8_000) < 1_000, `c runs 8 s ahead (${c} ms)`)
})
