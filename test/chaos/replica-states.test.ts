// Proves how a chaos run tells that the servers forked a stream (scripts/chaos/replica-states.ts):
// replicas that hold the same log agree, whatever the order the servers answered in; replicas
// with different messages under the same sequences, or one left behind, are named with what each
// server holds; and a real cluster's replicas agree once written.

import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream'
import t from 'tap'
import { disagreements, lastingDisagreements, type ReplicaState } from '../../scripts/chaos/replica-states.ts'
import { startNatsCluster } from '../../scripts/nats-cluster.ts'

const replica = (server: string, over: Partial<ReplicaState> = {}): ReplicaState => ({
  server,
  messages: 16,
  bytes: 4_096,
  firstSeq: 1,
  lastSeq: 16,
  lastTs: '2026-12-07T05:00:00.000Z',
  ...over,
})

t.test('replicas that hold the same log agree; others are named', async (t) => {
  t.same(disagreements(new Map([['LEDGER_EU_1', [replica('n2'), replica('n1'), replica('n3')]]])), [])
  const forked = disagreements(
    new Map([
      [
        'LEDGER_EU_1',
        [replica('n3', { bytes: 4_112, lastTs: '2026-12-07T05:00:01.000Z' }), replica('n1'), replica('n2')],
      ],
      ['LEDGER_EU_0', [replica('n1'), replica('n2', { lastSeq: 15, messages: 15 }), replica('n3')]],
      ['FABRIC_EU', [replica('n1'), replica('n2'), replica('n3')]],
    ]),
  )
  t.equal(forked.length, 2, 'the fabric stream agrees')
  t.match(forked[0], /^LEDGER_EU_0: n1 16 msgs .*; n2 15 msgs 4096 B seq 1-15/, 'one left behind')
  t.match(
    forked[1],
    /^LEDGER_EU_1: n1 16 msgs 4096 B .*; n3 16 msgs 4112 B seq 1-16 last at 2026-12-07T05:00:01/,
  )
})

t.test("a real cluster's replicas agree", async (t) => {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const nc = await cluster.connect()
  t.teardown(() => nc.close())
  const jsm = await jetstreamManager(nc)
  await jsm.streams.add({ name: 'AGREE', subjects: ['agree.>'], num_replicas: 3, storage: StorageType.File })
  const js = jetstream(nc)
  for (let i = 0; i < 20; i++) await js.publish('agree.x', `m${i}`)
  t.same(await lastingDisagreements(cluster.processes), [], 'every server holds the same 20 messages')
})
