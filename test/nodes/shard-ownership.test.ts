// Proves that an API node serves the ledger shards it is given and no others, on a real 3-server
// cluster with a region of 4 shards. A node serving shards 0-1 opens consumers on LEDGER_EU_0 and
// LEDGER_EU_1 alone (while it is the only node reading the ledger, LEDGER_EU_2 and LEDGER_EU_3 have
// no consumer at all), reads messages of shards 0 and 1 only (its read counter), follows and
// reports those shards alone, and refuses a request for a shard-3 user sent to a shard-1 subject
// with WRONG_SHARD, storing nothing; a second node serving shards 2-3 books the other users. And two
// API nodes that both serve shard 1, racing one user's bets past the balance, fold the shard alike:
// exactly the covered bets stand, and both hold the same balances and the same fold.

import { jetstreamManager } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import t from 'tap'
import type { ApiNode } from '../../nodes/api/api-node.ts'
import { ShardNotServedError } from '../../nodes/fabric/ledger-sync.ts'
import { describeNode } from '../../nodes/fabric/node-state.ts'
import { names } from '../../nodes/fabric/streams.ts'
import { marketIds } from '../../nodes/trader/point-markets.ts'
import type { PlaceBetReply } from '../../protocol/bets.ts'
import { shardOf } from '../../protocol/shards.ts'
import {
  DEPOSIT_BASE,
  depositSubject,
  LOOKUP_BASE,
  PLACE_BASE,
  shardSubject,
} from '../../protocol/subjects.ts'
import {
  betOn,
  ledgerPosition,
  placeBet,
  STACK_GAME,
  STACK_REGION,
  startNodeStack,
} from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

const SHARDS = 4
const DEPOSIT_CENTS = 5_000

/** The first user id `<tag>-<n>` on `shard`. */
function userOn(shard: number, tag: string): string {
  for (let i = 0; ; i++) if (shardOf(`${tag}-${i}`, SHARDS) === shard) return `${tag}-${i}`
}

async function request(nc: NatsConnection, subject: string, body: unknown): Promise<PlaceBetReply> {
  return (await nc.request(subject, JSON.stringify(body), { timeout: 10_000 })).json<PlaceBetReply>()
}

/** Credit a user on the subject of the user's shard; resolves with the reply. */
function credit(nc: NatsConnection, userId: string, id = `deposit-${userId}`) {
  return request(nc, depositSubject(userId, SHARDS), { id, userId, amountCents: DEPOSIT_CENTS })
}

/** Start the match and open point 1 on the stack's trader; resolves once every node holds the market. */
async function openPointOn(trader: { feed: { emit(event: unknown): void } }, nodes: readonly ApiNode[]) {
  trader.feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  trader.feed.emit({ type: 'point-start', point: 1, server: 'home' })
  const marketId = marketIds(1).winner
  await waitFor('point 1 open on every API node', () =>
    nodes.every((node) => node.replicas.replica(STACK_GAME)?.game.markets.get(marketId) !== undefined),
  )
  return marketId
}

