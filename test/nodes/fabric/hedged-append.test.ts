// Proves hedged appends (nodes/fabric/transport.ts) on a real 3-server cluster: a node whose
// connection's server is SIGSTOPped (not the stream's leader) still gets every append
// acknowledged, through its second connection to another server, each within a few hedge delays
// instead of the append timeout, and the node is told within a second to move off that server;
// and once the paused server wakes and passes on the first attempts
// it held, the stream holds each message once.

import { jetstreamManager } from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import t from 'tap'
import { natsFabricTransport } from '../../../nodes/fabric/regions.ts'
import { names } from '../../../nodes/fabric/streams.ts'
import { startNatsCluster } from '../../../scripts/nats-cluster.ts'
import { waitFor } from '../../helpers/wait.ts'

const REGION = 'eu'
const HEDGE_MAX_MS = 100
const APPENDS = 20

t.test(
  'appends through a paused server are acknowledged through the second connection, stored once',
  async (t) => {
    const cluster = await startNatsCluster()
    t.teardown(() => cluster.close())
    const admin = await cluster.connect()
    t.teardown(() => admin.close())
    // The stream and its leader first; the node's own server is one that does not lead it.
    await natsFabricTransport(admin, REGION, undefined, 1)
    const stream = names.ledgerStream(REGION, 0)
    const jsm = await jetstreamManager(admin)
    const leader = (await jsm.streams.info(stream)).cluster?.leader
    const [own, other] = cluster.processes.filter((server) => server.name !== leader) as [
      (typeof cluster.processes)[number],
      (typeof cluster.processes)[number],
    ]
    const primary = await connect({ servers: [own.url], maxReconnectAttempts: -1 })
    const second = await connect({ servers: [other.url], maxReconnectAttempts: -1 })
    t.teardown(async () => {
      if (own.pid !== undefined) process.kill(own.pid, 'SIGCONT')
      await primary.close()
      await second.close()
    })
    let stalledAtMs: number | null = null
    const transport = await natsFabricTransport(primary, REGION, undefined, 1, {
      nc: second,
      maxMs: HEDGE_MAX_MS,
      onStalled: () => {
        stalledAtMs ??= Date.now()
      },
    })
    const append = (i: number) =>
      transport.append(names.ledgerSubject(REGION, 0, 'u1'), JSON.stringify({ i }), {
        msgId: `append-${i}`,
        timeoutMs: 2_000,
      })

    for (let i = 0; i < APPENDS; i++) await append(i)
    const before = transport.hedgeStats()
    t.ok(before.hedged < APPENDS, `with every server up, ${before.hedged} of ${APPENDS} were hedged`)

    process.kill(own.pid as number, 'SIGSTOP')
    const pausedAtMs = Date.now()
    const slowest: number[] = []
    for (let i = APPENDS; i < 2 * APPENDS; i++) {
      const sentAt = Date.now()
      const ack = await append(i)
      slowest.push(Date.now() - sentAt)
      t.equal(ack.seq, i + 1, `append ${i} acknowledged at its place`)
    }
    const after = transport.hedgeStats()
    t.equal(after.answered - before.answered, APPENDS, 'each was acknowledged through the second connection')
    t.ok(
      Math.max(...slowest) < 1_000,
      `the slowest took ${Math.max(...slowest)} ms, under the 2 s append timeout`,
    )
    t.ok(
      stalledAtMs !== null && stalledAtMs - pausedAtMs < 1_000,
      `the first connection was found stalled ${stalledAtMs === null ? 'never' : `${stalledAtMs - pausedAtMs} ms after the pause`}`,
    )

    process.kill(own.pid as number, 'SIGCONT')
    // The paused server now passes on the first attempts it held: each is a duplicate of its hedge.
    await waitFor('the woken server serves again', async () => {
      try {
        await primary.flush()
        return true
      } catch {
        return false
      }
    })
    await new Promise((resolve) => setTimeout(resolve, 500))
    const { state } = await jsm.streams.info(stream)
    t.equal(state.messages, 2 * APPENDS, 'each message stored once')
    t.equal(state.last_seq, 2 * APPENDS)
  },
)
