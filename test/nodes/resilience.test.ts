// Proves the fabric's promises under races and restarts on a real 3-server cluster. Two API nodes
// race bets of one user past the balance: exactly the bets the balance at their stream position
// cannot cover are refused, and both nodes' ledger folds are identical. An API node and a
// settlement node are stopped mid-stream and replaced: the new API node restores the game from
// the trader's snapshot and answers a retried placement with the original stamp; bets placed while
// no settlement node ran are all settled, once each, by the restarted one.

import t from 'tap'
import type { ApiNode } from '../../nodes/api/api-node.ts'
import { marketIds } from '../../nodes/trader/trader.ts'
import type { PlaceBetReply } from '../../protocol/bets.ts'
import { deposit, ledgerPosition, placeBet, startNodeStack } from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

t.test('races and restarts', async (t) => {
  const stack = await startNodeStack(t, { apiNodes: ['api-1', 'api-2'], snapshotIntervalMs: 200 })
  const { trader, client } = stack
  const feed = trader.feed
  const [api1, api2] = stack.apis as [ApiNode, ApiNode]
  await deposit(stack, 'carol', 5_000)

  feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  feed.emit({ type: 'point-start', point: 1, server: 'home' })
  const ids = marketIds(1)
  const ready = (node: ApiNode) =>
    node.replicas.replica('match-1')?.game.markets.get(ids.winner)?.transitions.length === 1
  await waitFor('both api nodes see the market', () => ready(api1) && ready(api2))

  // Each node's queue subscription takes a share; 20 bets of 1,000 cents race for a 5,000 balance.
  const bet = (i: number) => ({
    betId: `bet-carol-${String(i).padStart(4, '0')}`,
    userId: 'carol',
    gameId: 'match-1',
    marketId: ids.winner,
    selectionId: 'away',
    stakeCents: 1_000,
    odds: 1_100,
    policy: 'any',
  })
  const replies = await Promise.all(Array.from({ length: 20 }, (_, i) => placeBet(client, bet(i))))
  const accepted = replies.filter((r) => r.ok)
  const refused = replies.filter((r) => !r.ok && r.error.code === 'INSUFFICIENT_FUNDS')
  t.equal(accepted.length, 5, 'exactly the covered stakes are accepted')
  t.equal(refused.length, 15, 'the overspending ones are refused')
  await waitFor('folds agree', () => ledgerPosition(api1.ledger) === ledgerPosition(api2.ledger))
  t.equal(
    api1.ledger.foldFor('carol').stateHash(),
    api2.ledger.foldFor('carol').stateHash(),
    'both nodes folded the same ledger',
  )
  t.equal(api1.ledger.foldFor('carol').balance('carol'), 0)

  // Stop api-1 mid-stream; its replacement restores from the trader's snapshot and the ledger.
  await waitFor('a snapshot round has run', async () => (await trader.replicas.writeSnapshots()) > 0)
  await api1.close()
  const api3 = await stack.startApi('api-3')
  await waitFor(
    'the new node converged',
    () => api3.replicas.replica('match-1')?.stateHash() === trader.replicas.replica('match-1')?.stateHash(),
  )
  const original = accepted[0] as Extract<PlaceBetReply, { ok: true }>
  const retry = await placeBet(client, bet(Number(original.betId.slice(-4))))
  t.match(
    retry,
    { ok: true, stamp: original.stamp },
    'a retried placement after the restart keeps its original stamp',
  )

  // No settlement node runs while the point ends; one starts, stops mid-stream, and is restarted.
  feed.emit({ type: 'serve', point: 1, second: false })
  feed.emit({ type: 'point-end', point: 1, winner: 'away', ace: false })
  await (await stack.startSettlement('settle-1')).close()
  await stack.startSettlement('settle-1')
  await waitFor(
    'every accepted bet settled',
    () =>
      accepted.every(
        (r) =>
          api3.ledger.foldFor('carol').bet('carol', (r as { betId: string }).betId)?.status === 'settled',
      ),
    20_000,
  )
  // Policy 'any': each bet stands at the price offered at its stamp, not the 1.100 the bettor sent.
  const offered =
    api3.replicas.replica('match-1')?.game.markets.get(ids.winner)?.transitions[0]?.prices.away ?? 0
  t.equal(
    api3.ledger.foldFor('carol').totals().payoutsCents,
    5 * offered,
    'five winners paid at the offered odds, once each',
  )
  t.ok(api3.ledger.foldFor('carol').invariantHolds(), 'the ledger sums')
})
