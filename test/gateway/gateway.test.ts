// The gateway against the real fabric on a real 3-server cluster: a bet slip followed to settled on
// one socket, a retry whose body changed told which bet stands, auth and origin failures on the
// upgrade, BOLA attempts over HTTP, bad frames, floods, connection and subscription limits,
// reconnect and resume, many clients receiving identical ordered deltas, a client that stops
// reading while another stays on time, and the summary of live games (natural order, a 1 s cache).

import { setTimeout as delay } from 'node:timers/promises'
import type { NatsConnection } from '@nats-io/transport-node'
import Fastify from 'fastify'
import pino from 'pino'
import t, { type Test } from 'tap'
import { createHlc, encodeStamp, type Op, stampOps, yjsBackend } from '../../crdt/index.ts'
import { createAuthenticator, signToken } from '../../gateway/auth.ts'
import { applyDelta } from '../../gateway/game-view.ts'
import { CLOSE, type DeltaFrame, type GameView, type SnapshotFrame } from '../../gateway/protocol.ts'
import {
  GAMES_SUMMARY_CACHE_MS,
  type GameSummary,
  naturalOrder,
  userQueries,
} from '../../gateway/user-queries.ts'
import { createReplicaSync } from '../../nodes/fabric/replica-sync.ts'
import { ensureFabric, limitsWithShards } from '../../nodes/fabric/streams.ts'
import { natsTransport } from '../../nodes/fabric/transport.ts'
import { marketIds } from '../../nodes/trader/trader.ts'
import {
  GAME,
  type GatewayStack,
  ofType,
  openClient,
  openStalledClient,
  readStalledClient,
  SECRET,
  startGatewayStack,
} from '../helpers/gateway-stack.ts'
import { waitFor } from '../helpers/wait.ts'

/** A second writer of games needs the fabric alone: it leaves the stack's ledger shard streams be. */
const WRITER_LIMITS = limitsWithShards(0)

const placeFrame = (betId: string, marketId: string, odds: number, extra: Record<string, unknown> = {}) => ({
  type: 'place',
  ref: `ref-${betId}`,
  betId,
  gameId: GAME,
  marketId,
  selectionId: 'home',
  stakeCents: 500,
  odds,
  policy: 'exact',
  ...extra,
})

/** The view a client holds after a snapshot and the deltas after it. */
function followed(frames: readonly unknown[], gameId = GAME): { view: GameView; seqs: number[] } {
  let view: GameView | null = null
  const seqs: number[] = []
  for (const frame of frames as (SnapshotFrame | DeltaFrame)[]) {
    if (frame.type === 'snapshot' && frame.gameId === gameId) {
      view = frame.view
      seqs.length = 0
      seqs.push(frame.seq)
    }
    if (frame.type === 'delta' && frame.gameId === gameId && view !== null) {
      view = applyDelta(view, frame)
      seqs.push(frame.seq)
    }
  }
  if (view === null) throw new Error('no snapshot')
  return { view, seqs }
}

const sortedView = (view: GameView) => ({
  ...view,
  markets: [...view.markets].sort((a, b) => a.marketId.localeCompare(b.marketId)),
})

