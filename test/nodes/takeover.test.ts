// Trader takeover on a real 3-server cluster. A standby trader heartbeats beside the active one;
// when the active falls silent the standby fences it, voids the markets left without a result and
// runs the match from the next point, and bets keep turning final and settling. A trader that was
// only paused and writes again after the fence has every such update dropped by every node, and
// stands down. An active trader fences a standby that died, so finality stops waiting for it.

import t, { type Test } from 'tap'
import { fenceOf, watermarkOf, writerOf } from '../../crdt/index.ts'
import type { ApiNode } from '../../nodes/api/api-node.ts'
import type { DroppedUpdate } from '../../nodes/fabric/replica-sync.ts'
import { marketIds } from '../../nodes/trader/trader.ts'
import { statusSubject } from '../../protocol/subjects.ts'
import {
  deposit,
  STACK_GAME as GAME,
  type ManualTraderNode,
  placeBet,
  startNodeStack,
} from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

const WRITERS = ['trader-1', 'trader-2']
const TAKEOVER_AFTER_MS = 400

/** An active trader, a standby, an API node and a settlement node; alice has 100.00. */
async function startStack(t: Test) {
  const stack = await startNodeStack(t, {
    traders: WRITERS,
    traderLimits: { takeoverAfterMs: TAKEOVER_AFTER_MS },
    settlementNodes: ['settle-1'],
  })
  const [active, standby] = stack.traders as [ManualTraderNode, ManualTraderNode]
  const api = stack.apis[0] as ApiNode
  const dropped: DroppedUpdate[] = []
  api.replicas.onDrop((event) => dropped.push(event))
  const client = stack.client
  const statuses: { betId: string; status: string; outcome?: string; verdict?: { reason: string | null } }[] =
    []
  client.subscribe(statusSubject('alice'), {
    callback: (_e, message) => {
      statuses.push(message.json())
    },
  })
  await deposit(stack, 'alice', 10_000)
  const game = () => api.replicas.replica(GAME)?.game
  const bet = (betId: string, point: number) => {
    const marketId = marketIds(point).winner
    const odds = game()?.markets.get(marketId)?.transitions.at(-1)?.prices.home
    return {
      betId,
      userId: 'alice',
      gameId: GAME,
      marketId,
      selectionId: 'home',
      stakeCents: 1_000,
      odds,
      policy: 'exact',
    }
  }
  /** Point 1 open on the api node, with both traders heard from. */
  const pointOneOpen = () =>
    waitFor(
      'point 1 open, both traders heard',
      () =>
        game()?.markets.get(marketIds(1).winner) !== undefined &&
        WRITERS.every((writer) => watermarkOf(game()!, writer) !== null),
    )
  const statusOf = (betId: string, status: string) =>
    statuses.find((s) => s.betId === betId && s.status === status)
  return { active, standby, api, client, dropped, game, bet, statusOf, pointOneOpen }
}

t.test('a standby takes over from a trader that died', async (t) => {
  const { active, standby, api, client, game, bet, statusOf, pointOneOpen } = await startStack(t)

  active.feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  active.feed.emit({ type: 'point-start', point: 1, server: 'home' })
  await pointOneOpen()
  t.match(await placeBet(client, bet('bet-before', 1)), { ok: true, verdict: { accepted: true } })
  await waitFor('final: both traders heartbeat', () => statusOf('bet-before', 'final') !== undefined)
  t.equal(standby.trader.role(), 'standby')

  await active.close()
  await waitFor('trader-1 fenced on the api node', () => fenceOf(game()!, 'trader-1') !== null)
  t.equal(writerOf(fenceOf(game()!, 'trader-1')!), 'trader-2')
  t.equal(standby.trader.role(), 'active')
  t.equal(standby.trader.stats.marketsVoidedOnTakeover, 2, 'both markets of point 1 had no result')
  await waitFor(
    'the open bet is voided and refunded',
    () => statusOf('bet-before', 'settled')?.outcome === 'void',
  )
  t.match(statusOf('bet-before', 'final'), { verdict: { accepted: true } }, 'its final verdict stood')

  standby.feed.emit({ type: 'point-start', point: 2, server: 'home' })
  await waitFor('point 2 open', () => game()?.markets.get(marketIds(2).winner) !== undefined)
  t.match(await placeBet(client, bet('bet-after', 2)), { ok: true, verdict: { accepted: true } })
  await waitFor('final with trader-2 alone', () => statusOf('bet-after', 'final') !== undefined)
  standby.feed.emit({ type: 'serve', point: 2, second: false })
  standby.feed.emit({ type: 'point-end', point: 2, winner: 'home', ace: false })
  await waitFor('won and paid', () => statusOf('bet-after', 'settled')?.outcome === 'won')
  t.equal(
    api.replicas.replica(GAME)?.stateHash(),
    standby.replicas.replica(GAME)?.stateHash(),
    'the api node and the new trader hold the same document',
  )
})

t.test('a paused trader that writes after the fence is dropped everywhere and stands down', async (t) => {
  const { active, standby, api, client, dropped, game, bet, statusOf, pointOneOpen } = await startStack(t)
  active.feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  active.feed.emit({ type: 'point-start', point: 1, server: 'home' })
  await pointOneOpen()

  // A pause: no heartbeats, and the trader does not look at its replica, so it still thinks it runs
  // the game when it wakes.
  const { step, heartbeat } = active.trader
  active.trader.step = () => {}
  active.trader.heartbeat = () => {}
  await waitFor('trader-2 took over', () => fenceOf(game()!, 'trader-1') !== null)
  active.feed.emit({ type: 'serve', point: 1, second: false })
  active.feed.emit({ type: 'point-end', point: 1, winner: 'away', ace: false })
  await waitFor('its update was dropped', () => dropped.length >= 1)
  t.ok(dropped.every((d) => d.writer === 'trader-1' && d.reason === 'writer fenced'))
  await waitFor('trader-1 stood down', () => active.trader.role() === 'fenced')
  active.trader.step = step
  active.trader.heartbeat = heartbeat
  t.match(active.trader.fencedReason(), /dropped|fenced by trader-2/)

  const market = marketIds(1).winner
  t.same(
    game()?.markets.get(market)?.results,
    [],
    'the result trader-1 wrote after its fence is in no replica',
  )
  t.equal(standby.replicas.replica(GAME)?.stateHash(), api.replicas.replica(GAME)?.stateHash())
  standby.feed.emit({ type: 'point-start', point: 2, server: 'away' })
  await waitFor('point 2 open', () => game()?.markets.get(marketIds(2).winner) !== undefined)
  t.match(await placeBet(client, bet('bet-after-pause', 2)), { ok: true, verdict: { accepted: true } })
  await waitFor('final', () => statusOf('bet-after-pause', 'final') !== undefined)
})

t.test('an active trader fences a standby that died, and finality stops waiting for it', async (t) => {
  const { active, standby, client, game, bet, statusOf, pointOneOpen } = await startStack(t)
  active.feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  active.feed.emit({ type: 'point-start', point: 1, server: 'home' })
  await pointOneOpen()
  await standby.close()
  await waitFor('trader-2 fenced', () => fenceOf(game()!, 'trader-2') !== null)
  t.equal(active.trader.role(), 'active')
  t.equal(active.trader.stats.marketsVoidedOnTakeover, 0, 'the active trader voids nothing')
  const reply = await placeBet(client, bet('bet-standby-gone', 1))
  t.match(reply, { ok: true, verdict: { accepted: true } }, JSON.stringify(reply))
  await waitFor('final without trader-2', () => statusOf('bet-standby-gone', 'final') !== undefined)
})
