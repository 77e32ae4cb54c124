// Proves the nats-cluster helper gives tests a real replicated JetStream, and that an R3 stream has the
// two properties the fabric relies on: a publish repeated with the same Nats-Msg-Id is stored once (the
// repeat's ack says duplicate), and writes keep succeeding when one of three servers crashes (2 of 3 is a
// quorum), with the crashed server catching up after it restarts. It runs real nats-server processes on
// free loopback ports; the crash is a SIGKILL of the stream leader, so failover is exercised too.

import { jetstream, jetstreamManager, type PubAck, StorageType, type StreamInfo } from '@nats-io/jetstream'
import { nanos } from '@nats-io/transport-node'
import t from 'tap'
import { pollUntil, startNatsCluster } from '../../scripts/nats-cluster.ts'

/** Long enough that both publishes of the dedup case fall inside it on any machine. */
const DUPLICATE_WINDOW_MS = 60_000
/** Covers a raft election after the leader dies plus the client reconnecting to another server. */
const FAILOVER_TIMEOUT_MS = 30_000
/** One publish try; a try aimed at a dead leader times out and the same msgID is sent again. */
const PUBLISH_ATTEMPT_TIMEOUT_MS = 2_000
const REPLICAS = 3

const cluster = await startNatsCluster()
t.teardown(() => cluster.close())
const nc = await cluster.connect()
const js = jetstream(nc)
const jsm = await jetstreamManager(nc)
const serverNames = cluster.processes.map((server) => server.name)
const encoder = new TextEncoder()

function addR3Stream(name: string, subject: string): Promise<StreamInfo> {
  return jsm.streams.add({
    name,
    subjects: [subject],
    storage: StorageType.File,
    num_replicas: REPLICAS,
    duplicate_window: nanos(DUPLICATE_WINDOW_MS),
  })
}

/** Stream info once `accept` holds; info requests fail while a stream has no leader, so errors retry. */
function streamInfoWhen(
  stream: string,
  what: string,
  accept: (info: StreamInfo) => boolean,
): Promise<StreamInfo> {
  return pollUntil(
    what,
    async () => {
      const info = await jsm.streams.info(stream)
      return accept(info) ? info : undefined
    },
    { timeoutMs: FAILOVER_TIMEOUT_MS, context: () => cluster.logs() },
  )
}

function hasFullReplicaSet(info: StreamInfo): boolean {
  return info.cluster?.leader !== undefined && info.cluster.replicas?.length === REPLICAS - 1
}

/** Every server holding the stream, leader and replicas alike, sorted for comparison. */
function membersOf(info: StreamInfo): string[] {
  const replicas = (info.cluster?.replicas ?? []).map((peer) => peer.name)
  return [info.cluster?.leader ?? '', ...replicas].sort()
}

function allReplicasCurrent(info: StreamInfo): boolean {
  const replicas = info.cluster?.replicas ?? []
  return hasFullReplicaSet(info) && replicas.every((peer) => peer.current && !peer.offline)
}

t.test('a publish repeated with the same msgID is stored once on an R3 stream', async (t) => {
  await addR3Stream('DEDUP', 'dedup.>')
  const payload = encoder.encode('{"bet":"b-1","stake":500}')
  const first = await js.publish('dedup.bet', payload, { msgID: 'bet-b-1' })
  const second = await js.publish('dedup.bet', payload, { msgID: 'bet-b-1' })
  t.equal(first.duplicate, false, 'the first publish is stored')
  t.equal(second.duplicate, true, 'the repeat is acked as a duplicate')
  t.equal(second.seq, first.seq, 'the duplicate ack names the stored message')

  const info = await streamInfoWhen('DEDUP', 'a leader and two replicas', hasFullReplicaSet)
  t.equal(info.state.messages, 1, 'the stream holds one message')
  const leader = info.cluster?.leader
  const replicaNames = (info.cluster?.replicas ?? []).map((peer) => peer.name)
  t.equal(replicaNames.length, REPLICAS - 1, 'two replicas besides the leader')
  t.notOk(replicaNames.includes(leader ?? ''), 'the leader is not counted as a replica')
  t.same(membersOf(info), [...serverNames].sort(), 'one copy on every server')
})

t.test('writes survive a crashed stream leader, which catches up after restart', async (t) => {
  await addR3Stream('FAILOVER', 'failover.>')
  await js.publish('failover.bet', encoder.encode('before'), { msgID: 'before-crash' })
  const before = await streamInfoWhen('FAILOVER', 'a leader and two replicas', hasFullReplicaSet)
  const victimName = before.cluster?.leader ?? ''
  const victim = serverNames.indexOf(victimName)
  t.ok(victim >= 0, `the stream leader ${victimName} is one of the cluster's servers`)

  await cluster.stopServer(victim, 'SIGKILL')
  t.notOk(cluster.processes[victim]?.running, 'the leader is down')
  const ack = await publishUntilAcked('failover.bet', 'during', 'during-crash')
  t.equal(ack.seq, 2, 'the write made while a server was down is stored after the first')
  const hasLeader = (info: StreamInfo) => info.cluster?.leader !== undefined
  const during = await streamInfoWhen('FAILOVER', 'a new leader', hasLeader)
  t.not(during.cluster?.leader, victimName, 'a surviving server took over as leader')

  await cluster.startServer(victim)
  const healed = await streamInfoWhen('FAILOVER', 'every replica current', allReplicasCurrent)
  t.equal(healed.state.messages, 2, 'no write was lost or doubled')
  t.same(membersOf(healed), [...serverNames].sort(), 'the restarted server holds a copy again')
})

/**
 * Retries a publish until acked. Retrying is safe because of the msgID: if an earlier try was stored but
 * its ack was lost, the retry is acked as a duplicate of the same sequence instead of being stored twice.
 */
function publishUntilAcked(subject: string, body: string, msgID: string): Promise<PubAck> {
  return pollUntil(
    `an ack for ${msgID}`,
    () => js.publish(subject, encoder.encode(body), { msgID, timeout: PUBLISH_ATTEMPT_TIMEOUT_MS }),
    { timeoutMs: FAILOVER_TIMEOUT_MS, context: () => cluster.logs() },
  )
}
