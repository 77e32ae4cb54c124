// Proves the market liability escrow on a real 3-server cluster, with two API nodes that serve one
// ledger shard each: a bet past its shard's share of the market's limit is refused
// MARKET_ALLOWANCE_MOVING while the shard takes allowance from the other one (a grant on the giving
// shard's stream, a receipt on the taking shard's), and is booked on retry; once no shard has any
// to spare, bets are refused MARKET_LIABILITY_LIMIT. Racing bettors on both shards, retrying as told,
// book more than one shard's share but never more than the limit, and the giving node never reads
// the shard it writes the receipt to. A transfer asked again under its id moves nothing twice.

import t, { type Test } from 'tap'
import type { ApiNode } from '../../nodes/api/api-node.ts'
import type { PlaceBetReply } from '../../protocol/bets.ts'
import { shardOf } from '../../protocol/shards.ts'
import {
  betOn,
  type NodeStack,
  openPoint,
  placeBet,
  STACK_GAME,
  startNodeStack,
} from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

const SHARDS = 2
const LIMIT_CENTS = 100_000
const SHARE_CENTS = LIMIT_CENTS / SHARDS

/** Users whose entries live on `shard`. */
function usersOn(shard: number, count: number, prefix: string): string[] {
  const users: string[] = []
  for (let i = 0; users.length < count; i++)
    if (shardOf(`${prefix}-${i}`, SHARDS) === shard) users.push(`${prefix}-${i}`)
  return users
}

interface Escrow {
  readonly stack: NodeStack
  /** api-0 serves shard 0, api-1 shard 1. */
  readonly nodes: readonly [ApiNode, ApiNode]
  readonly reads: [number[], number[]]
  readonly marketId: string
}

async function startEscrow(t: Test): Promise<Escrow> {
  const stack = await startNodeStack(t, {
    shards: SHARDS,
    apiNodes: [],
    apiLimits: { marketLiabilityCentsMax: LIMIT_CENTS },
  })
  const reads: [number[], number[]] = [
    [0, 0],
    [0, 0],
  ]
  const nodes = [] as unknown as [ApiNode, ApiNode]
  for (const shard of [0, 1])
    nodes.push(
      await stack.startApi(`api-${shard}`, {
        served: [shard],
        onLedgerRead: (read) => {
          ;(reads[shard] as number[])[read] = ((reads[shard] as number[])[read] ?? 0) + 1
        },
      }),
    )
  const marketId = await openPoint(stack)
  await waitFor('both API nodes hold the market', () =>
    nodes.every((api) => api.replicas.replica(STACK_GAME)?.game.markets.get(marketId)?.transitions.length),
  )
  return { stack, nodes, reads, marketId }
}

async function fund(escrow: Escrow, users: readonly string[]): Promise<void> {
  for (const userId of users) {
    const node = escrow.nodes[shardOf(userId, SHARDS)] as ApiNode
    await node.ledger.append({ type: 'deposit', id: `deposit-${userId}`, userId, amountCents: 10_000_000 })
  }
  await waitFor('the deposits are folded', () =>
    users.every((userId) => {
      const node = escrow.nodes[shardOf(userId, SHARDS)] as ApiNode
      return node.ledger.foldFor(userId).balance(userId) > 0
    }),
  )
}

const liability = (escrow: Escrow, shard: number) =>
  (escrow.nodes[shard] as ApiNode).ledger.fold(shard).marketLiability(STACK_GAME, escrow.marketId)
const moved = (escrow: Escrow, shard: number) =>
  (escrow.nodes[shard] as ApiNode).ledger.fold(shard).allowanceMoved(STACK_GAME, escrow.marketId)

t.test('a shard past its share takes allowance from the other, and then the limit holds', async (t) => {
  const escrow = await startEscrow(t)
  const { stack, marketId } = escrow
  const [alice] = usersOn(0, 1, 'alice') as [string]
  const [bob] = usersOn(1, 1, 'bob') as [string]
  await fund(escrow, [alice, bob])
  const client = stack.client
  const place = (userId: string, betId: string, stakeCents: number) =>
    placeBet(client, betOn(marketId, { betId, userId, stakeCents }), SHARDS)

  const probe = await placeBet(
    client,
    betOn(marketId, { betId: 'probe-bet', userId: alice, stakeCents: 100 }),
    SHARDS,
  )
  t.match(probe, { ok: true, verdict: { accepted: true } })
  const price = (probe.ok && probe.verdict.odds) as number
  const risk = (stakeCents: number) => Math.floor((stakeCents * price) / 1000) - stakeCents
  // Three fifths of a share: one fits a shard's share, two need allowance from the other shard.
  const stake = Math.ceil((SHARE_CENTS * 0.6 * 1000) / (price - 1000))

  t.match(
    await place(alice, 'alice-bet-1', stake),
    { ok: true, verdict: { accepted: true } },
    'within the share',
  )
  t.match(
    await place(alice, 'alice-bet-2', stake),
    { ok: false, error: { code: 'MARKET_ALLOWANCE_MOVING' } },
    'past the share: refused while allowance moves',
  )
  await waitFor('allowance moved to shard 0', () => moved(escrow, 0) > 0)
  t.equal(moved(escrow, 1), -moved(escrow, 0), 'shard 1 gave what shard 0 received')
  t.match(
    await place(alice, 'alice-bet-2', stake),
    { ok: true, verdict: { accepted: true } },
    'the retry is booked',
  )
  const held0 = liability(escrow, 0)
  t.equal(held0, risk(100) + 2 * risk(stake))
  t.ok(held0 > SHARE_CENTS && held0 <= SHARE_CENTS + moved(escrow, 0), 'past its share, within its allowance')

  // Bob, on shard 1, which gave part of its share away, bets until the market is full: shard 1
  // takes back what shard 0 has left, and then no shard has any to spare.
  const answers: string[] = []
  let reply: PlaceBetReply | null = null
  for (let i = 0; answers.length < 40; ) {
    reply = await place(bob, `bob-bet-${i}`, stake)
    const code = reply.ok ? 'booked' : reply.error.code
    answers.push(code)
    if (code === 'booked') i += 1
    else if (code === 'MARKET_ALLOWANCE_MOVING') await new Promise((resolve) => setTimeout(resolve, 50))
    else break
  }
  t.comment(answers.join(' '))
  t.match(
    reply,
    { ok: false, error: { code: 'MARKET_LIABILITY_LIMIT' } },
    'in the end: MARKET_LIABILITY_LIMIT',
  )
  t.ok(answers.includes('MARKET_ALLOWANCE_MOVING'), 'after shard 1 asked shard 0 again')
  const unused = LIMIT_CENTS - liability(escrow, 0) - liability(escrow, 1)
  t.ok(unused < risk(stake), `what is left, ${unused}, is less than one more bet`)
  t.ok(liability(escrow, 0) + liability(escrow, 1) <= LIMIT_CENTS, 'the market is within its limit')
  t.equal(escrow.reads[0][1], 0, 'the node of shard 0 never read shard 1')
  t.equal(escrow.reads[1][0], 0, 'the node of shard 1 never read shard 0, though it wrote a receipt there')
})

