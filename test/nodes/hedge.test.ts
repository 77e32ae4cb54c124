// Proves placement hedging against real API node processes: with one of two SIGSTOPped, every bet
// a gateway's relay places is answered by the other, provisional, once; bets placed right after
// the pause wait one hedge delay, and those placed once the paused node stopped announcing go to
// the other at once. After SIGCONT the paused node handles the placements it held, late: each bet
// is still stored once, its stake debited once, and no second answer reaches the user.

import type { ChildProcess } from 'node:child_process'
import pino from 'pino'
import t from 'tap'
import { watchApiNodes } from '../../gateway/api-directory.ts'
import { createBetRelay } from '../../gateway/bets.ts'
import { DEFAULT_GATEWAY_LIMITS } from '../../gateway/limits.ts'
import { joinLedger } from '../../nodes/fabric/regions.ts'
import { ANNOUNCED_FOR_MS } from '../../protocol/api-nodes.ts'
import { userRouting } from '../../protocol/subjects.ts'
import { spawnNodeProcess, stopProcesses } from '../../scripts/node-process.ts'
import {
  depositThrough,
  placeFrame,
  STACK_REGION as REGION,
  startNodeStack,
  watchAnswers,
} from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

const log = pino({ level: 'silent' })
const SHARDS = 2
const HEDGE_AFTER_MS = 200
const USERS = ['hedge-ann', 'hedge-ben', 'hedge-cat', 'hedge-dan']
const STAKE_CENTS = 100

t.test('a SIGSTOPped API node: its bets are answered by the other node, each stored once', async (t) => {
  const { cluster, trader, client } = await startNodeStack(t, { shards: SHARDS, apiNodes: [] })
  const children: ChildProcess[] = []
  const audit = await joinLedger({ nc: await cluster.connect(), region: REGION, shards: SHARDS, log })
  const gateway = await cluster.connect()
  const directory = watchApiNodes(gateway, { hedgeAfterMsMax: HEDGE_AFTER_MS, log })
  t.teardown(async () => {
    for (const child of children) child.kill('SIGCONT')
    await stopProcesses(children)
    directory.close()
    await gateway.close()
    await audit.close()
  })
  for (const id of ['api-h1', 'api-h2'])
    children.push(
      spawnNodeProcess({
        main: 'nodes/api/main.ts',
        nodeId: id,
        region: REGION,
        shards: SHARDS,
        env: { FABRIC_NATS_SERVERS: cluster.servers.join(',') },
      }),
    )
  trader.feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  trader.feed.emit({ type: 'point-start', point: 1, server: 'home' })
  await waitFor('both API nodes announce themselves ready', () => directory.size() === 2, 30_000)
  await depositThrough(t, client, USERS, SHARDS, 100_000)

  const relay = createBetRelay(
    gateway,
    { ...DEFAULT_GATEWAY_LIMITS, hedgeAfterMs: HEDGE_AFTER_MS },
    log,
    userRouting(SHARDS),
    {},
    directory,
  )
  t.teardown(() => relay.close())
  const answerOf = watchAnswers(t, relay, USERS)
  const placeWave = async (wave: string) => {
    const bets = USERS.flatMap((userId) => [0, 1].map((i) => ({ userId, betId: `${userId}-${wave}-${i}` })))
    const sentAt = Date.now()
    const answeredAt = new Map<string, number>()
    for (const { userId, betId } of bets) relay.place(userId, placeFrame(betId, STAKE_CENTS))
    await waitFor(
      `every bet of wave ${wave} answered`,
      () => {
        for (const { betId } of bets)
          if (!answeredAt.has(betId) && answerOf(betId).length > 0) answeredAt.set(betId, Date.now() - sentAt)
        return answeredAt.size === bets.length
      },
      10_000,
    )
    return { bets, slowestMs: Math.max(...answeredAt.values()) }
  }

  const [paused] = children as [ChildProcess]
  paused.kill('SIGSTOP')
  const hedgedBefore = relay.stats().hedged
  const first = await placeWave('paused')
  t.ok(relay.stats().hedged > hedgedBefore, `${relay.stats().hedged - hedgedBefore} placements were hedged`)
  t.comment(`bets placed right after the pause: the slowest answered in ${first.slowestMs} ms`)
  await waitFor('the paused node is forgotten', () => directory.size() === 1, 2 * ANNOUNCED_FOR_MS + 1_000)
  const hedgedThen = relay.stats().hedged
  const second = await placeWave('forgotten')
  t.equal(relay.stats().hedged, hedgedThen, 'once forgotten, no bet goes to the paused node')
  t.comment(`bets placed once it was forgotten: the slowest answered in ${second.slowestMs} ms`)
  const bets = [...first.bets, ...second.bets]
  for (const { betId } of bets)
    t.match(answerOf(betId), [{ type: 'bet', status: 'provisional' }], `${betId}: one answer, provisional`)

  paused.kill('SIGCONT')
  // The woken node handles what it held: its appends find the bets stored already.
  await waitFor('the woken node announces itself again', () => directory.size() === 2, 10_000)
  await new Promise((resolve) => setTimeout(resolve, 1_000))
  for (const { userId, betId } of bets) {
    t.match(audit.foldFor(userId).bet(userId, betId), { status: 'open' }, `${betId} stands`)
    t.match(answerOf(betId), [{ status: 'provisional' }], `${betId}: still one answer`)
  }
  for (const userId of USERS)
    t.equal(
      audit.foldFor(userId).exposure(userId).openStakesCents,
      4 * STAKE_CENTS,
      `${userId}: four stakes debited, each once`,
    )
})
