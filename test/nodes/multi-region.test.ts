// Two regions joined by NATS gateways: a trader in eu, API and settlement nodes in both, and a
// gateway in us. Every region holds the eu game's replica (sourced into each GLOBAL_FABRIC); each
// user's bets go to the user's home region through the us gateway, are booked in that region's
// ledger, turn final and are settled there, and the statuses come back across the regions; a bet
// sent to the wrong region is refused. Once the match ends it is archived in every region: each
// region's bucket holds its archive (us made its own from its replica), each region's merged
// stream is purged below the marker, and a bet's lookup still answers in its home region.

import { jetstreamManager } from '@nats-io/jetstream'
import { Kvm } from '@nats-io/kv'
import pino from 'pino'
import { Registry } from 'prom-client'
import t from 'tap'
import { yjsBackend } from '../../crdt/index.ts'
import { createAuthenticator, signToken } from '../../gateway/auth.ts'
import { startGatewayNode } from '../../gateway/gateway-node.ts'
import { WS_PATH } from '../../gateway/protocol.ts'
import { DEFAULT_GATEWAY_LIMITS } from '../../gateway/server.ts'
import { homeRegionOf } from '../../nodes/fabric/regions.ts'
import { names } from '../../nodes/fabric/streams.ts'
import { marketIds } from '../../nodes/trader/trader.ts'
import { depositSubject, lookupSubject, placeSubject, regionNames } from '../../protocol/subjects.ts'
import { ofType, openClient } from '../helpers/gateway-stack.ts'
import { startRegionStack } from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

const REGIONS = ['eu', 'us'] as const
const ARCHIVE_AFTER_MS = 300
const SECRET = 'a-multi-region-secret-of-32-bytes!!'
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })

/** The first user id of the pattern homed in the region. */
function userHomedIn(region: string): string {
  for (let i = 0; ; i++) if (homeRegionOf(`user-${i}`, REGIONS) === region) return `user-${i}`
}

