// Proves that a restarted trader resumes its match instead of replaying it, on a real 3-server
// cluster. The trader runs point 1 to its result and opens point 2, then stops and starts again
// with nothing in memory and a clock 3 s behind (within the drift bound). It must: wait for its
// replica, ask its feed for the match after point 2 (no match start, so the game clock is not set
// back to 0), close and void point 2's markets that nobody watched, claim no result again, and
// stamp every heartbeat after the watermark it published before the restart. A bet on the resulted
// market is still refused. The old trader started its feed from point 1 with a clock at 0.

import t from 'tap'
import {
  AFTER_ALL_STAMPS,
  clockAt,
  currentClock,
  encodeStamp,
  resultOf,
  transitionAt,
  watermarkOf,
} from '../../crdt/index.ts'
import type { ApiNode } from '../../nodes/api/api-node.ts'
import type { FeedAdapter, FeedEvent, FeedResume } from '../../nodes/trader/feed.ts'
import { marketIds } from '../../nodes/trader/trader.ts'
import { deposit, STACK_GAME as GAME, placeBet, startNodeStack } from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

/** A feed driven by the test that records where each start asked it to resume. */
function recordingFeed() {
  let sink: ((event: FeedEvent) => void) | null = null
  const starts: (FeedResume | undefined)[] = []
  const feed: FeedAdapter & { emit(event: FeedEvent): void; starts: typeof starts } = {
    name: 'recording',
    starts,
    start(emit, resume) {
      sink = emit
      starts.push(resume)
    },
    stop() {
      sink = null
    },
    emit(event) {
      if (sink === null) throw new Error('the feed is not started')
      sink(event)
    },
  }
  return feed
}

t.test('a restarted trader resumes after its last point with its clock past its watermark', async (t) => {
  const stack = await startNodeStack(t, { shards: 2, traders: [] })
  const api = stack.apis[0] as ApiNode
  const startTrader = (feed: ReturnType<typeof recordingFeed>, skewMs: number) =>
    stack.startTrader({ node: 'trader-1', feed, now: () => Date.now() + skewMs })
  const firstFeed = recordingFeed()
  const first = await startTrader(firstFeed, 0)
  t.same(firstFeed.starts, [undefined], 'a new game starts from the beginning')
  firstFeed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  firstFeed.emit({ type: 'point-start', point: 1, server: 'home' })
  firstFeed.emit({ type: 'serve', point: 1, second: false })
  firstFeed.emit({ type: 'point-end', point: 1, winner: 'home', ace: false })
  firstFeed.emit({ type: 'point-start', point: 2, server: 'away' })
  const p1 = marketIds(1)
  const p2 = marketIds(2)
  const game = () => api.replicas.replica(GAME)?.game
  await waitFor('point 2 open on the API node', () => {
    const g = game()
    return g !== undefined && transitionAt(g, p2.winner, AFTER_ALL_STAMPS)?.status === 'open'
  })
  await waitFor('a watermark past point 2', () => {
    const watermark = game() && watermarkOf(game()!, 'trader-1')
    return watermark != null && watermark > (game()!.markets.get(p2.winner)?.transitions.at(-1)?.stamp ?? '~')
  })
  await first.close()
  const watermarkBefore = watermarkOf(game()!, 'trader-1') as string
  const clockBefore = currentClock(game()!)

  const secondFeed = recordingFeed()
  const second = await startTrader(secondFeed, -3_000)
  t.same(secondFeed.starts, [{ afterPoint: 2 }], 'the feed resumes after the last point it opened')
  t.ok(
    encodeStamp(second.hlc.last()) > watermarkBefore,
    'the clock, 3 s behind, starts past the watermark published before the restart',
  )
  t.equal(second.trader.stats.marketsVoidedOnRejoin, 2, "point 2's markets are voided")
  await waitFor('point 2 closed on the API node', () => {
    const g = game()!
    return transitionAt(g, p2.winner, AFTER_ALL_STAMPS)?.status === 'closed'
  })
  await waitFor('a new watermark', () => (watermarkOf(game()!, 'trader-1') ?? '') > watermarkBefore)
  const g = game()!
  t.equal(transitionAt(g, p1.winner, AFTER_ALL_STAMPS)?.status, 'closed', 'the resulted market stays closed')
  t.equal(g.markets.get(p1.winner)?.results.length, 1, 'its result is claimed once')
  t.match(resultOf(g, p1.winner), { state: 'agreed', winners: ['home'] })
  t.same(currentClock(g), clockBefore, 'the game clock was not set again')
  t.not(clockAt(g, AFTER_ALL_STAMPS)?.clockMs, 0)

  await deposit(stack, 'bob', 10_000)
  const onKnownWinner = await placeBet(
    stack.client,
    {
      betId: 'bet-bob-known-1',
      userId: 'bob',
      gameId: GAME,
      marketId: p1.winner,
      selectionId: 'home',
      stakeCents: 1_000,
      odds: 1_001,
      policy: 'any',
    },
    stack.shards,
  )
  t.match(onKnownWinner, { ok: true, verdict: { accepted: false, reason: 'MARKET_NOT_OPEN' } })
})
