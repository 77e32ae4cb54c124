// Proves, on a real 3-server cluster, that one trader process runs 20 games and one standby process
// covers them all: the API node hears two beats per round (one per writer process), not one per game,
// and finalizes bets in every game from them; the same bet terms on two games are judged apart (one
// game killed, the other open); and when one game is released, the standby fences the active
// writer in that game alone and takes it over, while the other 19 run on under the active process.
// And an API node restarted beside 200 games restores every one from the snapshots, reading no
// update they hold.

import pino from 'pino'
import t from 'tap'
import { fenceOf, writerOf, yjsBackend } from '../../crdt/index.ts'
import type { ApiNode } from '../../nodes/api/api-node.ts'
import { createManualFeed, type ManualFeed } from '../../nodes/trader/replay-feed.ts'
import { marketIds } from '../../nodes/trader/trader.ts'
import { startTraderProcess, type TraderProcess } from '../../nodes/trader/trader-node.ts'
import { killSubject, names, releaseSubject, statusSubject } from '../../protocol/subjects.ts'
import { deposit, placeBet, STACK_REGION, startNodeStack } from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

const GAMES = Array.from({ length: 20 }, (_, i) => `match-${i + 1}`)
const WRITERS = ['trader-1', 'trader-2']
const TAKEOVER_AFTER_MS = 1_000
const HEARTBEAT_MS = 20

t.test(
  'one trader process runs 20 games; one of them is handed to the standby while the others run on',
  async (t) => {
    const stack = await startNodeStack(t, { traders: [], apiNodes: ['api-1'] })
    const api = stack.apis[0] as ApiNode
    await deposit(stack, 'alice', 100_000)

    const start = async (node: string, role: 'active' | 'standby') => {
      const feeds = new Map(GAMES.map((gameId) => [gameId, createManualFeed()]))
      const process = await startTraderProcess({
        nc: await stack.cluster.connect(),
        region: STACK_REGION,
        node,
        games: GAMES.map((gameId) => ({ gameId, feed: feeds.get(gameId) as ManualFeed })),
        writers: WRITERS,
        backend: yjsBackend,
        log: pino({ level: 'silent' }).child({ node }),
        snapshotIntervalMs: 0,
        limits: { heartbeatMs: HEARTBEAT_MS, takeoverAfterMs: TAKEOVER_AFTER_MS },
        role,
      })
      t.teardown(() => process.close())
      return { process, feeds }
    }
    const active = await start('trader-1', 'active')
    const standby = await start('trader-2', 'standby')
    const game = (gameId: string) => api.replicas.replica(gameId)?.game
    const point1 = marketIds(1).winner
    for (const feed of active.feeds.values()) {
      feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
      feed.emit({ type: 'point-start', point: 1, server: 'home' })
    }
    await waitFor('point 1 open in every game on the API node', () =>
      GAMES.every((gameId) => game(gameId)?.markets.get(point1) !== undefined),
    )

    // Beats: one message per writer process and round, whatever the number of games.
    const beats: number[] = []
    const counting = stack.client.subscribe(names.beatSubject(STACK_REGION), {
      callback: () => {
        beats.push(Date.now())
      },
    })
    const windowMs = 2_000
    await new Promise((resolve) => setTimeout(resolve, windowMs))
    counting.unsubscribe()
    const rounds = windowMs / HEARTBEAT_MS
    t.ok(
      beats.length <= 2 * rounds * 1.1 && beats.length >= rounds / 2,
      `${beats.length} beats in ${windowMs} ms from 2 writer processes of ${GAMES.length} games (one per game would be ${GAMES.length * 2 * rounds})`,
    )

    // The same terms on two games: match-2 killed, match-3 open.
    const statuses: { betId: string; status: string }[] = []
    stack.client.subscribe(statusSubject('alice'), {
      callback: (_e, m) => {
        statuses.push(m.json())
      },
    })
    stack.client.publish(killSubject(STACK_REGION), JSON.stringify({ gameId: 'match-2' }))
    await waitFor(
      'match-2 suspended',
      () => game('match-2')?.markets.get(point1)?.transitions.at(-1)?.status === 'suspended',
    )
    const terms = (gameId: string, betId: string) => ({
      betId,
      userId: 'alice',
      gameId,
      marketId: point1,
      selectionId: 'home',
      stakeCents: 1_000,
      odds: 1_001,
      policy: 'any',
    })
    t.match(
      await placeBet(stack.client, terms('match-2', 'same-terms-2')),
      { ok: true, verdict: { accepted: false, reason: 'MARKET_NOT_OPEN' } },
      'match-2 is killed: refused',
    )
    t.match(
      await placeBet(stack.client, terms('match-3', 'same-terms-3')),
      { ok: true, verdict: { accepted: true } },
      'the same terms on match-3: accepted',
    )
    await waitFor('both final, from the beats', () =>
      ['same-terms-2', 'same-terms-3'].every((betId) =>
        statuses.some((s) => s.betId === betId && s.status === 'final'),
      ),
    )

    // Hand match-7 over.
    stack.client.publish(releaseSubject(STACK_REGION), JSON.stringify({ gameId: 'match-7' }))
    await waitFor(
      'trader-2 took match-7 over',
      () => standby.process.traders.get('match-7')?.role() === 'active',
      15_000,
    )
    await waitFor('the API node holds the fence', () => fenceOf(game('match-7')!, 'trader-1') !== null)
    const fence = fenceOf(game('match-7')!, 'trader-1')
    t.equal(fence === null ? null : writerOf(fence), 'trader-2', 'trader-1 is fenced in match-7, by trader-2')
    t.equal(active.process.traders.get('match-7')?.role(), 'fenced', 'and stood down there')
    const others = GAMES.filter((gameId) => gameId !== 'match-7')
    t.ok(
      others.every((gameId) => active.process.traders.get(gameId)?.role() === 'active'),
      'trader-1 still runs the 19 others',
    )
    t.ok(
      others.every(
        (gameId) =>
          standby.process.traders.get(gameId)?.role() === 'standby' &&
          fenceOf(game(gameId)!, 'trader-1') === null,
      ),
      'where trader-2 stands by and nobody is fenced',
    )

    // Both processes keep running their games: a new point in match-7 (trader-2) and in match-8 (trader-1).
    const point2 = marketIds(2).winner
    standby.feeds.get('match-7')?.emit({ type: 'point-start', point: 2, server: 'away' })
    active.feeds.get('match-8')?.emit({ type: 'point-start', point: 2, server: 'away' })
    await waitFor('point 2 open in match-7 and match-8', () =>
      ['match-7', 'match-8'].every(
        (gameId) => game(gameId)?.markets.get(point2)?.transitions.at(-1)?.status === 'open',
      ),
    )
    for (const gameId of ['match-7', 'match-8']) {
      const reply = await placeBet(stack.client, { ...terms(gameId, `after-${gameId}`), marketId: point2 })
      t.match(reply, { ok: true, verdict: { accepted: true } }, `a bet on ${gameId} after the handover`)
    }
    await waitFor('both final', () =>
      ['after-match-7', 'after-match-8'].every((betId) =>
        statuses.some((s) => s.betId === betId && s.status === 'final'),
      ),
    )
    t.equal((active.process as TraderProcess).beats.failed, 0, 'no beat failed')
  },
)

