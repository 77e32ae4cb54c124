// Proves that a user's open-stake limit and a market's liability limit are exact on a real 3-server
// cluster, however bets race. Eight bets of 1,000.00 sent at once against a limit of 5,000.00,
// spread over two API nodes, once were all accepted (each node checked its own fold before
// appending); a bet asking odds of 1000.00 under "any" was taken at the real price but counted at
// the absurd one, and blocked the market for everyone. Now the fold enforces the limits each bet
// carries, and liability counts the price offered at the bet's stamp.

import t from 'tap'
import { ODDS_MAX } from '../../crdt/limits.ts'
import type { ApiNode } from '../../nodes/api/api-node.ts'
import { DEFAULT_BET_LIMITS } from '../../nodes/api/bet-limits.ts'
import { queryExposure, type SettlementNode } from '../../nodes/settlement/settlement-node.ts'
import { betOn, deposit, ledgerPosition, openPoint, placeBet, startNodeStack } from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

const STAKE_CENTS = DEFAULT_BET_LIMITS.stakeCentsMax
const LIMIT_CENTS = DEFAULT_BET_LIMITS.userOpenStakeCentsMax
const RACERS = 8

t.test('bets racing past the open-stake limit on two API nodes: exactly the limit is taken', async (t) => {
  t.equal(LIMIT_CENTS / STAKE_CENTS, 5, 'five stakes fit the limit')
  const stack = await startNodeStack(t, { shards: 2, apiNodes: ['api-1', 'api-2'] })
  const { apis, cluster } = stack
  const second = apis[1] as ApiNode
  await deposit(stack, 'rich', 10 * LIMIT_CENTS)
  const marketId = await openPoint(stack)
  const clients = [await cluster.connect(), await cluster.connect()]
  const replies = await Promise.all(
    Array.from({ length: RACERS }, async (_, i) => {
      const request = betOn(marketId, {
        betId: `race-rich-${String(i).padStart(4, '0')}`,
        userId: 'rich',
        stakeCents: STAKE_CENTS,
      })
      return placeBet(clients[i % 2] as (typeof clients)[number], request, stack.shards)
    }),
  )
  const accepted = replies.filter((reply) => reply.ok)
  const refused = replies.filter((reply) => !reply.ok && reply.error.code === 'USER_STAKE_LIMIT')
  t.equal(accepted.length, 5, 'exactly five are booked')
  t.equal(refused.length, RACERS - 5, 'the rest are refused USER_STAKE_LIMIT')
  await waitFor('both nodes folded every bet', () =>
    apis.every((api) => ledgerPosition(api.ledger) === ledgerPosition(second.ledger)),
  )
  for (const api of apis)
    t.equal(
      api.ledger.foldFor('rich').exposure('rich').openStakesCents,
      LIMIT_CENTS,
      'open stakes are the limit',
    )
})

t.test(
  'bets racing past a market’s liability limit: exactly the limit is taken, at the offered odds',
  async (t) => {
    // One shard, so its allowance is the whole limit of 2,000.00. An attacker asks odds of 1000.00
    // under "any": the bet stands at the market's price and counts at it, so the others still get
    // in. Then eight users race one stake each over two API nodes, against room for exactly five.
    const limitCents = 200_000
    const stack = await startNodeStack(t, {
      shards: 1,
      apiNodes: ['api-1', 'api-2'],
      settlementNodes: ['settle-1'],
      apiLimits: { marketLiabilityCentsMax: limitCents },
    })
    const { apis, cluster } = stack
    const first = apis[0] as ApiNode
    const settlement = stack.settlements[0] as SettlementNode
    const users = Array.from({ length: RACERS }, (_, i) => `racer-${i}`)
    for (const userId of ['mallory', ...users]) await deposit(stack, userId, LIMIT_CENTS)
    const marketId = await openPoint(stack)
    const bet = (userId: string, stakeCents: number, odds: number) =>
      betOn(marketId, { betId: `liability-${userId}`, userId, stakeCents, odds })
    const [client, other] = [await cluster.connect(), await cluster.connect()]

    const attack = await placeBet(client, bet('mallory', 10_000, ODDS_MAX), stack.shards)
    t.match(attack, { ok: true, verdict: { accepted: true } }, 'taken, at the market’s price')
    const price = (attack.ok && attack.verdict.odds) as number
    t.ok(price > 1_000 && price < 10_000, `the market's price is ${price}`)
    const risk = (stakeCents: number) => Math.floor((stakeCents * price) / 1000) - stakeCents
    await waitFor('both nodes folded it', () =>
      apis.every((api) => ledgerPosition(api.ledger) === ledgerPosition(first.ledger)),
    )
    const held = first.ledger.foldFor('mallory').marketLiability('match-1', marketId)
    t.equal(held, risk(10_000), `counted at ${price}, not at ${ODDS_MAX}`)

    const room = limitCents - held
    const stakeCents = Math.ceil(((room / 5.5) * 1000) / (price - 1000))
    t.ok(5 * risk(stakeCents) <= room && 6 * risk(stakeCents) > room, 'room for exactly five racers')
    const replies = await Promise.all(
      users.map((userId, i) =>
        placeBet(i % 2 === 0 ? client : other, bet(userId, stakeCents, price), stack.shards),
      ),
    )
    const accepted = replies.filter((reply) => reply.ok)
    const refused = replies.filter((reply) => !reply.ok && reply.error.code === 'MARKET_LIABILITY_LIMIT')
    t.equal(accepted.length, 5, 'exactly five are booked')
    t.equal(refused.length, RACERS - 5, 'the rest are refused MARKET_LIABILITY_LIMIT')
    await waitFor('both nodes folded every bet', () =>
      apis.every((api) => ledgerPosition(api.ledger) === ledgerPosition(first.ledger)),
    )
    for (const api of apis)
      t.equal(
        api.ledger.foldFor('mallory').marketLiability('match-1', marketId),
        held + 5 * risk(stakeCents),
        'the market’s liability is within the limit on every node',
      )
    const exposure = (gameId: string) =>
      queryExposure(client, { gameId, marketId, shards: stack.shards, timeoutMs: 5_000 })
    await waitFor(
      'the settlement node folded every bet',
      () => ledgerPosition(settlement.ledger) === ledgerPosition(first.ledger),
    )
    t.match(
      await exposure('match-1'),
      { gameId: 'match-1', marketId, openBets: 6, liabilityCents: held + 5 * risk(stakeCents) },
      'the exposure query reports the market’s liability as the fold counts it',
    )
    t.match(await exposure('match-2'), { openBets: 0, liabilityCents: 0 }, 'per game')
    const elsewhere = await placeBet(
      client,
      {
        ...bet('racer-0', stakeCents, price),
        betId: 'liability-next-game',
        gameId: 'match-2',
      },
      stack.shards,
    )
    t.notMatch(
      elsewhere,
      { error: { code: 'MARKET_LIABILITY_LIMIT' } },
      'the same market id in another game is not full',
    )
  },
)
