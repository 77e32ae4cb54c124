// Proves that a gateway whose own server goes silent (cut off, or paused) still gets its bets
// answered: a placement its API node has not answered within the hedge delay is sent again, same
// id, through the gateway's second connection to another server, and the relay reports the first
// connection stalled once it has answered nothing for STALL_SILENT_MS while the second answered.
// Here the first connection goes through a relay that stops forwarding (test/helpers/tcp-hold.ts),
// to a real cluster with a real API node; with only one API node, the hedge goes to that same
// node. Each bet is answered once, provisional, and stored once.

import { connect } from '@nats-io/transport-node'
import pino from 'pino'
import t from 'tap'
import { watchApiNodes } from '../../gateway/api-directory.ts'
import { createBetRelay } from '../../gateway/bets.ts'
import { DEFAULT_GATEWAY_LIMITS } from '../../gateway/limits.ts'
import { joinLedger } from '../../nodes/fabric/regions.ts'
import { STALL_SILENT_MS } from '../../nodes/fabric/stall-detector.ts'
import { userRouting } from '../../protocol/subjects.ts'
import {
  depositThrough,
  placeFrame,
  STACK_REGION as REGION,
  startNodeStack,
  watchAnswers,
} from '../helpers/node-stack.ts'
import { startTcpHold } from '../helpers/tcp-hold.ts'
import { waitFor } from '../helpers/wait.ts'

const log = pino({ level: 'silent' })
const SHARDS = 2
const HEDGE_AFTER_MS = 200
const USERS = ['second-ann', 'second-ben']
const STAKE_CENTS = 100

t.test('a gateway whose server goes silent places through its second connection', async (t) => {
  const { cluster, trader, client } = await startNodeStack(t, { shards: SHARDS })
  const audit = await joinLedger({ nc: await cluster.connect(), region: REGION, shards: SHARDS, log })
  t.teardown(() => audit.close())
  const [first, second] = cluster.servers.map((url) => new URL(url))
  const hold = await startTcpHold({ host: first?.hostname as string, port: Number(first?.port) })
  t.teardown(() => hold.close())
  const gateway = await connect({ servers: hold.url, noAsyncTraces: true, maxReconnectAttempts: 0 })
  t.teardown(() => gateway.close())
  const other = await connect({ servers: second?.href, noAsyncTraces: true })
  t.teardown(() => other.close())
  const directory = watchApiNodes(gateway, { hedgeAfterMsMax: HEDGE_AFTER_MS, log })
  t.teardown(() => directory.close())

  trader.feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  trader.feed.emit({ type: 'point-start', point: 1, server: 'home' })
  await waitFor('the API node announces itself', () => directory.size() === 1, 30_000)
  await depositThrough(t, client, USERS, SHARDS, 100_000)

  let stalled = 0
  const relay = createBetRelay(
    gateway,
    { ...DEFAULT_GATEWAY_LIMITS, hedgeAfterMs: HEDGE_AFTER_MS },
    log,
    userRouting(SHARDS),
    {},
    directory,
    { nc: other, onStalled: () => stalled++ },
  )
  t.teardown(() => relay.close())
  const answersOf = watchAnswers(t, relay, USERS)
  const place = (userId: string, betId: string) => relay.place(userId, placeFrame(betId, STAKE_CENTS))

  place('second-ann', 'before-hold')
  await waitFor('the bet before the hold answered', () => answersOf('before-hold').length === 1)
  t.equal(relay.stats().stalls, 0, 'a server that answers is not stalled')

  hold.hold()
  const bets: { userId: string; betId: string }[] = []
  // Placements keep coming, one every 100 ms, for longer than the silence that marks a stall.
  const waveMs = STALL_SILENT_MS + 700
  const heldAt = Date.now()
  for (let i = 0; Date.now() - heldAt < waveMs; i++) {
    const bet = { userId: USERS[i % USERS.length] as string, betId: `held-bet-${i}` }
    bets.push(bet)
    place(bet.userId, bet.betId)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  await waitFor(
    'every bet placed while held answered',
    () => bets.every(({ betId }) => answersOf(betId).length > 0),
    10_000,
  )
  for (const { betId } of bets)
    t.match(answersOf(betId), [{ type: 'bet', status: 'provisional' }], `${betId}: one answer, provisional`)
  t.equal(stalled, 1, 'the silent server was reported once')
  t.equal(relay.stats().stalls, 1)
  t.ok(relay.stats().hedged >= bets.length, `each bet was hedged (${relay.stats().hedged})`)
  for (const { userId, betId } of bets)
    t.match(audit.foldFor(userId).bet(userId, betId), { status: 'open' }, `${betId} stored`)
  const stakes = USERS.map((userId) => audit.foldFor(userId).exposure(userId).openStakesCents)
  t.equal(
    stakes.reduce((sum, each) => sum + each, 0),
    (bets.length + 1) * STAKE_CENTS,
    'every stake debited once',
  )
})
