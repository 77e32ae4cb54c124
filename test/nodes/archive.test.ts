// Proves archiving on a real 3-server cluster: once a match has ended and its grace period passed,
// the trader archives it; every node drops the game's replica (the API node's replica object is
// garbage-collected), the game's updates below the marker leave the stream and its snapshot leaves
// the bucket, while the archive stays. A bet on it is refused GAME_ARCHIVED; a settlement node
// started only afterwards still pays its open bet from the archive, and its lookups answer, also on
// an API node started afterwards. A restarted trader does not run the match again.

import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { jetstreamManager } from '@nats-io/jetstream'
import { Kvm } from '@nats-io/kv'
import t from 'tap'
import type { ApiNode } from '../../nodes/api/api-node.ts'
import { names } from '../../nodes/fabric/streams.ts'
import { createManualFeed } from '../../nodes/trader/replay-feed.ts'
import { marketIds } from '../../nodes/trader/trader.ts'
import type { LookupReply } from '../../protocol/bets.ts'
import { lookupSubject } from '../../protocol/subjects.ts'
import { deposit, placeBet, STACK_GAME, STACK_REGION, startNodeStack } from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const ARCHIVE_AFTER_MS = 300

t.test('a finished match is archived, and its bets still answer', async (t) => {
  const stack = await startNodeStack(t, { traderArchiveAfterMs: ARCHIVE_AFTER_MS, snapshotIntervalMs: 200 })
  const { client, shards } = stack
  const feed = stack.trader.feed
  const api = stack.apis[0] as ApiNode
  await deposit(stack, 'alice', 10_000)

  feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  feed.emit({ type: 'point-start', point: 1, server: 'home' })
  const { winner } = marketIds(1)
  await waitFor('the market open on the API node', () => {
    const market = api.replicas.replica(STACK_GAME)?.game.markets.get(winner)
    return market?.transitions.some((transition) => transition.status === 'open') === true
  })
  const odds = api.replicas.replica(STACK_GAME)?.game.markets.get(winner)?.transitions[0]?.prices.home
  const bet = {
    betId: 'bet-alice-0001',
    userId: 'alice',
    gameId: STACK_GAME,
    marketId: winner,
    selectionId: 'home',
    stakeCents: 1_000,
    odds,
    policy: 'exact',
  }
  t.match(await placeBet(client, bet), { ok: true, verdict: { accepted: true } }, 'the bet stands')
  const lookup = async () => {
    const request = { userId: 'alice', betIds: [bet.betId] }
    const reply = await client.request(lookupSubject('alice', shards), JSON.stringify(request), {
      timeout: 5_000,
    })
    const answer = reply.json<LookupReply>()
    if (!answer.ok) throw new Error(`lookup refused: ${answer.error.message}`)
    return answer.data.statuses
  }
  await waitFor('its verdict final', async () => (await lookup()).some((s) => s.status === 'final'))
  const liveReplica = new WeakRef(api.replicas.replica(STACK_GAME) as object)

  feed.emit({ type: 'serve', point: 1, second: false })
  feed.emit({ type: 'point-end', point: 1, winner: 'home', ace: false })
  feed.emit({ type: 'match-end' })
  await waitFor('archived by the trader', () => stack.trader.replicas.isArchived(STACK_GAME), 15_000)
  await waitFor('archived on the API node', () => api.replicas.isArchived(STACK_GAME))
  t.notOk(api.replicas.games().includes(STACK_GAME), 'the API node holds no live replica of it')
  t.equal(api.replicas.replica(STACK_GAME), undefined, 'nor any other, until something asks for it')
  await waitFor('the replica garbage-collected', () => {
    gc()
    return liveReplica.deref() === undefined
  })

  const jsm = await jetstreamManager(client)
  const stream = names.fabricStream(STACK_REGION)
  const subject = names.gameSubject(STACK_REGION, STACK_GAME)
  const onSubject = async () =>
    (await jsm.streams.info(stream, { subjects_filter: subject })).state.subjects?.[subject] ?? 0
  await waitFor('the game purged from the stream but for its marker', async () => (await onSubject()) === 1)
  const last = (await jsm.streams.info(stream)).state.last_seq
  const kept = await jsm.streams.getMessage(stream, { last_by_subj: subject })
  t.equal(kept?.seq, last, 'the marker is the message left')
  t.equal(await jsm.streams.getMessage(stream, { seq: 1 }), null, 'the genesis is gone')

  const bucket = await new Kvm(client).open(names.snapshotBucket(STACK_REGION))
  await waitFor(
    'the snapshot deleted',
    async () => (await bucket.get(names.snapshotKey(STACK_GAME)))?.operation !== 'PUT',
  )
  t.equal((await bucket.get(names.archiveKey(STACK_GAME)))?.operation, 'PUT', 'the archive kept')

  t.match(
    await placeBet(client, { ...bet, betId: 'bet-alice-0002' }),
    { ok: false, error: { code: 'GAME_ARCHIVED' } },
    'a bet on the archived match is refused',
  )
  t.match(
    await placeBet(client, bet),
    { ok: true, verdict: { accepted: true } },
    'a retry still gets its answer',
  )

  // No settlement node ran until now: the bet is still open, and one started now pays it from the archive.
  t.equal(api.ledger.foldFor('alice').bet('alice', bet.betId)?.status, 'open', 'unsettled so far')
  const settlement = await stack.startSettlement('settle-1')
  await waitFor(
    'paid from the archive',
    () => api.ledger.foldFor('alice').bet('alice', bet.betId)?.status === 'settled',
  )
  t.ok(settlement.replicas.isArchived(STACK_GAME), 'the settlement node knows it is archived')
  t.notOk(settlement.replicas.games().includes(STACK_GAME), 'and holds no live replica of it')
  const statuses = await lookup()
  t.same(
    statuses.map((s) => s.status),
    ['final', 'settled'],
    'the lookup answers both statuses',
  )
  t.match(statuses[0], { verdict: { accepted: true } })

  await api.close()
  const later = await stack.startApi('api-2')
  await waitFor('the new API node caught up', () => later.replicas.caughtUp())
  t.ok(later.replicas.isArchived(STACK_GAME), 'an API node started afterwards knows it is archived')
  t.notOk(later.replicas.games().includes(STACK_GAME), 'and never held it')
  await waitFor('its ledger caught up', () => later.ledger.caughtUp())
  t.same(
    (await lookup()).map((s) => s.status),
    ['final', 'settled'],
    'and answers its lookups',
  )

  await stack.trader.close()
  await t.rejects(
    stack.startTrader({ node: 'trader-1', feed: createManualFeed() }),
    /archived/,
    'a restarted trader does not run the match again',
  )
})