t.test('a bet slip to settled over one socket, every status in order with the balance', async (t) => {
  const stack = await startGatewayStack()
  t.teardown(() => stack.close())
  await stack.deposit('alice', 1_000)
  const client = await openClient(stack.wsUrl, { token: await stack.token('alice') })
  t.teardown(() => client.close())
  t.match(await client.next(ofType('hello')), { userId: 'alice', protocol: 1 })
  client.send({ type: 'subscribe', gameId: GAME, ref: 's1' })
  t.match(await client.next(ofType('snapshot')), { gameId: GAME, ref: 's1', seq: 0 })
  stack.feed.emit({ type: 'point-start', point: 1, server: 'home' })
  const { winner } = marketIds(1)
  const opened = await client.next(
    ofType('delta', (d) => (d.markets ?? []).some((m) => m.marketId === winner && m.status === 'open')),
  )
  const odds = opened.markets?.find((m) => m.marketId === winner)?.prices.home as number
  client.send(placeFrame('bet-alice-00000001', winner, odds))
  // Too much for the balance once the first bet is in: refused by the ledger fold.
  client.send(placeFrame('bet-alice-00000002', winner, odds, { stakeCents: 900 }))
  await waitFor('both bets answered', () =>
    client.frames.some((f) => f.type === 'bet' && f.betId === 'bet-alice-00000002'),
  )
  stack.feed.emit({ type: 'serve', point: 1, second: false })
  await waitFor('the market suspended at the gateway', () =>
    followed(client.frames).view.markets.some((m) => m.marketId === winner && m.status === 'suspended'),
  )
  client.send(placeFrame('bet-alice-00000003', winner, odds))
  await waitFor('the late bet final', () =>
    client.frames.some((f) => f.type === 'bet' && f.betId === 'bet-alice-00000003' && f.status === 'final'),
  )
  stack.feed.emit({ type: 'point-end', point: 1, winner: 'home', ace: false })
  await waitFor('both bets settled', () =>
    ['bet-alice-00000001', 'bet-alice-00000003'].every((id) =>
      client.frames.some((f) => f.type === 'bet' && f.betId === id && f.status === 'settled'),
    ),
  )
  const statuses = (betId: string) =>
    client.frames
      .filter((f) => f.type === 'bet' && f.betId === betId)
      .map((f) => (f as { status: string }).status)
  t.same(statuses('bet-alice-00000001'), ['provisional', 'final', 'settled'], 'each status once, in order')
  t.same(statuses('bet-alice-00000002'), ['refused'])
  t.same(statuses('bet-alice-00000003'), ['provisional', 'final', 'settled'])
  const frames = client.frames.filter((f) => f.type === 'bet')
  const find = (betId: string, status: string) =>
    frames.find((f) => f.betId === betId && f.status === status) as unknown as Record<string, unknown>
  t.match(find('bet-alice-00000001', 'provisional'), {
    accepted: true,
    balanceCents: 500,
    ref: 'ref-bet-alice-00000001',
  })
  t.match(find('bet-alice-00000001', 'final'), { accepted: true, finalAtMs: Number })
  t.match(find('bet-alice-00000002', 'refused'), { code: 'INSUFFICIENT_FUNDS' })
  t.match(find('bet-alice-00000003', 'provisional'), { accepted: false, reason: 'MARKET_NOT_OPEN' })
  t.match(find('bet-alice-00000003', 'final'), { accepted: false, reason: 'MARKET_NOT_OPEN' })
  t.match(find('bet-alice-00000003', 'settled'), { outcome: 'rejected', payoutCents: 500 })
  const payout = Math.floor((500 * odds) / 1000)
  const lastBalance = (frames.at(-1) as { balanceCents: number }).balanceCents
  t.equal(lastBalance, 1_000 - 500 + payout, 'the balance after settlement: won, and the late bet refunded')
  t.equal(followed(client.frames).view.score.home, 1, 'the score counts the point')

  // A retry of a settled bet still gets an answer, and nothing is placed twice.
  client.send(placeFrame('bet-alice-00000001', winner, odds))
  await waitFor('the retry answered', () => statuses('bet-alice-00000001').length === 4)
  t.equal(statuses('bet-alice-00000001')[3], 'provisional')
  t.equal(stack.api.ledger.foldFor('alice').balance('alice'), lastBalance, 'the retry changed nothing')

  // Another socket of the same user sees the same user's statuses.
  const second = await openClient(stack.wsUrl, { token: await stack.token('alice') })
  t.teardown(() => second.close())
  await second.next(ofType('hello'))
  second.send({ type: 'subscribe', gameId: GAME })
  await second.next(ofType('snapshot'))
  stack.feed.emit({ type: 'point-start', point: 2, server: 'home' })
  const next = await second.next(
    ofType('delta', (d) =>
      (d.markets ?? []).some((m) => m.marketId === marketIds(2).winner && m.status === 'open'),
    ),
  )
  const odds2 = next.markets?.find((m) => m.marketId === marketIds(2).winner)?.prices.home as number
  second.send(placeFrame('bet-alice-00000004', marketIds(2).winner, odds2, { stakeCents: 100 }))
  await second.next(ofType('bet', (b) => b.betId === 'bet-alice-00000004' && b.status === 'final'))
  await waitFor('the first socket saw it too', () =>
    client.frames.some((f) => f.type === 'bet' && f.betId === 'bet-alice-00000004' && f.status === 'final'),
  )
  t.same(client.invalid, [], 'every frame the gateway sent matched the protocol')
  t.same(second.invalid, [])

  // The user's own history and balance over HTTP, with the token.
  const headers = { authorization: `Bearer ${await stack.token('alice')}` }
  const history = await fetch(`${stack.gateway.url}/v1/users/alice/bets`, { headers })
  t.equal(history.status, 200)
  const rows = ((await history.json()) as { data: { betId: string }[] }).data
  t.ok(
    rows.some((row) => row.betId === 'bet-alice-00000001'),
    'history lists the bet',
  )
  const balance = await fetch(`${stack.gateway.url}/v1/users/alice/balance`, { headers })
  t.match(await balance.json(), { data: { userId: 'alice', balanceCents: Number } })
})

