// Proves that a node does not leave a healthy server when the stream it watches has lost its own
// quorum: the check fails through every server then, and asked again through the node's second
// connection it fails there too, so the node stays. Without a second connection the same failure
// moves the node (the behaviour that made every node reconnect in the chaos runs where the
// cut-off server led the fabric stream). A real 5-server cluster: the watched stream lives on
// three of them, two of those are stopped, and the node's connections are on the other two.

import { jetstreamManager, StorageType } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import pino from 'pino'
import t from 'tap'
import { watchQuorum } from '../../../nodes/fabric/quorum-watch.ts'
import { startNatsCluster } from '../../../scripts/nats-cluster.ts'
import { waitFor } from '../../helpers/wait.ts'

const STREAM = 'QUORUM_WATCHED'
const INTERVAL_MS = 250
const LOST_AFTER_MS = 1_000
/** Several times LOST_AFTER_MS: a node that would move has moved by then. */
const WATCH_MS = 4_000

t.test('a stream without a quorum anywhere moves no node that can ask elsewhere', async (t) => {
  const cluster = await startNatsCluster({ count: 5 })
  t.teardown(() => cluster.close())
  const admin = await cluster.connect()
  t.teardown(() => admin.close())
  const jsm = await jetstreamManager(admin)
  await jsm.streams.add({ name: STREAM, subjects: ['quorum.>'], num_replicas: 3, storage: StorageType.File })
  const info = await jsm.streams.info(STREAM)
  const hosts = [info.cluster?.leader, ...(info.cluster?.replicas ?? []).map((peer) => peer.name)]
  const away = cluster.processes.filter((server) => !hosts.includes(server.name))
  t.equal(away.length, 2, `the stream is on ${hosts.join(', ')}`)
  const [own, second] = away.map((server) => server.url)
  const options = { noAsyncTraces: true, maxReconnectAttempts: -1 }
  const nc = await connect({ ...options, servers: own })
  const other = await connect({ ...options, servers: second })
  const alone = await connect({ ...options, servers: own })
  t.teardown(async () => {
    for (const connection of [nc, other, alone]) await connection.close()
  })

  const log = pino({ level: 'silent' })
  const watched = watchQuorum({
    nc,
    stream: STREAM,
    intervalMs: INTERVAL_MS,
    lostAfterMs: LOST_AFTER_MS,
    log,
    elsewhere: () => other,
  })
  const unwatched = watchQuorum({
    nc: alone,
    stream: STREAM,
    intervalMs: INTERVAL_MS,
    lostAfterMs: LOST_AFTER_MS,
    log,
  })
  t.teardown(() => {
    watched.stop()
    unwatched.stop()
  })
  await new Promise((resolve) => setTimeout(resolve, 2 * INTERVAL_MS))
  t.equal(watched.moves() + unwatched.moves(), 0, 'no move while the stream has its quorum')

  // Two of the stream's three servers go: it has no quorum, whoever asks.
  for (const name of hosts.slice(0, 2)) {
    const index = cluster.processes.findIndex((server) => server.name === name)
    await cluster.stopServer(index)
  }
  await waitFor('the node without a second connection to move', () => unwatched.moves() > 0, 10_000)
  await new Promise((resolve) => setTimeout(resolve, WATCH_MS))
  t.equal(watched.moves(), 0, 'the node that asked through its second connection stayed')
  t.ok(watched.stays() > 0, `its failed checks were found failing elsewhere too (${watched.stays()})`)
  t.ok(unwatched.moves() > 0, `the node that could not ask elsewhere moved (${unwatched.moves()} times)`)
})
