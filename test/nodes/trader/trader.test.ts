// Proves the trader's market lifecycle on a real Yjs replica with an in-memory publisher: a point
// opens both markets with margin-bearing prices, the serve suspends them, a fault reopens the
// winner market at second-serve prices but freezes the ace market (its price would jump past the
// band), the point end results and closes them, a correction voids a window, a stale feed and the
// kill switch suspend open markets, heartbeats only start once the game exists, and a failed
// publish is retried with the same message id.

import pino from 'pino'
import t from 'tap'
import {
  AFTER_ALL_STAMPS,
  createHlc,
  type Heartbeat,
  resultOf,
  statusAt,
  transitionAt,
  voidAt,
  yjsBackend,
} from '../../../crdt/index.ts'
import { createTrader, marketIds, type TraderPublisher } from '../../../nodes/trader/trader.ts'
import { stampAt } from '../../helpers/game-writer.ts'

function setup(failFirst = 0) {
  let nowMs = 1_700_000_000_000
  const published: string[] = []
  const heartbeats: Heartbeat[] = []
  let failures = failFirst
  const publisher: TraderPublisher = {
    async publishUpdate(_update, msgId) {
      if (failures-- > 0) throw new Error('JetStream unavailable')
      published.push(msgId)
    },
    publishHeartbeat: (heartbeat) => heartbeats.push(heartbeat),
  }
  const replica = yjsBackend.create()
  const trader = createTrader({
    gameId: 'match-1',
    writers: ['trader-1'],
    replica,
    hlc: createHlc({ node: 'trader-1', clock: () => nowMs }),
    publisher,
    log: pino({ level: 'silent' }),
    now: () => nowMs,
  })
  return { trader, replica, published, heartbeats, advance: (ms: number) => (nowMs += ms), at: () => nowMs }
}

const latest = (replica: ReturnType<typeof setup>['replica'], id: string) =>
  transitionAt(replica.game, id, AFTER_ALL_STAMPS)