t.test(
  'a retry whose body changed learns which bet stands, and that bet’s statuses still come',
  async (t) => {
    // Two placements of one bet id with different stakes, the second sent before the first is
    // answered: the API node books the first and refuses the second with BET_ID_REUSED. The refusal
    // names the bet that stands, and its final and settled statuses reach the client, once each.
    const stack = await startGatewayStack()
    t.teardown(() => stack.close())
    await stack.deposit('zoe', 10_000)
    const client = await openClient(stack.wsUrl, { token: await stack.token('zoe') })
    t.teardown(() => client.close())
    await client.next(ofType('hello'))
    client.send({ type: 'subscribe', gameId: GAME })
    await client.next(ofType('snapshot'))
    stack.feed.emit({ type: 'point-start', point: 1, server: 'home' })
    const { winner } = marketIds(1)
    const opened = await client.next(
      ofType('delta', (d) => (d.markets ?? []).some((m) => m.marketId === winner && m.status === 'open')),
    )
    const odds = opened.markets?.find((m) => m.marketId === winner)?.prices.home as number
    const betId = 'bet-zoe-000000001'
    client.send(placeFrame(betId, winner, odds, { ref: 'first' }))
    client.send(placeFrame(betId, winner, odds, { ref: 'changed', stakeCents: 700 }))
    const refused = await client.next(ofType('bet', (b) => b.betId === betId && b.status === 'refused'))
    t.match(
      refused,
      {
        ref: 'changed',
        code: 'BET_ID_REUSED',
        standing: {
          terms: {
            gameId: GAME,
            marketId: winner,
            selectionId: 'home',
            stakeCents: 500,
            odds,
            policy: 'exact',
          },
          reply: { status: 'provisional', accepted: true, stamp: String },
        },
      },
      'the refusal carries the bet booked under the id',
    )
    stack.feed.emit({ type: 'serve', point: 1, second: false })
    stack.feed.emit({ type: 'point-end', point: 1, winner: 'home', ace: false })
    await client.next(ofType('bet', (b) => b.betId === betId && b.status === 'settled'))
    const statuses = client.frames.flatMap((f) =>
      f.type === 'bet' && f.betId === betId && f.status !== 'refused' ? [[f.status, f.ref]] : [],
    )
    t.same(
      statuses,
      [
        ['provisional', 'first'],
        ['final', 'first'],
        ['settled', 'first'],
      ],
      'the standing bet: each status once, in order, under its own placement’s ref',
    )
    t.same(client.invalid, [], 'every frame matched the protocol')
  },
)

t.test('no user reads another user’s data (BOLA), and HTTP needs a valid token', async (t) => {
  const stack = await startGatewayStack()
  t.teardown(() => stack.close())
  await stack.deposit('alice', 1_000)
  const bob = { authorization: `Bearer ${await stack.token('bob')}` }
  for (const path of ['bets', 'balance']) {
    const other = await fetch(`${stack.gateway.url}/v1/users/alice/${path}`, { headers: bob })
    t.equal(other.status, 403, `bob cannot read alice's ${path}`)
    const body = await other.text()
    t.notMatch(body, /1000|balanceCents/, 'and learns nothing of it')
    const bare = await fetch(`${stack.gateway.url}/v1/users/alice/${path}`)
    t.equal(bare.status, 401, `no token: 401 on ${path}`)
    const forged = await signToken('another-secret-of-at-least-32-bytes!!', 'alice', 60)
    const forgedAnswer = await fetch(`${stack.gateway.url}/v1/users/alice/${path}`, {
      headers: { authorization: `Bearer ${forged}` },
    })
    t.equal(forgedAnswer.status, 401, 'a token signed with another key: 401')
    const traversal = await fetch(`${stack.gateway.url}/v1/users/alice%2F..%2Fbob/${path}`, { headers: bob })
    t.ok([403, 404].includes(traversal.status), 'an encoded path trick reaches no one else')
  }
  // The socket's user is the token's: a placement naming another user is not even a valid frame.
  const client = await openClient(stack.wsUrl, { token: await stack.token('bob') })
  t.teardown(() => client.close())
  await client.next(ofType('hello'))
  client.send({ ...placeFrame('bet-bob-000000001', 'p1-winner', 1_500), userId: 'alice' })
  t.match(await client.next(ofType('error')), { code: 'BAD_FRAME', message: /userId/ })
})

t.test('game ids sort in natural order, totally', async (t) => {
  const ids = ['match-10', 'match-2', 'match-1', 'bulk-1', 'match-02', 'match-100', 'Match-3']
  t.same(
    [...ids].sort(naturalOrder),
    ['bulk-1', 'match-1', 'match-02', 'match-2', 'Match-3', 'match-10', 'match-100'],
    'numbers by value; ids the collator holds equal (match-02, match-2) by code point',
  )
  t.equal(naturalOrder('match-2', 'match-2'), 0)
  t.ok(naturalOrder('match-02', 'match-2') < 0 && naturalOrder('match-2', 'match-02') > 0, 'antisymmetric')
})

