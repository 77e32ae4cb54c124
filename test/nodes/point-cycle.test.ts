// Proves a full point cycle across real processes' code on a real 3-server cluster: a trader
// (driven by a manual feed) opens a point, a user with a deposit places a bet through the NATS
// service and gets a provisional acceptance, then a final one on the status subject; after the
// serve a late bet is rejected MARKET_NOT_OPEN; a retry with the same bet id is stored once, a
// changed body is refused, malformed and hostile requests get coded errors, and a stake the
// balance cannot cover is refused by the ledger fold. Two settlement nodes race to settle: the
// winner is paid once, the late bet refunded once, and the SQLite history shows every status.

import t from 'tap'
import type { ApiNode } from '../../nodes/api/api-node.ts'
import { describeNode } from '../../nodes/fabric/node-state.ts'
import type { BetRow } from '../../nodes/settlement/projection.ts'
import { marketIds } from '../../nodes/trader/trader.ts'
import type { FinalStatus, LookupReply, PlaceBetReply } from '../../protocol/bets.ts'
import { betKeyOf } from '../../protocol/ids.ts'
import {
  balanceSubject,
  depositSubject,
  historySubject,
  lookupSubject,
  placeSubject,
  statusSubject,
} from '../../protocol/subjects.ts'
import { deposit, placeBet, startNodeStack } from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

