// Proves that every bettor of the chaos workload (scripts/chaos/workload.ts) places bets when the
// gateway is slow to accept its socket: a stand-in gateway holds each WebSocket handshake for
// several of a bettor's pauses, then offers one open market, and each bettor must place on it. A
// bettor whose first turn came before its socket was open used to place nothing at all.

import type { AddressInfo } from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'
import t from 'tap'
import { WebSocketServer } from 'ws'
import type { SnapshotFrame } from '../../gateway/protocol.ts'
import type { HistoryEvent } from '../../scripts/chaos/history.ts'
import { startWorkload } from '../../scripts/chaos/workload.ts'

const GAME = 'match-1'
const USERS = Array.from({ length: 6 }, (_, i) => `bettor-${i}`)
const MEAN_PAUSE_MS = 100
/** Longer than any bettor's first pause (at most MEAN_PAUSE_MS). */
const HANDSHAKE_DELAY_MS = 4 * MEAN_PAUSE_MS
const ANSWER_TIMEOUT_MS = 60_000
const PLACING_TIMEOUT_MS = 10_000
const POLL_MS = 50

const SNAPSHOT: SnapshotFrame = {
  type: 'snapshot',
  ref: 'subscribe',
  gameId: GAME,
  epoch: 'epoch-1',
  seq: 0,
  view: {
    gameId: GAME,
    clock: null,
    score: {},
    markets: [
      {
        marketId: 'p1-winner',
        name: 'Point 1: winner',
        selections: [{ id: 'home', name: 'home' }],
        status: 'open',
        prices: { home: 2_000 },
        result: { state: 'pending' },
        sinceMs: 0,
      },
    ],
  },
}

t.test('every bettor places bets though the gateway accepts its socket late', async (t) => {
  const server = new WebSocketServer({
    port: 0,
    host: '127.0.0.1',
    verifyClient: (_info, accept) => void delay(HANDSHAKE_DELAY_MS).then(() => accept(true)),
  })
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())))
  server.on('connection', (socket) => {
    socket.on('message', (data: Buffer) => {
      const message = JSON.parse(data.toString('utf8')) as { type: string }
      if (message.type === 'subscribe') socket.send(JSON.stringify(SNAPSHOT))
    })
  })
  await new Promise((resolve) => server.once('listening', resolve))
  const { port } = server.address() as AddressInfo
  const history: HistoryEvent[] = []
  const workload = startWorkload({
    wsUrls: [`ws://127.0.0.1:${port}/v1/ws`],
    secret: 'a-secret-of-at-least-thirty-two-bytes-for-hs256',
    gameId: GAME,
    users: USERS,
    seed: 11,
    meanPauseMs: MEAN_PAUSE_MS,
    answerTimeoutMs: ANSWER_TIMEOUT_MS,
    record: (event) => history.push(event),
  })
  t.teardown(() => workload.close())
  const placers = () => new Set(history.flatMap((event) => (event.type === 'place' ? [event.userId] : [])))
  const deadline = Date.now() + PLACING_TIMEOUT_MS
  while (placers().size < USERS.length && Date.now() < deadline) await delay(POLL_MS)
  t.same([...placers()].sort(), [...USERS].sort(), 'each bettor placed at least one bet')
})