t.test('/v1/games/summary lists every game with score, clock and live markets', async (t) => {
  const stack = await startGatewayStack({ extraGames: ['match-10', 'match-2'] })
  t.teardown(() => stack.close())
  const statuses = new Set<number>()
  const summary = async () => {
    const response = await fetch(`${stack.gateway.url}/v1/games/summary`)
    statuses.add(response.status)
    return ((await response.json()) as { data: GameSummary[] }).data
  }
  stack.feed.emit({ type: 'point-start', point: 1, server: 'home' })
  stack.feed.emit({ type: 'serve', point: 1, second: false })
  stack.feed.emit({ type: 'point-end', point: 1, winner: 'home', ace: false })
  let games: GameSummary[] = []
  await waitFor('the point in the summary (after at most one cache period)', async () => {
    games = await summary()
    return games.find((game) => game.gameId === GAME)?.score.home === 1
  })
  t.same([...statuses], [200], 'no token needed, as for /v1/games')
  t.same(
    games.map((game) => game.gameId),
    ['match-1', 'match-2', 'match-10'],
    'every game, in natural order',
  )
  for (const game of games) {
    t.type(game.score, 'object', `${game.gameId}: a score by side`)
    t.match(game.clock, { period: Number, running: Boolean, clockMs: Number, atMs: Number }, 'a clock')
    t.type(game.liveMarkets, 'number', 'a count of live markets')
  }
  t.match(games[0]?.score, { home: 1 }, 'the point played counts')
  const second = games.find((game) => game.gameId === 'match-2')
  t.same(second?.score, {}, 'no point played in match-2')
  t.ok((second?.liveMarkets ?? 0) > 0, 'its first point’s markets are live')

  // The cache: a burst of requests computes the summary once; a period later, once more.
  let computed = 0
  let nowMs = 0
  const counting = {
    games: () => {
      computed++
      return stack.gateway.replicas.games()
    },
    replica: (gameId: string) => stack.gateway.replicas.replica(gameId),
  }
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(userQueries, {
    nc: {} as NatsConnection,
    auth: createAuthenticator({ hs256Secret: SECRET }),
    limits: { queryTimeoutMs: 1_000 },
    replicas: counting,
    route: (base, userId) => `${base}.${userId}`,
    now: () => nowMs,
  })
  const bodies = await Promise.all(
    Array.from({ length: 50 }, () => app.inject({ method: 'GET', url: '/v1/games/summary' })),
  )
  t.equal(computed, 1, '50 requests, one computation')
  t.same(new Set(bodies.map((body) => body.body)).size, 1, 'the same body for each')
  t.match(bodies[0]?.headers['content-type'], /^application\/json/)
  nowMs += GAMES_SUMMARY_CACHE_MS - 1
  await app.inject({ method: 'GET', url: '/v1/games/summary' })
  t.equal(computed, 1, 'still cached within the period')
  nowMs += 1
  await app.inject({ method: 'GET', url: '/v1/games/summary' })
  t.equal(computed, 2, 'computed again once the period is over')
  nowMs -= 10_000
  await app.inject({ method: 'GET', url: '/v1/games/summary' })
  t.equal(computed, 3, 'a clock that went back does not pin the cache')
})

t.test('auth and origin are checked on the upgrade, with documented close codes', async (t) => {
  const stack = await startGatewayStack({ origins: ['https://bet.example'] })
  t.teardown(() => stack.close())
  const closeOf = async (options: Parameters<typeof openClient>[1]) =>
    (await openClient(stack.wsUrl, options)).closed
  t.match(await closeOf({}), { code: CLOSE.UNAUTHORIZED }, 'no token')
  t.match(await closeOf({ token: 'not.a.jwt' }), { code: CLOSE.UNAUTHORIZED }, 'garbage token')
  const forged = await signToken('another-secret-of-at-least-32-bytes!!', 'alice', 60)
  t.match(await closeOf({ token: forged }), { code: CLOSE.UNAUTHORIZED }, 'wrong key')
  t.match(await closeOf({ token: await stack.token('alice', -60) }), { code: CLOSE.TOKEN_EXPIRED }, 'expired')
  t.match(
    await closeOf({ token: await stack.token('bad user!') }),
    { code: CLOSE.UNAUTHORIZED },
    'bad subject',
  )
  const token = await stack.token('alice')
  t.match(
    await closeOf({ token, origin: 'https://evil.example' }),
    { code: CLOSE.ORIGIN_NOT_ALLOWED },
    'a hostile origin (cross-site WebSocket hijacking) is closed even with a valid token',
  )
  const allowed = await openClient(stack.wsUrl, { token, origin: 'https://bet.example' })
  t.match(await allowed.next(ofType('hello')), { userId: 'alice' }, 'an allowed origin gets in')
  await allowed.close()
  const noOrigin = await openClient(stack.wsUrl, { headers: { authorization: `Bearer ${token}` } })
  t.match(
    await noOrigin.next(ofType('hello')),
    { userId: 'alice' },
    'no origin (not a browser), bearer header',
  )
  await noOrigin.close()
  const own = await openClient(stack.wsUrl, { token, origin: stack.gateway.url })
  t.match(await own.next(ofType('hello')), { userId: 'alice' }, 'the gateway’s own page (its public origin)')
  await own.close()
  const shortLived = await openClient(stack.wsUrl, { token: await stack.token('alice', 1) })
  await shortLived.next(ofType('hello'))
  t.match(await shortLived.closed, { code: CLOSE.TOKEN_EXPIRED }, 'closed when the token expires')
})

