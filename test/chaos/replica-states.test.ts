// Proves how a chaos run tells that the servers forked a stream (scripts/chaos/replica-states.ts):
// replicas that hold the same log agree, whatever the order the servers answered in; replicas
// with different messages under the same sequences, or one left behind, are named with what each
// server holds; replicas that agree in shape but answer one sequence with two messages are named by
// the message-by-message comparison; and a real cluster's replicas agree once written, in shape and
// message by message.

import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream'
import t from 'tap'
import {
  CONTENT_READS_PER_SEQ,
  contentDisagreements,
  differingSeqs,
  disagreements,
  lastingDisagreements,
  type ReadAt,
  type ReplicaState,
  replicaStates,
} from '../../scripts/chaos/replica-states.ts'
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

/** Three replicas answering in turn, as the servers hand direct gets around; `forked` holds another message at some sequences. */
function replicasReading(
  forked: ReadonlySet<number>,
  lastSeq: number,
): { read: ReadAt; reads: () => number } {
  let reads = 0
  const read: ReadAt = async (seq) => {
    const replica = reads++ % 3
    if (seq > lastSeq) return null
    const body = replica === 2 && forked.has(seq) ? `other bet ${seq}` : `bet ${seq}`
    return { subject: 'ledger.eu.1', data: new TextEncoder().encode(body) }
  }
  return { read, reads: () => reads }
}

t.test('a sequence answered with two messages is a fork; one answered alike is not', async (t) => {
  const agreeing = replicasReading(new Set(), 40)
  t.same(await differingSeqs(agreeing.read, 1, 40, Date.now() + 10_000), {
    differing: [],
    compared: 40,
    unread: 0,
  })
  t.equal(agreeing.reads(), 40 * CONTENT_READS_PER_SEQ, 'every sequence read as many times')
  const forked = replicasReading(new Set([7, 31]), 40)
  t.same((await differingSeqs(forked.read, 1, 40, Date.now() + 10_000)).differing, [7, 31])
  t.same(
    await differingSeqs(replicasReading(new Set(), 40).read, 1, 45, Date.now() + 10_000),
    { differing: [], compared: 40, unread: 0 },
    'a sequence no replica holds is not compared',
  )
  t.same(
    await differingSeqs(forked.read, 1, 40, Date.now() - 1),
    { differing: [], compared: 0, unread: 40 },
    'past the budget nothing is read, and nothing is said to agree',
  )
})

t.test("a real cluster's replicas agree", async (t) => {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const nc = await cluster.connect()
  t.teardown(() => nc.close())
  const jsm = await jetstreamManager(nc)
  await jsm.streams.add({
    name: 'AGREE',
    subjects: ['agree.>'],
    num_replicas: 3,
    storage: StorageType.File,
    allow_direct: true,
  })
  const js = jetstream(nc)
  for (let i = 0; i < 20; i++) await js.publish('agree.x', `m${i}`)
  t.same(await lastingDisagreements(cluster.processes), [], 'every server holds the same 20 messages')
  t.same(
    await contentDisagreements(cluster.processes, await replicaStates(cluster.processes)),
    { forks: [], compared: 20, unread: 0 },
    'and answers each of them alike',
  )
})
