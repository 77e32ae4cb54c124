// Proves that a trader's updates are hedged like an API node's ledger appends: with the server of
// its first connection SIGSTOPped (not the fabric stream's leader), every update it commits is
// still acknowledged, through its second connection, and stored once and in commit order; after
// SIGCONT the first attempts the paused server held add nothing. Its beats go through both
// connections, so the region keeps hearing them meanwhile.

import { jetstreamManager } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import pino from 'pino'
import t from 'tap'
import { yjsBackend } from '../../crdt/index.ts'
import { natsFabricTransport } from '../../nodes/fabric/regions.ts'
import { names } from '../../nodes/fabric/streams.ts'
import { createManualFeed } from '../../nodes/trader/replay-feed.ts'
import { startTraderNode } from '../../nodes/trader/trader-node.ts'
import { startNatsCluster } from '../../scripts/nats-cluster.ts'
import { waitFor } from '../helpers/wait.ts'

const REGION = 'eu'
const HEDGE_MAX_MS = 100
const POINTS = 5

t.test('a trader whose server is paused still gets its updates stored, once, in order', async (t) => {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const admin = await cluster.connect()
  t.teardown(() => admin.close())
  await natsFabricTransport(admin, REGION, undefined)
  const stream = names.fabricStream(REGION)
  const leader = (await (await jetstreamManager(admin)).streams.info(stream)).cluster?.leader
  const [own, other] = cluster.processes.filter((server) => server.name !== leader) as [
    (typeof cluster.processes)[number],
    (typeof cluster.processes)[number],
  ]
  const primary = await connect({ servers: [own.url], maxReconnectAttempts: -1 })
  const second = await connect({ servers: [other.url], maxReconnectAttempts: -1 })
  // The test reads the stream through a server that stays up.
  const reader = await connect({ servers: [other.url], maxReconnectAttempts: -1 })
  const jsm = await jetstreamManager(reader)
  const feed = createManualFeed()
  const trader = await startTraderNode({
    nc: primary,
    appendHedge: { nc: second, maxMs: HEDGE_MAX_MS },
    region: REGION,
    node: 'trader-1',
    gameId: 'match-1',
    writers: ['trader-1'],
    feed,
    backend: yjsBackend,
    log: pino({ level: 'silent' }),
    snapshotIntervalMs: 0,
  })
  t.teardown(async () => {
    if (own.pid !== undefined) process.kill(own.pid, 'SIGCONT')
    await trader.close()
    await primary.close()
    await second.close()
    await reader.close()
  })
  const stored = async () => (await jsm.streams.info(stream)).state.messages
  feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  await waitFor('the match stored', async () => trader.trader.backlog() === 0 && (await stored()) > 0)

  let beats = 0
  reader.subscribe(names.beatSubject(REGION), {
    callback: () => {
      beats++
    },
  })
  await reader.flush()
  process.kill(own.pid as number, 'SIGSTOP')
  const before = await stored()
  const beatsBefore = beats
  for (let point = 1; point <= POINTS; point++) {
    feed.emit({ type: 'point-start', point, server: 'home' })
    feed.emit({ type: 'serve', point, second: false })
    feed.emit({ type: 'point-end', point, winner: 'away', ace: false })
  }
  await waitFor(
    'every update acknowledged while the server is paused',
    () => trader.trader.backlog() === 0,
    10_000,
  )
  const during = await stored()
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.ok(beats - beatsBefore > 10, `${beats - beatsBefore} beats heard while its server was paused`)
  t.ok(during > before, `${during - before} updates stored through the second connection`)

  process.kill(own.pid as number, 'SIGCONT')
  await waitFor('the paused server back', async () => await primary.flush().then(() => true))
  await new Promise((resolve) => setTimeout(resolve, 1_000))
  t.equal(await stored(), during, 'the first attempts it held were not stored again')
  const stamps: string[] = []
  for (let seq = 1; seq <= during; seq++) {
    const message = await jsm.streams.getMessage(stream, { seq })
    stamps.push(message?.header?.get('Nats-Msg-Id') ?? '')
  }
  t.ok(
    stamps.every((stamp) => stamp.length > 0),
    'each names its commit',
  )
  t.same(stamps, [...stamps].sort(), 'in commit order (each message id is its commit’s last stamp)')
})