t.test('bad frames get coded errors and the connection goes on', async (t) => {
  const stack = await startGatewayStack({ limits: { frameBytesMax: 1_024, frameBytesHardMax: 8_192 } })
  t.teardown(() => stack.close())
  const client = await openClient(stack.wsUrl, { token: await stack.token('carol') })
  t.teardown(() => client.close())
  await client.next(ofType('hello'))
  const cases: [unknown, string, RegExp][] = [
    ['not json', 'BAD_FRAME', /not JSON/],
    [[1, 2], 'BAD_FRAME', /object/],
    [{ type: 'launch' }, 'BAD_FRAME', /type must be one of/],
    [{ type: 'subscribe' }, 'BAD_FRAME', /gameId/],
    [{ type: 'subscribe', gameId: '../../etc' }, 'BAD_FRAME', /gameId/],
    [{ type: 'ping', extra: 1 }, 'BAD_FRAME', /extra/],
    [{ type: 'place', betId: 'x', gameId: GAME }, 'BAD_FRAME', /./],
    [{ ...placeFrame('bet-carol-00000001', 'p1-winner', 1_500), stakeCents: -5 }, 'BAD_FRAME', /stakeCents/],
    [{ ...placeFrame('bet-carol-00000001', 'p1-winner', 1_500), odds: 1.5 }, 'BAD_FRAME', /odds/],
    [{ type: 'ping', ref: 'x'.repeat(2_000) }, 'FRAME_TOO_LARGE', /1024/],
    [{ type: 'subscribe', gameId: 'no-such-game' }, 'UNKNOWN_GAME', /no-such-game/],
    [{ type: 'unsubscribe', gameId: GAME }, 'NOT_SUBSCRIBED', /match-1/],
  ]
  for (const [frame, code, message] of cases) {
    client.send(frame)
    t.match(
      await client.next(ofType('error')),
      { code, message },
      `${JSON.stringify(frame).slice(0, 60)}: ${code}`,
    )
  }
  client.ws.send(Buffer.from([1, 2, 3]), { binary: true })
  t.match(await client.next(ofType('error')), { code: 'BAD_FRAME', message: /binary/ })
  client.send({ type: 'ping', ref: 'still-here' })
  t.match(await client.next(ofType('pong')), { ref: 'still-here' }, 'the connection survived all of it')
  client.send({ type: 'ping', ref: 'y'.repeat(10_000) })
  t.match(await client.closed, { code: CLOSE.TOO_BIG }, 'past the hard frame limit the socket closes (1009)')
  t.same(client.invalid, [])
})

t.test('floods: short bursts get RATE_LIMITED, a sustained flood is closed; per user too', async (t) => {
  // The buckets read an injected clock: the test moves it instead of sleeping.
  let clockMs = Date.now()
  const stack = await startGatewayStack({
    limits: {
      messagesPerSecond: 5,
      messagesBurst: 5,
      userMessagesPerSecond: 8,
      userMessagesBurst: 8,
      floodCloseAfter: 30,
    },
    now: () => clockMs,
  })
  t.teardown(() => stack.close())
  const token = await stack.token('dave')
  const client = await openClient(stack.wsUrl, { token })
  t.teardown(() => client.close())
  await client.next(ofType('hello'))
  for (let i = 0; i < 10; i++) client.send({ type: 'ping', ref: `burst-${i}` })
  await waitFor(
    'ten answers',
    () => client.frames.filter((f) => f.type === 'pong' || f.type === 'error').length >= 10,
  )
  const pongs = client.frames.filter((f) => f.type === 'pong').length
  const limited = client.frames.filter((f) => f.type === 'error' && f.code === 'RATE_LIMITED')
  t.equal(pongs, 5, 'the burst allowance is served')
  t.equal(limited.length, 10 - pongs, 'the rest are refused, not dropped silently')
  t.ok(
    limited.every((f) => f.type === 'error' && (f.retryAfterMs ?? 0) > 0),
    'with a retry-after',
  )
  t.ok(
    limited.every((f) => f.type === 'error' && f.ref?.startsWith('burst-')),
    'and the refused frame’s ref',
  )
  clockMs += 1_100
  client.send({ type: 'ping', ref: 'after-wait' })
  t.match(await client.next(ofType('pong', (p) => p.ref === 'after-wait')), {}, 'served again after waiting')

  // Two sockets of one user share the user's bucket (8), though each has 5 of its own.
  const other = await openClient(stack.wsUrl, { token })
  t.teardown(() => other.close())
  await other.next(ofType('hello'))
  clockMs += 1_100
  for (let i = 0; i < 5; i++) {
    client.send({ type: 'ping', ref: `a-${i}` })
    other.send({ type: 'ping', ref: `b-${i}` })
  }
  const answers = () =>
    [...client.frames, ...other.frames].filter(
      (f) =>
        (f.type === 'pong' && /^[ab]-/.test(f.ref ?? '')) ||
        (f.type === 'error' && f.code === 'RATE_LIMITED'),
    )
  await waitFor('ten more answers', () => answers().length >= 10 + limited.length)
  const served = [...client.frames, ...other.frames].filter(
    (f) => f.type === 'pong' && /^[ab]-/.test(f.ref ?? ''),
  )
  t.equal(served.length, 8, "the user's bucket of 8 bounds both sockets together, though each has 5")

  for (let i = 0; i < 100; i++) client.send({ type: 'ping' })
  t.match(await client.closed, { code: CLOSE.FLOODING }, 'a sustained flood is closed with 4029')
  t.equal(other.ws.readyState, other.ws.OPEN, 'the user’s other socket is unaffected')
})