t.test('an API node serving shards 0-1 of 4 reads, follows and answers for those alone', async (t) => {
  const stack = await startNodeStack(t, { shards: SHARDS, apiNodes: [] })
  const { client } = stack
  const jsm = await jetstreamManager(client)
  const consumersOn = async (shard: number) => {
    const found: string[] = []
    for await (const info of jsm.consumers.list(names.ledgerStream(STACK_REGION, shard)))
      found.push(info.name)
    return found.length
  }
  const reads = new Map<number, number>()
  const low = await stack.startApi('api-01', {
    served: [0, 1],
    onLedgerRead: (shard) => reads.set(shard, (reads.get(shard) ?? 0) + 1),
  })

  // The trader reads no ledger, so every consumer on a ledger stream now is api-01's.
  await waitFor(
    'api-01 follows shards 0 and 1',
    async () => (await consumersOn(0)) > 0 && (await consumersOn(1)) > 0,
  )
  t.same(
    [await consumersOn(2), await consumersOn(3)],
    [0, 0],
    'no consumer on LEDGER_EU_2 or LEDGER_EU_3: it never opened one on a shard it does not serve',
  )
  t.same(low.ledger.served, [0, 1], 'it serves shards 0 and 1')
  t.same([...low.ledger.followers.keys()], [0, 1], 'and follows those two streams alone')
  t.same(
    Object.keys(describeNode(low).streams).sort(),
    ['fabric', 'ledger-0', 'ledger-1'],
    '/debug/state reports the fabric and its two shard streams',
  )

  const high = await stack.startApi('api-23', { served: [2, 3] })
  const users = [0, 1, 2, 3].map((shard) => userOn(shard, 'user'))
  for (const userId of users)
    t.match(await credit(client, userId), { ok: true, balanceCents: DEPOSIT_CENTS }, `${userId} is credited`)
  const marketId = await openPointOn(stack.trader, [low, high])
  for (const userId of users)
    t.match(
      await placeBet(client, betOn(marketId, { betId: `bet-${userId}`, userId }), SHARDS),
      { ok: true, verdict: { accepted: true } },
      `${userId} (shard ${shardOf(userId, SHARDS)}) bets`,
    )

  const lastSeqs = await Promise.all(
    [0, 1, 2, 3].map(
      async (shard) => (await jsm.streams.info(names.ledgerStream(STACK_REGION, shard))).state.last_seq,
    ),
  )
  t.ok(
    lastSeqs.every((seq) => seq >= 2),
    `every shard's stream holds a deposit and a bet (last sequences ${lastSeqs.join(', ')})`,
  )
  await waitFor(
    'api-01 folded its shards',
    () => low.ledger.lastSeq(0) === lastSeqs[0] && low.ledger.lastSeq(1) === lastSeqs[1],
  )
  t.same(
    [...reads.entries()].sort(([a], [b]) => a - b),
    [
      [0, lastSeqs[0]],
      [1, lastSeqs[1]],
    ],
    'api-01 read each message of shards 0 and 1 once, and nothing of shards 2 and 3',
  )
  for (const [shard, userId] of users.entries()) {
    const serving = shard < 2 ? low : high
    const other = shard < 2 ? high : low
    t.equal(
      serving.ledger.foldFor(userId).balance(userId),
      DEPOSIT_CENTS - 1_000,
      `${userId}'s shard holds the bet`,
    )
    t.throws(
      () => other.ledger.foldFor(userId),
      ShardNotServedError,
      "the other node holds no fold of the user's shard",
    )
  }
  t.throws(() => low.ledger.fold(3), ShardNotServedError)
  t.equal(low.ledger.serves(3), false)

  // A shard-3 user's requests sent to shard 1's subjects: api-01 takes them, and refuses them.
  const [, , , onThree] = users as [string, string, string, string]
  t.equal(shardOf(onThree, SHARDS), 3)
  t.match(
    await request(
      client,
      shardSubject(PLACE_BASE, 1),
      betOn(marketId, { betId: 'bet-misrouted', userId: onThree }),
    ),
    { ok: false, error: { code: 'WRONG_SHARD' } },
    'a bet of a shard-3 user on bets.place.1 is refused WRONG_SHARD',
  )
  t.match(
    await request(client, shardSubject(DEPOSIT_BASE, 1), {
      id: 'deposit-misrouted',
      userId: onThree,
      amountCents: DEPOSIT_CENTS,
    }),
    { ok: false, error: { code: 'WRONG_SHARD' } },
    'and so is a deposit on admin.deposit.1',
  )
  t.match(
    await request(client, shardSubject(LOOKUP_BASE, 1), { userId: onThree, betIds: [`bet-${onThree}`] }),
    { ok: false, error: { code: 'WRONG_SHARD' } },
    'and a status lookup on bets.lookup.1',
  )
  const shard3 = (await jsm.streams.info(names.ledgerStream(STACK_REGION, 3))).state.last_seq
  t.equal(shard3, lastSeqs[3], 'nothing was appended to shard 3')
  t.equal(high.ledger.foldFor(onThree).bet(onThree, 'bet-misrouted'), null, 'no misrouted bet stands')
  t.equal(high.ledger.foldFor(onThree).balance(onThree), DEPOSIT_CENTS - 1_000, 'no misrouted deposit landed')
})

t.test('two API nodes serving shard 1 both fold it, and agree', async (t) => {
  const stack = await startNodeStack(t, { shards: SHARDS, apiNodes: [] })
  const { client } = stack
  const a = await stack.startApi('api-a', { served: [0, 1] })
  const b = await stack.startApi('api-b', { served: [1, 2, 3] })
  const racer = userOn(1, 'racer')
  const others = [userOn(1, 'other'), userOn(1, 'third')]
  for (const userId of [racer, ...others]) t.match(await credit(client, userId), { ok: true })
  const marketId = await openPointOn(stack.trader, [a, b])

  // Each node places half of the racer's bets itself, all at once: 8 stakes of 1,000 for 5,000.
  const encoder = new TextEncoder()
  const bet = (i: number, userId = racer) =>
    encoder.encode(
      JSON.stringify(betOn(marketId, { betId: `race-${userId}-${String(i).padStart(4, '0')}`, userId })),
    )
  const replies = await Promise.all(
    Array.from({ length: 8 }, (_, i) => ((i % 2 === 0 ? a : b) as ApiNode).service.place(bet(i))),
  )
  t.equal(replies.filter((reply) => reply.ok).length, 5, 'exactly the covered stakes stand')
  t.equal(
    replies.filter((reply) => !reply.ok && reply.error.code === 'INSUFFICIENT_FUNDS').length,
    3,
    'the others are refused by the fold',
  )
  t.match(await a.service.place(bet(0, others[0])), { ok: true }, `${others[0]} bets through api-a`)
  t.match(await b.service.place(bet(0, others[1])), { ok: true }, `${others[1]} bets through api-b`)

  await waitFor('both folded shard 1 to the same place', () => a.ledger.lastSeq(1) === b.ledger.lastSeq(1))
  t.ok(a.ledger.lastSeq(1) > 0)
  for (const userId of [racer, ...others])
    t.equal(
      a.ledger.foldFor(userId).balance(userId),
      b.ledger.foldFor(userId).balance(userId),
      `${userId}'s balance agrees`,
    )
  t.equal(a.ledger.foldFor(racer).balance(racer), 0, "the racer's balance is spent exactly")
  t.equal(
    a.ledger.fold(1).stateHash(),
    b.ledger.fold(1).stateHash(),
    'and the two folds of shard 1 are the same',
  )
  t.not(ledgerPosition(a.ledger), ledgerPosition(b.ledger), 'though each node serves other shards besides')
})