t.test('bets are routed to the home region; every region holds every replica', async (t) => {
  const { cluster, shards, trader, apis, settlements } = await startRegionStack(t, {
    regions: REGIONS,
    traderArchiveAfterMs: ARCHIVE_AFTER_MS,
  })
  const gateway = await startGatewayNode({
    nc: await cluster.connect('us'),
    region: 'us',
    node: 'gw-us',
    backend: yjsBackend,
    shards,
    log,
    regions: REGIONS,
    registry: new Registry(),
    auth: createAuthenticator({ hs256Secret: SECRET }),
    origins: [],
    allowMissingOrigin: true,
    limits: DEFAULT_GATEWAY_LIMITS,
    host: '127.0.0.1',
    port: 0,
  })
  t.teardown(() => gateway.close())

  const users = { eu: userHomedIn('eu'), us: userHomedIn('us') }
  const nc = await cluster.connect('us')
  t.teardown(() => nc.close())
  for (const region of REGIONS) {
    const reply = await nc.request(
      depositSubject(users[region], shards, region),
      JSON.stringify({ id: `deposit-${users[region]}`, userId: users[region], amountCents: 10_000 }),
      { timeout: 10_000 },
    )
    t.match(reply.json(), { ok: true }, `deposit for ${users[region]} in ${region}`)
  }
  const wrong = await nc.request(
    placeSubject(users.eu, shards, 'us'),
    JSON.stringify({
      betId: 'bet-wrong-region-1',
      userId: users.eu,
      gameId: 'match-1',
      marketId: 'p1-winner',
      selectionId: 'home',
      stakeCents: 100,
      odds: 1_500,
      policy: 'any',
    }),
    { timeout: 10_000 },
  )
  t.match(wrong.json(), { ok: false, error: { code: 'WRONG_REGION' } }, 'a region books only its own users')

  trader.feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  trader.feed.emit({ type: 'point-start', point: 1, server: 'home' })
  const { winner } = marketIds(1)
  await waitFor(
    'the eu game in every region',
    () => [...apis, ...settlements, gateway].every((node) => node.replicas.replica('match-1') !== undefined),
    30_000,
  )
  const clients = await Promise.all(
    REGIONS.map(async (region) =>
      openClient(`${gateway.url.replace('http', 'ws')}${WS_PATH}`, {
        token: await signToken(SECRET, users[region], 300),
      }),
    ),
  )
  t.teardown(() => Promise.all(clients.map((client) => client.close())))
  for (const client of clients) client.send({ type: 'subscribe', gameId: 'match-1' })
  const snapshot = await clients[0]?.next(
    ofType('snapshot', (s) => s.view.markets.some((m) => m.status === 'open')),
  )
  const odds = snapshot?.view.markets.find((m) => m.marketId === winner)?.prices.home as number
  await Promise.all(
    REGIONS.map(async (region, i) => {
      const client = clients[i] as (typeof clients)[number]
      client.send({
        type: 'place',
        betId: `bet-${region}-000001`,
        gameId: 'match-1',
        marketId: winner,
        selectionId: 'home',
        stakeCents: 500,
        odds,
        policy: 'exact',
      })
      t.match(
        await client.next(
          ofType('bet', (b) => b.status === 'provisional'),
          20_000,
        ),
        { accepted: true, balanceCents: 9_500 },
        `${users[region]} (home ${region}) booked provisionally`,
      )
      await client.next(
        ofType('bet', (b) => b.status === 'final'),
        20_000,
      )
    }),
  )
  for (const [i, region] of REGIONS.entries()) {
    const home = apis[i]
    const other = apis[1 - i]
    t.ok(
      home?.ledger.foldFor(users[region]).bet(users[region], `bet-${region}-000001`),
      `booked in ${region}`,
    )
    t.equal(
      other?.ledger.foldFor(users[region]).bet(users[region], `bet-${region}-000001`),
      null,
      'and only there',
    )
  }
  trader.feed.emit({ type: 'serve', point: 1, second: false })
  trader.feed.emit({ type: 'point-end', point: 1, winner: 'home', ace: false })
  for (const client of clients)
    t.match(
      await client.next(
        ofType('bet', (b) => b.status === 'settled'),
        30_000,
      ),
      { outcome: 'won' },
    )
  await waitFor(
    'replicas converged across regions',
    () =>
      new Set([...apis, ...settlements].map((node) => node.replicas.replica('match-1')?.stateHash())).size ===
      1,
    30_000,
  )
  const history = await fetch(`${gateway.url}/v1/users/${users.eu}/bets`, {
    headers: { authorization: `Bearer ${await signToken(SECRET, users.eu, 60)}` },
  })
  t.match(await history.json(), { data: [{ betId: 'bet-eu-000001' }] }, 'history from the home region')
  trader.feed.emit({ type: 'match-end' })
  await waitFor(
    'archived in every region',
    () => [...apis, ...settlements].every((node) => node.replicas.isArchived('match-1')),
    30_000,
  )
  for (const region of REGIONS) {
    const nc = await cluster.connect(region)
    t.teardown(() => nc.close())
    const bucket = await new Kvm(nc).open(names.snapshotBucket(region))
    await waitFor(
      `the archive in ${region}'s bucket`,
      async () => (await bucket.get(names.archiveKey('match-1')))?.operation === 'PUT',
    )
    const jsm = await jetstreamManager(nc)
    const stream = regionNames.globalFabricStream(region)
    const subject = names.gameSubject('eu', 'match-1')
    await waitFor(`${stream} purged but for the marker`, async () => {
      const info = await jsm.streams.info(stream, { subjects_filter: subject })
      return info.state.subjects?.[subject] === 1
    })
  }
  const lookup = await nc.request(
    lookupSubject(users.us, shards, 'us'),
    JSON.stringify({ userId: users.us, betIds: ['bet-us-000001'] }),
    { timeout: 10_000 },
  )
  t.match(
    lookup.json(),
    { ok: true, data: { statuses: [{ status: 'final' }, { status: 'settled', outcome: 'won' }] } },
    'a bet of the archived match still answers in its home region',
  )
})