t.test('a point cycle', async (t) => {
  const stack = await startNodeStack(t, { settlementNodes: ['settle-1', 'settle-2'] })
  const { client, settlements, shards } = stack
  const feed = stack.trader.feed
  const api = stack.apis[0] as ApiNode
  const statuses: (
    | FinalStatus
    | { betId: string; status: 'settled'; outcome: string; payoutCents: number }
  )[] = []
  client.subscribe(statusSubject('alice'), {
    callback: (_error, message) => {
      statuses.push(message.json<FinalStatus>())
    },
  })
  await deposit(stack, 'alice', 10_000)

  feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  feed.emit({ type: 'point-start', point: 1, server: 'home' })
  const ids = marketIds(1)
  await waitFor('market open on the api node', () => {
    const replica = api.replicas.replica('match-1')
    return replica?.game.markets.get(ids.winner)?.transitions.length === 1
  })
  const offered = api.replicas.replica('match-1')!.game.markets.get(ids.winner)!.transitions[0]!.prices.home!
  const bet = {
    betId: 'bet-alice-0001',
    userId: 'alice',
    gameId: 'match-1',
    marketId: ids.winner,
    selectionId: 'home',
    stakeCents: 1_000,
    odds: offered,
    policy: 'exact',
  }
  const first = await placeBet(client, bet)
  t.match(first, {
    ok: true,
    status: 'provisional',
    verdict: { accepted: true, odds: offered },
    balanceCents: 9_000,
  })
  await waitFor('final verdict published', () =>
    statuses.some((s) => s.betId === 'bet-alice-0001' && s.status === 'final'),
  )
  t.match(
    statuses.find((s) => s.betId === 'bet-alice-0001' && s.status === 'final'),
    { status: 'final', verdict: { accepted: true } },
  )

  await waitFor(
    'the settlement nodes announce it too (in case the API node died)',
    () => statuses.filter((s) => s.betId === 'bet-alice-0001' && s.status === 'final').length >= 3,
  )

  const retry = await placeBet(client, bet)
  t.match(
    retry,
    { ok: true, betId: 'bet-alice-0001', stamp: (first as { stamp: string }).stamp, balanceCents: 9_000 },
    'a retry is stored once',
  )
  t.match(await placeBet(client, { ...bet, stakeCents: 2_000 }), {
    ok: false,
    error: { code: 'BET_ID_REUSED' },
  })

  feed.emit({ type: 'serve', point: 1, second: false })
  await waitFor('suspension reached the api node', () => {
    const transitions = api.replicas.replica('match-1')?.game.markets.get(ids.winner)?.transitions ?? []
    return transitions.at(-1)?.status === 'suspended'
  })
  const late = await placeBet(client, { ...bet, betId: 'bet-alice-0002' })
  t.match(
    late,
    { ok: true, verdict: { accepted: false, reason: 'MARKET_NOT_OPEN' } },
    'a late bet is rejected',
  )
  await waitFor('late bet final', () =>
    statuses.some((s) => s.betId === 'bet-alice-0002' && s.status === 'final'),
  )
  t.match(
    statuses.find((s) => s.betId === 'bet-alice-0002' && s.status === 'final'),
    { verdict: { accepted: false, reason: 'MARKET_NOT_OPEN' } },
  )

  t.match(await placeBet(client, { ...bet, betId: 'bet-alice-0003', stakeCents: 9_500 }), {
    ok: false,
    error: { code: 'INSUFFICIENT_FUNDS' },
  })
  t.equal(
    api.ledger.foldFor('alice').totals().stakesCents,
    2_000,
    'two stakes debited, the uncovered one not',
  )

  const bad: [unknown, string][] = [
    ['not json', 'BAD_REQUEST'],
    [{ ...bet, betId: 'x' }, 'BAD_REQUEST'],
    [{ ...bet, betId: 'bet-alice-0004', stakeCents: -5 }, 'BAD_REQUEST'],
    [{ ...bet, betId: 'bet-alice-0004', __proto__: { admin: true }, extra: 1 }, 'BAD_REQUEST'],
    [{ ...bet, betId: 'bet-alice-0004', stakeCents: 5 }, 'STAKE_LIMIT'],
    [{ ...bet, betId: 'bet-alice-0004', gameId: 'nope' }, 'UNKNOWN_GAME'],
  ]
  // Alice's shard's subject: what her client sends to, whatever the body says.
  const placeAlice = placeSubject('alice', shards)
  for (const [request, code] of bad) {
    const raw = typeof request === 'string' ? request : JSON.stringify(request)
    const reply = (await client.request(placeAlice, raw, { timeout: 5_000 })).json<PlaceBetReply>()
    t.match(reply, { ok: false, error: { code } }, `${raw.slice(0, 50)} -> ${code}`)
  }
  const huge = (
    await client.request(placeAlice, 'x'.repeat(10_000), { timeout: 5_000 })
  ).json<PlaceBetReply>()
  t.match(huge, { ok: false, error: { code: 'BAD_REQUEST' } }, 'an oversized request')

  feed.emit({ type: 'point-end', point: 1, winner: 'home', ace: false })
  const payout = Math.floor((1_000 * offered) / 1_000)
  await waitFor(
    'winner paid and late bet refunded',
    () => api.ledger.foldFor('alice').balance('alice') === 8_000 + payout + 1_000,
  )
  // Two settlement nodes race, and either may publish a bet's settled status first (or both):
  // wait for each bet's, not for a count.
  await waitFor('settled statuses published', () =>
    ['bet-alice-0001', 'bet-alice-0002'].every((betId) =>
      statuses.some((s) => s.betId === betId && s.status === 'settled'),
    ),
  )
  t.equal(api.ledger.foldFor('alice').bet('alice', 'bet-alice-0001')?.status, 'settled')
  t.match(
    statuses.find((s) => s.betId === 'bet-alice-0001' && s.status === 'settled'),
    { outcome: 'won', payoutCents: payout },
  )
  t.match(
    statuses.find((s) => s.betId === 'bet-alice-0002' && s.status === 'settled'),
    { outcome: 'rejected', payoutCents: 1_000 },
  )
  const totals = api.ledger.foldFor('alice').totals()
  t.equal(totals.payoutsCents, payout + 1_000, 'each bet paid once, though two settlement nodes raced')
  await waitFor('projection caught up', () =>
    settlements.every((s) =>
      s.projection.history('alice').every((row) => row.funds === 'refused' || row.settledAtMs !== null),
    ),
  )
  const history = (await client.request(historySubject('alice', shards), '', { timeout: 5_000 })).json<{
    ok: true
    data: BetRow[]
  }>()
  t.match(
    history.data.find((row) => row.betId === 'bet-alice-0001'),
    { verdict: 'accepted', outcome: 'won', payoutCents: payout, funds: 'debited' },
  )
  t.match(
    history.data.find((row) => row.betId === 'bet-alice-0003'),
    { funds: 'refused' },
  )
  const balance = (await client.request(balanceSubject('alice', shards), '', { timeout: 5_000 })).json<{
    ok: true
    data: { balanceCents: number }
  }>()
  t.equal(
    balance.data.balanceCents,
    api.ledger.foldFor('alice').balance('alice'),
    'balance query reads the fold',
  )
  // What each node holds, as the chaos checker reads it: the same everywhere.
  const [apiState, ...settlementStates] = [
    describeNode(api),
    ...settlements.map((node) => describeNode(node)),
  ]
  for (const other of settlementStates) {
    t.same(other.ledger, apiState?.ledger, 'settlement and API folds hold the same money and bets')
    t.same(other.replicas, apiState?.replicas, 'and the same replica, with the same verdict on every bet')
  }
  t.ok(
    Object.values(apiState?.ledger?.settlementsPerBet ?? {}).every((count) => count === 1),
    'one settlement applied per settled bet',
  )
  t.match(apiState?.replicas['match-1']?.verdicts[betKeyOf('alice', 'bet-alice-0001')], {
    accepted: true,
    final: true,
  })
  t.match(apiState?.ledger?.bets[betKeyOf('alice', 'bet-alice-0001')], { userId: 'alice', status: 'settled' })

  // Status recovery: what a client that lost the status events learns by asking.
  const lookup = async (request: { userId: string; betIds?: unknown }) =>
    (
      await client.request(lookupSubject(request.userId, shards), JSON.stringify(request), { timeout: 5_000 })
    ).json<LookupReply>()
  const betIds = ['bet-alice-0001', 'bet-alice-0002', 'bet-alice-0003', 'bet-nobody-0001']
  const recovered = await lookup({ userId: 'alice', betIds })
  if (!recovered.ok) throw new Error(`lookup refused: ${recovered.error.message}`)
  const announced = (betId: string, status: string) =>
    statuses.find((s) => s.betId === betId && s.status === status)
  const { finalAtMs: _at, ...finalAnnounced } = announced('bet-alice-0001', 'final') as FinalStatus
  t.match(
    recovered.data.statuses.map((s) => [s.betId, s.status]),
    [
      ['bet-alice-0001', 'final'],
      ['bet-alice-0001', 'settled'],
      ['bet-alice-0002', 'final'],
      ['bet-alice-0002', 'settled'],
    ],
    'final and settled statuses of the stored bets; nothing for the refused or the unknown one',
  )
  t.match(recovered.data.statuses[0], { ...finalAnnounced, balanceCents: totals.balancesCents })
  t.match(recovered.data.statuses[1], announced('bet-alice-0001', 'settled') ?? {})
  t.same(
    await lookup({ userId: 'bob', betIds: ['bet-alice-0001'] }),
    { ok: true, data: { statuses: [] } },
    "another user's bet is not told",
  )
  for (const bad of [
    { userId: 'alice' },
    { userId: 'alice', betIds: [] },
    { userId: 'alice', betIds: ['x'] },
  ])
    t.match(await lookup(bad), { ok: false, error: { code: 'BAD_REQUEST' } }, JSON.stringify(bad))
  for (const bad of ['null', '[1]', 'x'.repeat(5_000)]) {
    const reply = (await client.request(depositSubject('alice', shards), bad, { timeout: 5_000 })).json()
    t.match(reply, { ok: false, error: { code: 'BAD_REQUEST' } }, `deposit ${bad.slice(0, 20)} is refused`)
  }
})