t.test('connection and subscription limits', async (t) => {
  const stack = await startGatewayStack({
    limits: { connectionsPerUserMax: 2, connectionsMax: 3, subscriptionsPerConnectionMax: 1 },
  })
  t.teardown(() => stack.close())
  const erin = await stack.token('erin')
  const first = await openClient(stack.wsUrl, { token: erin })
  const second = await openClient(stack.wsUrl, { token: erin })
  t.teardown(() => Promise.all([first.close(), second.close()]))
  await Promise.all([first.next(ofType('hello')), second.next(ofType('hello'))])
  const third = await openClient(stack.wsUrl, { token: erin })
  t.match(await third.closed, { code: CLOSE.TOO_MANY_CONNECTIONS_FOR_USER })
  const frank = await openClient(stack.wsUrl, { token: await stack.token('frank') })
  t.teardown(() => frank.close())
  await frank.next(ofType('hello'))
  const george = await openClient(stack.wsUrl, { token: await stack.token('george') })
  t.match(await george.closed, { code: CLOSE.GATEWAY_FULL }, 'the total bound')

  // A second game, so that a second subscription has something to name.
  const nc = await stack.cluster.connect()
  t.teardown(() => nc.close())
  const { snapshots } = await ensureFabric(nc, 'eu', WRITER_LIMITS)
  const hlc = createHlc({ node: 'writer-2' })
  const writer = await createReplicaSync({
    transport: natsTransport(nc, snapshots),
    region: 'eu',
    backend: yjsBackend,
    hlc,
    log: pino({ level: 'silent' }),
  })
  t.teardown(() => writer.close())
  const entries = stampOps(hlc, [{ kind: 'game', gameId: 'match-2', writers: ['writer-2'] }])
  await writer.publishUpdate('match-2', writer.replicaFor('match-2').commit(entries), encodeStamp(hlc.last()))
  await waitFor('match-2 at the gateway', () => stack.gateway.replicas.replica('match-2') !== undefined)
  first.send({ type: 'subscribe', gameId: GAME })
  await first.next(ofType('snapshot'))
  first.send({ type: 'subscribe', gameId: GAME, ref: 'again' })
  t.match(
    await first.next(ofType('snapshot')),
    { ref: 'again' },
    'subscribing again is not a second subscription',
  )
  first.send({ type: 'subscribe', gameId: 'match-2', ref: 'two' })
  t.match(await first.next(ofType('error')), { code: 'TOO_MANY_SUBSCRIPTIONS', ref: 'two' })
  first.send({ type: 'unsubscribe', gameId: GAME, ref: 'u' })
  t.match(await first.next(ofType('unsubscribed')), { gameId: GAME, ref: 'u' })
  first.send({ type: 'subscribe', gameId: 'match-2' })
  t.match(await first.next(ofType('snapshot')), { gameId: 'match-2' }, 'room again after unsubscribing')
})

async function playPoints(stack: GatewayStack, from: number, count: number): Promise<void> {
  for (let point = from; point < from + count; point++) {
    stack.feed.emit({ type: 'point-start', point, server: 'home' })
    stack.feed.emit({ type: 'serve', point, second: false })
    stack.feed.emit({
      type: 'point-end',
      point,
      winner: point % 3 === 0 ? 'away' : 'home',
      ace: point % 4 === 0,
    })
    await delay(15)
  }
}

