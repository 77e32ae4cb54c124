// Proves replica sync over a real 3-server JetStream cluster: a writer's updates reach a reader's
// replica through the fabric stream (same state hash), heartbeats over core NATS make the reader's
// verdicts final, and a node restarted after a snapshot round restores from the KV snapshots and
// then tails the stream to the same state, including updates published after the snapshot.

import pino from 'pino'
import t from 'tap'
import { createHlc, encodeStamp, judge, stampOps, yjsBackend } from '../../../crdt/index.ts'
import { createReplicaSync, type ReplicaSync } from '../../../nodes/fabric/replica-sync.ts'
import { ensureFabric } from '../../../nodes/fabric/streams.ts'
import { natsTransport } from '../../../nodes/fabric/transport.ts'
import { createBeatWriter } from '../../../nodes/fabric/writer-beats.ts'
import { startNatsCluster } from '../../../scripts/nats-cluster.ts'
import { NEXT_POINT, stampAt, transition } from '../../helpers/game-writer.ts'
import { waitFor } from '../../helpers/wait.ts'

const log = pino({ level: 'silent' })

t.test('replica sync over JetStream', async (t) => {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const writerConnection = await cluster.connect()
  const readerConnection = await cluster.connect()
  const { snapshots } = await ensureFabric(writerConnection, 'eu')
  await ensureFabric(readerConnection, 'eu')

  let wallMs = 1_700_000_000_000
  const writerHlc = createHlc({ node: 'trader-1', clock: () => wallMs })
  const syncs: ReplicaSync[] = []
  const clocks = new Map<string, ReturnType<typeof createHlc>>()
  t.teardown(async () => {
    for (const sync of syncs) await sync.close()
  })
  const open = async (nc: typeof writerConnection, node: string, clockBehindMs = 0) => {
    const hlc = createHlc({ node, clock: () => wallMs - clockBehindMs })
    clocks.set(node, hlc)
    const sync = await createReplicaSync({
      transport: natsTransport(nc, snapshots),
      region: 'eu',
      backend: yjsBackend,
      hlc,
      log,
    })
    syncs.push(sync)
    return sync
  }
  const writer = await open(writerConnection, 'trader-1')
  const reader = await open(readerConnection, 'api-1')

  const replica = writer.replicaFor('match-1')
  async function write(...ops: Parameters<typeof stampOps>[1]) {
    const entries = stampOps(writerHlc, ops)
    await writer.publishUpdate('match-1', replica.commit(entries), entries.at(-1)?.stamp as string)
  }
  await write({ kind: 'game', gameId: 'match-1', writers: ['trader-1'] }, NEXT_POINT, transition('open'))
  wallMs += 1_000
  await write(transition('suspended'))

  await waitFor('reader converged', () => reader.replica('match-1')?.stateHash() === replica.stateHash())
  t.pass('the reader holds the writer’s state')

  const bet = {
    stamp: stampAt(wallMs + 50),
    marketId: 'point-1',
    selectionId: 'home',
    odds: 1_800,
    policy: 'exact' as const,
  }
  t.equal(
    judge(reader.replica('match-1')!.game, bet).final,
    false,
    'provisional before a heartbeat passes it',
  )
  wallMs += 100
  const beats = createBeatWriter('trader-1')
  beats.offer('match-1', replica.heartbeat(encodeStamp(writerHlc.now())))
  beats.flush((beat) => writer.publishBeat(beat))
  await waitFor('heartbeat admitted', () => judge(reader.replica('match-1')!.game, bet).final)
  t.same(judge(reader.replica('match-1')!.game, bet), judge(replica.game, bet), 'same verdict on both')

  const seq = await writer.writeSnapshots()
  // What the snapshot holds: the writer's document watermark (heartbeats are not in snapshots).
  const snapshotMax = replica.game.watermarks.get('trader-1') as string
  t.ok(seq >= 2, `snapshot round at stream sequence ${seq}`)
  wallMs += 1_000
  await write(transition('open', 1_700, 2_200))
  // The restarted node's clock runs 3 s behind: restoring must still carry it past the snapshot.
  const restarted = await open(await cluster.connect(), 'api-2', 3_000)
  t.ok(encodeStamp(clocks.get('api-2')!.last()) > snapshotMax, 'the clock merged the snapshot before tailing')
  await waitFor(
    'restarted node converged',
    () => restarted.replica('match-1')?.stateHash() === replica.stateHash(),
  )
  t.ok(restarted.caughtUp(), 'caught up with the stream')
  t.ok(restarted.lastSeq() > seq, 'tailed past the snapshot')
})
