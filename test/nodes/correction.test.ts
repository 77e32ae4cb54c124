// Proves that a feed correction never follows a payout, on a real 3-server cluster: settlement
// waits for a market's correction deadline, so a correction that comes soon after the result
// refunds the bets it covers and pays none of them; one that comes after the deadline voids
// nothing, everywhere, and the trader counts it.

import type { NatsConnection } from '@nats-io/transport-node'
import t from 'tap'
import { CORRECTION_WINDOW_MS, judge } from '../../crdt/index.ts'
import type { ApiNode } from '../../nodes/api/api-node.ts'
import type { SettlementNode } from '../../nodes/settlement/settlement-node.ts'
import { marketIds } from '../../nodes/trader/trader.ts'
import { deposit, placeBet, startNodeStack } from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

const STAKE_CENTS = 1_000
const DEPOSIT_CENTS = 10_000
/** Well inside the correction window. */
const SOON_MS = Math.floor(CORRECTION_WINDOW_MS / 5)

t.test('a correction by the deadline refunds instead of paying; a later one voids nothing', async (t) => {
  // The trader's clock runs with the machine's, except that the test holds it while it stamps a
  // result and its correction, so the correction comes exactly SOON_MS after the result however
  // loaded the machine is.
  let heldMs: number | null = null
  const stack = await startNodeStack(t, {
    shards: 2,
    settlementNodes: ['settle-1'],
    traderClock: () => heldMs ?? Date.now(),
  })
  const { trader, client } = stack
  const api = stack.apis[0] as ApiNode
  const settlement = stack.settlements[0] as SettlementNode
  const fold = api.ledger.foldFor('alice')
  await deposit(stack, 'alice', DEPOSIT_CENTS)
  trader.feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })

  /** Open point `point`, back the home player, and return the bet id once it is final. */
  async function backHome(point: number, nc: NatsConnection): Promise<string> {
    const ids = marketIds(point)
    trader.feed.emit({ type: 'point-start', point, server: 'home' })
    await waitFor(`point ${point} open on the api node`, () => {
      const transitions = api.replicas.replica('match-1')?.game.markets.get(ids.winner)?.transitions
      return transitions?.at(-1)?.status === 'open'
    })
    const market = api.replicas.replica('match-1')?.game.markets.get(ids.winner)
    const betId = `bet-alice-${point}`
    const request = {
      betId,
      userId: 'alice',
      gameId: 'match-1',
      marketId: ids.winner,
      selectionId: 'home',
      stakeCents: STAKE_CENTS,
      odds: market?.transitions.at(-1)?.prices.home,
      policy: 'exact',
    }
    const reply = await placeBet(nc, request, stack.shards)
    t.match(reply, { ok: true, verdict: { accepted: true } }, `the bet on point ${point} is accepted`)
    trader.feed.emit({ type: 'serve', point, second: false })
    return betId
  }

  const first = await backHome(1, client)
  const placedAtMs = Date.now()
  heldMs = Date.now()
  trader.feed.emit({ type: 'point-end', point: 1, winner: 'home', ace: false })
  heldMs += SOON_MS
  trader.feed.emit({ type: 'correction', point: 1, fromMs: placedAtMs - 5_000, toMs: heldMs })
  // Let the machine's clock pass the held one before the trader stamps on by it again.
  const releasedAtMs = heldMs
  heldMs = null
  await waitFor('the clock passed the held time', () => Date.now() > releasedAtMs)
  await waitFor('the first bet settled', () => fold.bet('alice', first)?.status === 'settled')
  t.match(fold.bet('alice', first), { outcome: 'void', payoutCents: STAKE_CENTS }, 'refunded, never paid')
  t.equal(fold.balance('alice'), DEPOSIT_CENTS, 'the stake came back and nothing more')

  const second = await backHome(2, client)
  trader.feed.emit({ type: 'point-end', point: 2, winner: 'home', ace: false })
  await waitFor('the second bet settled', () => fold.bet('alice', second)?.status === 'settled')
  const paid = fold.bet('alice', second)
  t.match(paid, { outcome: 'won' }, 'the winner is paid once the deadline is final')
  trader.feed.emit({ type: 'correction', point: 2, fromMs: placedAtMs, toMs: Date.now() })
  await waitFor('the late correction reached the settlement node', () => {
    const market = settlement.replicas.replica('match-1')?.game.markets.get(marketIds(2).winner)
    return (market?.voids.length ?? 0) > 0
  })
  const game = settlement.replicas.replica('match-1')?.game
  if (game === undefined || paid === null) throw new Error('no replica or no bet')
  t.match(judge(game, paid), { accepted: true }, 'the late void voids nothing')
  t.equal(trader.trader.stats.lateCorrections, 1, 'the trader counts the late correction')
  t.same(fold.bet('alice', second), paid, 'and the payout stands')
})