t.test(
  'many clients get identical ordered deltas; reconnect resumes with only what was missed',
  async (t) => {
    const stack = await startGatewayStack({ limits: { resumeDeltasMax: 40 } })
    t.teardown(() => stack.close())
    const clients = await Promise.all(
      Array.from({ length: 40 }, async (_, i) =>
        openClient(stack.wsUrl, { token: await stack.token(`fan-${i}`) }),
      ),
    )
    t.teardown(() => Promise.all(clients.map((client) => client.close())))
    for (const client of clients) client.send({ type: 'subscribe', gameId: GAME })
    await Promise.all(clients.map((client) => client.next(ofType('snapshot'))))
    await playPoints(stack, 1, 6)
    const feed = stack.gateway.gateway.feeds.feed(GAME)
    const lastSeq = feed?.seq() ?? 0
    t.ok(lastSeq >= 6, `the points made deltas (${lastSeq})`)
    await waitFor('every client has every delta', () =>
      clients.every((client) => client.frames.some((f) => f.type === 'delta' && f.seq === lastSeq)),
    )
    const reference = clients[0]?.frames.filter((f) => f.type === 'delta')
    for (const client of clients) {
      const deltas = client.frames.filter((f) => f.type === 'delta')
      t.same(deltas, reference, 'identical deltas')
      t.same(
        deltas.map((d) => d.seq),
        deltas.map((_, i) => i + 1),
        'sequenced with no gap',
      )
    }
    const fresh = await openClient(stack.wsUrl, { token: await stack.token('fresh') })
    t.teardown(() => fresh.close())
    fresh.send({ type: 'subscribe', gameId: GAME })
    const snapshot = await fresh.next(ofType('snapshot'))
    t.same(
      sortedView(followed(clients[0]?.frames ?? []).view),
      sortedView(snapshot.view),
      'snapshot + deltas = snapshot',
    )

    // Reconnect: a client that saw up to seq N asks to resume and gets N+1.. only.
    const leaver = clients[1] as (typeof clients)[number]
    const epoch = snapshot.epoch
    await leaver.close()
    await playPoints(stack, 7, 3)
    const afterSeq = stack.gateway.gateway.feeds.feed(GAME)?.seq() ?? 0
    const back = await openClient(stack.wsUrl, { token: await stack.token('fan-1') })
    t.teardown(() => back.close())
    back.send({ type: 'subscribe', gameId: GAME, resume: { epoch, seq: lastSeq } })
    await waitFor('caught up', () => back.frames.some((f) => f.type === 'delta' && f.seq === afterSeq))
    const resumed = back.frames.filter((f) => f.type === 'delta' || f.type === 'snapshot')
    t.notOk(
      resumed.some((f) => f.type === 'snapshot'),
      'no snapshot on a resume',
    )
    t.match(
      back.frames.find((f) => f.type === 'subscribed'),
      { seq: Number, epoch },
      'told where it stands',
    )
    // Deltas may keep coming after afterSeq was read; the resumed ones are every delta from the one
    // after the client's last, once each and in order, up to whatever is live now.
    const resumedSeqs = resumed.map((f) => (f as DeltaFrame).seq)
    t.ok((resumedSeqs.at(-1) ?? 0) >= afterSeq, 'up to the present')
    t.same(
      resumedSeqs,
      Array.from({ length: resumedSeqs.length }, (_, i) => lastSeq + 1 + i),
      'exactly the missed deltas, then the live ones',
    )
    const live = clients[2]?.frames ?? []
    const lastResumed = resumedSeqs.at(-1) ?? afterSeq
    await waitFor('a live client saw them too', () =>
      live.some((f) => f.type === 'delta' && f.seq === lastResumed),
    )
    const heldView = applyAll(followed(clients[1]?.frames ?? []).view, resumed as DeltaFrame[])
    const liveThen = live.filter((f) => f.type !== 'delta' || f.seq <= lastResumed)
    t.same(sortedView(heldView), sortedView(followed(liveThen).view), 'the resumed view equals a live one')

    // Too far behind (past the kept deltas), or another gateway's epoch: a fresh snapshot.
    const far = await openClient(stack.wsUrl, { token: await stack.token('far') })
    t.teardown(() => far.close())
    far.send({ type: 'subscribe', gameId: GAME, resume: { epoch, seq: 0 } })
    await playPoints(stack, 10, 0)
    const farFirst = await far.next((f) => f.type === 'snapshot' || f.type === 'delta')
    t.equal(farFirst.type, afterSeq > 40 ? 'snapshot' : 'delta', 'within the kept deltas: deltas')
    const stranger = await openClient(stack.wsUrl, { token: await stack.token('stranger') })
    t.teardown(() => stranger.close())
    stranger.send({ type: 'subscribe', gameId: GAME, resume: { epoch: 'another-gateway', seq: 3 } })
    t.match(await stranger.next((f) => f.type === 'snapshot' || f.type === 'delta'), { type: 'snapshot' })
    for (const client of clients) t.same(client.invalid, [])
  },
)

function applyAll(view: GameView, deltas: readonly DeltaFrame[]): GameView {
  return deltas.reduce(applyDelta, view)
}

/** A game with big markets, so that deltas outrun the kernel's socket buffers quickly. */
async function bulkGame(t: Test, stack: GatewayStack) {
  const nc = await stack.cluster.connect()
  t.teardown(() => nc.close())
  const { snapshots } = await ensureFabric(nc, 'eu', WRITER_LIMITS)
  const hlc = createHlc({ node: 'bulk-writer' })
  const writer = await createReplicaSync({
    transport: natsTransport(nc, snapshots),
    region: 'eu',
    backend: yjsBackend,
    hlc,
    log: pino({ level: 'silent' }),
  })
  t.teardown(() => writer.close())
  const replica = writer.replicaFor('bulk-1')
  const commit = async (ops: Op[]) => {
    const update = replica.commit(stampOps(hlc, ops))
    await writer.publishUpdate('bulk-1', update, encodeStamp(hlc.last()))
  }
  const selections = Array.from({ length: 64 }, (_, i) => ({
    id: `s${i}`,
    name: `${'Selection '.repeat(19)}${i}`,
  }))
  const markets = Array.from({ length: 20 }, (_, i) => `m${i}`)
  await commit([{ kind: 'game', gameId: 'bulk-1', writers: ['bulk-writer'] }])
  for (let i = 0; i < markets.length; i += 5)
    await commit(
      markets
        .slice(i, i + 5)
        .map((marketId) => ({ kind: 'market', marketId, name: `Market ${marketId}`, selections })),
    )
  await waitFor('bulk-1 at the gateway', () => stack.gateway.replicas.replica('bulk-1') !== undefined)
  let round = 0
  /** Reprice every market once: a delta of some 300 KB. */
  const reprice = async () => {
    round++
    const prices = Object.fromEntries(selections.map((s, i) => [s.id, 1_100 + ((round + i) % 50) * 10]))
    await commit(
      markets.map((marketId) => ({
        kind: 'transition',
        marketId,
        status: 'open',
        prices,
        reason: `round ${round}`,
      })),
    )
  }
  return { reprice, rounds: () => round }
}