t.test('a point from open to closed, with a fault and a correction', async (t) => {
  const { trader, replica, heartbeats, advance, at } = setup()
  trader.tick()
  t.equal(heartbeats.length, 0, 'no heartbeat before the game exists')
  trader.handle({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  trader.handle({ type: 'point-start', point: 1, server: 'home' })
  const ids = marketIds(1)
  t.equal(latest(replica, ids.winner)?.status, 'open')
  const prices = latest(replica, ids.winner)?.prices ?? {}
  t.ok((prices.home ?? 0) < (prices.away ?? 0), 'the server is the favourite')
  t.ok(1 / ((prices.home ?? 1) / 1000) + 1 / ((prices.away ?? 1) / 1000) > 1, 'prices carry a margin')
  advance(4_000)
  trader.handle({ type: 'serve', point: 1, second: false })
  t.equal(latest(replica, ids.winner)?.status, 'suspended')
  t.equal(latest(replica, ids.ace)?.status, 'suspended')
  advance(400)
  trader.handle({ type: 'fault', point: 1 })
  t.equal(latest(replica, ids.winner)?.status, 'open', 'reopened for the second serve')
  t.equal(latest(replica, ids.ace)?.reason, 'price jump: frozen', 'the ace price would jump past the band')
  t.equal(trader.stats.frozen, 1)
  advance(1_000)
  trader.handle({ type: 'serve', point: 1, second: true })
  advance(1_500)
  trader.handle({ type: 'point-end', point: 1, winner: 'away', ace: false })
  t.equal(statusAt(replica.game, ids.winner, AFTER_ALL_STAMPS), 'closed')
  t.match(resultOf(replica.game, ids.winner), { state: 'agreed', winners: ['away'] })
  t.match(resultOf(replica.game, ids.ace), { state: 'agreed', winners: ['no'] })
  trader.handle({ type: 'correction', point: 1, fromMs: at() - 2_000, toMs: at() - 1_000 })
  t.ok(voidAt(replica.game, ids.winner, stampAt(at() - 1_500)), 'a bet stamped in the window is void')
  trader.tick()
  t.equal(heartbeats.length, 1, 'heartbeats once the game exists')
  await trader.flush()
})

t.test('a feed that says it is alive keeps the markets open through a long wait for the serve', async (t) => {
  const { trader, replica, advance } = setup()
  trader.handle({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  trader.handle({ type: 'point-start', point: 1, server: 'home' })
  for (let waited = 0; waited < 20_000; waited += 2_000) {
    advance(2_000)
    trader.handle({ type: 'alive' })
    trader.tick()
  }
  t.equal(latest(replica, marketIds(1).winner)?.status, 'open', 'open 20 s on, past the 8 s guard')
  t.equal(trader.stats.staleSuspensions, 0)
  advance(9_000)
  trader.tick()
  t.equal(latest(replica, marketIds(1).winner)?.reason, 'stale feed', 'and suspended once it falls silent')
})

t.test('a stale feed and the kill switch suspend open markets', async (t) => {
  const { trader, replica, advance } = setup()
  trader.handle({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  trader.handle({ type: 'point-start', point: 1, server: 'home' })
  advance(9_000)
  trader.tick()
  t.equal(latest(replica, marketIds(1).winner)?.reason, 'stale feed')
  t.equal(trader.stats.staleSuspensions, 1)
  trader.handle({ type: 'point-start', point: 2, server: 'home' })
  trader.kill('integrity alert')
  t.match(latest(replica, marketIds(2).winner), { status: 'suspended', reason: /kill switch/ })
  trader.handle({ type: 'point-start', point: 3, server: 'home' })
  t.equal(latest(replica, marketIds(3).winner)?.status, 'suspended', 'no market opens while killed')
  trader.resume()
  trader.handle({ type: 'point-start', point: 4, server: 'home' })
  t.equal(latest(replica, marketIds(4).winner)?.status, 'open')
})

t.test('a failed publish is retried with the same message id', async (t) => {
  const { trader, published } = setup(2)
  trader.handle({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  await trader.flush()
  t.equal(trader.stats.publishRetries, 2)
  t.equal(published.length, 2, 'genesis and clock, each published once in the end')
  t.equal(new Set(published).size, 2)
})

t.test('two feeds on one game merge; disagreeing results put the market under review', async (t) => {
  let nowMs = 1_700_000_000_000
  const log = pino({ level: 'silent' })
  const replicas = [yjsBackend.create(), yjsBackend.create()]
  const updates: Uint8Array[][] = [[], []]
  const traders = ['feed-a', 'feed-b'].map((node, i) =>
    createTrader({
      gameId: 'match-1',
      writers: ['feed-a', 'feed-b'],
      replica: replicas[i]!,
      hlc: createHlc({ node, clock: () => nowMs }),
      publisher: {
        publishUpdate: async (update) => void updates[i]!.push(update),
        publishHeartbeat: () => {},
      },
      log,
      now: () => nowMs,
    }),
  )
  const exchange = async () => {
    for (const trader of traders) await trader.flush()
    for (const update of updates[0]!.splice(0)) replicas[1]!.apply(update)
    for (const update of updates[1]!.splice(0)) replicas[0]!.apply(update)
  }
  traders[0]!.handle({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  await exchange()
  for (const trader of traders) trader.handle({ type: 'point-start', point: 1, server: 'home' })
  nowMs += 4_000
  traders[0]!.handle({ type: 'point-end', point: 1, winner: 'home', ace: false })
  traders[1]!.handle({ type: 'point-end', point: 1, winner: 'away', ace: false })
  await exchange()
  t.equal(replicas[0]!.stateHash(), replicas[1]!.stateHash(), 'the two feeds’ replicas converged')
  t.match(
    resultOf(replicas[0]!.game, marketIds(1).winner),
    { state: 'review' },
    'the feeds disagree: under review, not paid',
  )
  t.match(
    resultOf(replicas[0]!.game, marketIds(1).ace),
    { state: 'agreed', winners: ['no'] },
    'they agree on the ace market',
  )
})