t.test('an API node restarted beside 200 games restores them from the snapshots', async (t) => {
  const games = Array.from({ length: 200 }, (_, i) => `game-${i + 1}`)
  const stack = await startNodeStack(t, { traders: [], apiNodes: ['api-1'] })
  const feeds = new Map(games.map((gameId) => [gameId, createManualFeed()]))
  const trader = await startTraderProcess({
    nc: await stack.cluster.connect(),
    region: STACK_REGION,
    node: 'trader-1',
    games: games.map((gameId) => ({ gameId, feed: feeds.get(gameId) as ManualFeed })),
    writers: ['trader-1'],
    backend: yjsBackend,
    log: pino({ level: 'silent' }),
    snapshotIntervalMs: 0,
    // No stale-feed suspension during the test: nothing is written after the snapshots.
    limits: { staleFeedMs: 3_600_000 },
  })
  t.teardown(() => trader.close())
  for (const feed of feeds.values()) {
    feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
    feed.emit({ type: 'point-start', point: 1, server: 'home' })
  }
  const point1 = marketIds(1).winner
  const first = stack.apis[0] as ApiNode
  await waitFor('every game open on api-1', () =>
    games.every((gameId) => first.replicas.replica(gameId)?.game.markets.has(point1)),
  )
  await waitFor(
    'the trader has read back every update',
    () => trader.replicas.lastSeq() >= first.replicas.lastSeq(),
  )
  const seq = await trader.replicas.writeSnapshots()
  t.ok(seq > 0, `snapshots of the ${games.length} games written at sequence ${seq}`)

  await first.close()
  const startedMs = Date.now()
  const restarted = await stack.startApi('api-1')
  await waitFor('caught up', () => restarted.replicas.caughtUp())
  const restoreMs = Date.now() - startedMs
  t.equal(restarted.replicas.games().length, games.length, 'it holds every game')
  t.ok(
    games.every(
      (gameId) =>
        restarted.replicas.replica(gameId)?.stateHash() === trader.replicas.replica(gameId)?.stateHash(),
    ),
    'each as the trader holds it',
  )
  // How long it took is a benchmark figure (bench/games.ts), not a test's to assert.
  t.comment(`restored and caught up ${restoreMs} ms after it started`)
  const read = restarted.replicas.follower.lastSeq()
  t.equal(read, 0, 'it read no update: the snapshots held them all, and nothing was written since')
})