t.test('bettors racing on both shards book more than a share, never more than the limit', async (t) => {
  const escrow = await startEscrow(t)
  const { stack, marketId } = escrow
  const users = [...usersOn(0, 6, 'race-a'), ...usersOn(1, 6, 'race-b')]
  await fund(escrow, users)
  const clients = [stack.client, await stack.cluster.connect()]
  const probe = await placeBet(
    clients[0] as NonNullable<(typeof clients)[0]>,
    betOn(marketId, { betId: 'probe-bet', userId: users[0] as string, stakeCents: 100 }),
    SHARDS,
  )
  const price = (probe.ok && probe.verdict.odds) as number
  const risk = (stakeCents: number) => Math.floor((stakeCents * price) / 1000) - stakeCents
  // Each bet is a tenth of a share: the market holds at most twenty, the shards ten each at first.
  const stake = Math.ceil(((SHARE_CENTS / 10) * 1000) / (price - 1000))
  let booked = 0
  const codes = new Map<string, number>()
  await Promise.all(
    users.map(async (userId, u) => {
      const client = clients[u % 2] as NonNullable<(typeof clients)[0]>
      // Shard 0's users bet six times as much as shard 1's, so shard 0 must take allowance.
      const bets = shardOf(userId, SHARDS) === 0 ? 6 : 1
      for (let i = 0; i < bets; i++) {
        for (let attempt = 0; attempt < 40; attempt++) {
          const reply = await placeBet(
            client,
            betOn(marketId, { betId: `${userId}-${i}`, userId, stakeCents: stake }),
            SHARDS,
          )
          const code = reply.ok ? 'booked' : reply.error.code
          codes.set(code, (codes.get(code) ?? 0) + 1)
          if (reply.ok) booked += 1
          if (code !== 'MARKET_ALLOWANCE_MOVING') break
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
      }
    }),
  )
  t.comment(`answers: ${JSON.stringify(Object.fromEntries(codes))}`)
  const held = [liability(escrow, 0), liability(escrow, 1)]
  t.ok((held[0] as number) > SHARE_CENTS, `shard 0 holds ${held[0]}, past its share`)
  t.ok(
    (held[0] as number) + (held[1] as number) <= LIMIT_CENTS,
    `the market holds ${held[0]} + ${held[1]}, within ${LIMIT_CENTS}`,
  )
  // What is left unused is less than one bet on each shard: the limit stopped the rest, not the split.
  const room = Math.floor((LIMIT_CENTS - risk(100)) / risk(stake))
  t.ok(booked >= room - 1, `${booked} of the 42 bets were booked, with room for ${room}`)
  for (const shard of [0, 1])
    t.ok(
      liability(escrow, shard) <= SHARE_CENTS + moved(escrow, shard),
      `shard ${shard} within its allowance`,
    )
})

t.test('a transfer asked again, same id, moves nothing twice', async (t) => {
  // The asking node lost the answer (or the receipt's append failed) and asks again: the giving
  // node finds its applied grant and writes the receipt again, which the asking shard counts once.
  const escrow = await startEscrow(t)
  const { marketId } = escrow
  const giver = escrow.nodes[1] as ApiNode
  const request = { transferId: 'transfer-again', gameId: STACK_GAME, marketId, toShard: 0, wantCents: 7_000 }
  const first = await giver.service.allowances.give(1, request)
  t.match(first, { ok: true, grantedCents: 7_000 })
  await waitFor('shard 0 holds the receipt', () => moved(escrow, 0) === 7_000)
  const again = await giver.service.allowances.give(1, { ...request, wantCents: 9_000 })
  t.match(again, { ok: true, grantedCents: 7_000 }, 'the first grant’s answer, whatever is asked now')
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(moved(escrow, 0), 7_000, 'received once')
  t.equal(moved(escrow, 1), -7_000, 'given once')
  t.match(
    await giver.service.allowances.give(1, { ...request, transferId: 'transfer-to-self', toShard: 1 }),
    { ok: false, error: { code: 'BAD_REQUEST' } },
    'a shard cannot give to itself',
  )
  t.match(
    await giver.service.allowances.give(0, { ...request, transferId: 'transfer-not-served' }),
    { ok: false, error: { code: 'WRONG_SHARD' } },
    'nor a node give from a shard it does not serve',
  )
})