/**
 * The big-markets game with two subscribers: one that reads everything, and a raw client that
 * subscribes and then stops reading, so its receive buffer fills, then the gateway's.
 */
async function readerAndStalled(t: Test, stack: GatewayStack) {
  const bulk = await bulkGame(t, stack)
  const reader = await openClient(stack.wsUrl, { token: await stack.token('reader') })
  t.teardown(() => reader.close())
  reader.send({ type: 'subscribe', gameId: 'bulk-1' })
  await reader.next(ofType('snapshot'))
  const stalled = await openStalledClient(stack.wsUrl, await stack.token('stalled'), {
    type: 'subscribe',
    gameId: 'bulk-1',
  })
  t.teardown(() => stalled.destroy())
  await waitFor('both subscribed', () => stack.gateway.gateway.connections() === 2)
  return { bulk, reader, stalled }
}

t.test('a lagging client gets the latest state instead of every delta once it drains', async (t) => {
  const stack = await startGatewayStack({
    limits: {
      conflateBytes: 64 * 1024,
      closeBytes: 512 * 1024 * 1024,
      laggingMsMax: 120_000,
      backpressureCheckMs: 20,
    },
  })
  t.teardown(() => stack.close())
  const { bulk, reader: live, stalled: lagging } = await readerAndStalled(t, stack)
  const conflated = async () => {
    const metric = (await stack.registry.getSingleMetric('gateway_deltas_conflated_total')?.get())?.values[0]
    return metric?.value ?? 0
  }
  const deadline = Date.now() + 60_000
  while ((await conflated()) < 5 && Date.now() < deadline) {
    await bulk.reprice()
    await delay(5)
  }
  t.ok((await conflated()) >= 5, `deltas were conflated for the lagging client after ${bulk.rounds()} rounds`)
  const reader = readStalledClient(lagging)
  await bulk.reprice()
  const lastSeq = () => stack.gateway.gateway.feeds.feed('bulk-1')?.seq() ?? 0
  await waitFor(
    'the lagging client caught up',
    () => {
      const frames = reader.frames as (SnapshotFrame | DeltaFrame)[]
      const last = frames.at(-1)
      return last !== undefined && last.seq === lastSeq()
    },
    30_000,
  )
  const frames = reader.frames as (SnapshotFrame | DeltaFrame | { type: string })[]
  const snapshots = frames.filter((f) => f.type === 'snapshot')
  t.ok(snapshots.length >= 2, 'after its first snapshot it got a fresh one in place of what it missed')
  const deltas = frames.filter((f): f is DeltaFrame => f.type === 'delta')
  t.ok(deltas.length < lastSeq(), `it skipped deltas (${deltas.length} of ${lastSeq()})`)
  await waitFor('the live client caught up', () =>
    live.frames.some((f) => f.type === 'delta' && f.seq === lastSeq()),
  )
  t.same(
    sortedView(followed(frames, 'bulk-1').view),
    sortedView(followed(live.frames, 'bulk-1').view),
    'and it ends with the same view as a client that read every delta',
  )
  t.equal(stack.gateway.gateway.connections(), 2, 'nobody was dropped')
})

t.test('a client that stops reading is conflated then dropped; the others stay on time', async (t) => {
  const stack = await startGatewayStack({
    limits: {
      conflateBytes: 64 * 1024,
      closeBytes: 1024 * 1024,
      laggingMsMax: 1_000,
      backpressureCheckMs: 20,
    },
  })
  t.teardown(() => stack.close())
  const { bulk, reader: fast } = await readerAndStalled(t, stack)
  const deadline = Date.now() + 60_000
  while ((await stack.gateway.gateway.closedWith(CLOSE.SLOW_CONSUMER)) === 0 && Date.now() < deadline) {
    await bulk.reprice()
    await delay(5)
  }
  const round = bulk.rounds()
  t.equal(
    await stack.gateway.gateway.closedWith(CLOSE.SLOW_CONSUMER),
    1,
    `the slow client was closed (4008) after ${round} rounds`,
  )
  await waitFor('the slow client gone', () => stack.gateway.gateway.connections() === 1)
  const lastSeq = stack.gateway.gateway.feeds.feed('bulk-1')?.seq() ?? 0
  await waitFor('the fast client has every delta', () =>
    fast.frames.some((f) => f.type === 'delta' && f.seq === lastSeq),
  )
  const deltas = fast.frames.filter((f): f is DeltaFrame => f.type === 'delta')
  t.same(
    deltas.map((d) => d.seq),
    deltas.map((_, i) => i + 1),
    'the fast client got every delta, in order',
  )
  // Not a speed assertion: a bound far above any healthy delay, which only a gateway that made
  // the fast client wait behind the slow one would pass.
  const lateness = deltas.map((d) => (fast.receivedAtMs[fast.frames.indexOf(d)] ?? 0) - d.atMs)
  t.ok(Math.max(...lateness) < 5_000, `the fast client stayed on time (worst ${Math.max(...lateness)} ms)`)
  t.same(fast.invalid, [])
})
