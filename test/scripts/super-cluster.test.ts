// Proves the super-cluster launcher joins two regions (three real nats-server processes each, on free
// loopback ports) into one JetStream system, and that the regional fabric layout carries each region's
// CRDT updates to the other: an update published in eu and one published in us both end up in each
// region's merged GLOBAL_FABRIC_<R> stream, and a consumer connected to either region reads both. Each
// region's own FABRIC_<R> and each of its ledger shard streams LEDGER_<R>_<S> stay in that region, and
// the region's ledger has no single LEDGER_<R> stream.
// Last, close() must leave no server process and no temp dir behind.

import { existsSync } from 'node:fs'
import { jetstream, jetstreamManager, type StreamInfo } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import t from 'tap'
import { ensureRegionalFabric } from '../../nodes/fabric/regions.ts'
import { limitsWithShards, names } from '../../nodes/fabric/streams.ts'
import { regionNames } from '../../protocol/subjects.ts'
import { pollUntil, startSuperCluster } from '../../scripts/nats-cluster.ts'

const REGIONS = ['eu', 'us']
const SERVERS_PER_REGION = 3
/** Sourcing across a gateway takes milliseconds; this covers a slow machine with room to spare. */
const SOURCING_TIMEOUT_MS = 15_000
/** How long one read waits for the messages it asks for. */
const FETCH_EXPIRES_MS = 5_000
/** Ledger shards per region: a few, so that each shard stream's placement is checked. */
const SHARDS = 3

const superCluster = await startSuperCluster({ regions: REGIONS })
t.teardown(() => superCluster.close())
const pids = superCluster.processes.map((server) => server.pid)
const connections = new Map<string, NatsConnection>()
for (const region of REGIONS) connections.set(region, await superCluster.connect(region))
const encoder = new TextEncoder()

function connection(region: string): NatsConnection {
  const nc = connections.get(region)
  if (!nc) throw new Error(`no connection to ${region}`)
  return nc
}

function streamInfo(region: string, stream: string): Promise<StreamInfo> {
  return jetstreamManager(connection(region)).then((jsm) => jsm.streams.info(stream))
}

t.test('every server is in its region and all share one JetStream meta group', async (t) => {
  t.equal(superCluster.processes.length, REGIONS.length * SERVERS_PER_REGION, 'three servers per region')
  for (const region of REGIONS) {
    const members = superCluster.processesOf(region)
    t.same(
      members.map((server) => server.name),
      [1, 2, 3].map((i) => `${region}-n${i}`),
      `${region}'s servers are named after it`,
    )
    t.same(
      superCluster.servers(region),
      members.map((server) => server.url),
      `${region}'s client URLs are its servers'`,
    )
  }
  const ports = superCluster.processes.flatMap((server) => Object.values(server.ports))
  const listening = ports.filter((port) => port !== undefined)
  t.equal(
    listening.length,
    REGIONS.length * SERVERS_PER_REGION * 4,
    'client, cluster, monitor and gateway ports',
  )
  t.equal(new Set(listening).size, listening.length, 'no port is shared')
  const leaders = await Promise.all(superCluster.processes.map((server) => server.metaLeader()))
  t.equal(new Set(leaders).size, 1, 'every server names the same meta leader')
})

t.test('each region holds its own updates and sources the other region’s', async (t) => {
  await Promise.all(
    REGIONS.map((region) =>
      ensureRegionalFabric(connection(region), region, REGIONS, limitsWithShards(SHARDS)),
    ),
  )
  for (const region of REGIONS) {
    const ack = await jetstream(connection(region)).publish(
      names.gameSubject(region, 'g1'),
      encoder.encode(`update from ${region}`),
      { msgID: `${region}-writer-1` },
    )
    t.equal(ack.stream, names.fabricStream(region), `${region}'s update is stored by ${ack.stream}`)
  }

  for (const region of REGIONS) {
    const merged = regionNames.globalFabricStream(region)
    const info = await pollUntil(
      `${merged} to hold both regions' updates`,
      async () => {
        const info = await streamInfo(region, merged)
        return info.state.messages === REGIONS.length ? info : undefined
      },
      { timeoutMs: SOURCING_TIMEOUT_MS, context: () => superCluster.logs() },
    )
    t.equal(info.cluster?.name, region, `${merged} is placed in ${region}`)
    t.equal(info.state.num_subjects, REGIONS.length, `${merged} holds one update per region`)

    const own = await streamInfo(region, names.fabricStream(region))
    t.equal(own.cluster?.name, region, `${names.fabricStream(region)} is placed in ${region}`)
    t.equal(own.state.messages, 1, `${names.fabricStream(region)} holds only ${region}'s update`)

    for (let shard = 0; shard < SHARDS; shard++) {
      const name = names.ledgerStream(region, shard)
      const ledger = await streamInfo(region, name)
      t.equal(ledger.cluster?.name, region, `${name} stays in ${region}`)
      t.same(ledger.config.sources ?? [], [], `${name} sources nothing`)
      t.same(
        ledger.config.subjects,
        [names.ledgerShardSubject(region, shard)],
        `${name} holds shard ${shard} alone`,
      )
    }
    const ledgers: string[] = []
    const jsm = await jetstreamManager(connection(region))
    for await (const name of jsm.streams.names(names.allLedgerSubject(region))) ledgers.push(name)
    t.same(
      ledgers.sort(),
      Array.from({ length: SHARDS }, (_, shard) => names.ledgerStream(region, shard)).sort(),
      `${region}'s ledger is its shard streams, with no ${names.unshardedLedgerStream(region)}`,
    )
  }
})

t.test('a consumer in each region reads both regions’ updates', async (t) => {
  for (const region of REGIONS) {
    const consumer = await jetstream(connection(region)).consumers.get(
      regionNames.globalFabricStream(region),
      {
        filter_subjects: regionNames.everyRegionGamesSubject,
      },
    )
    const subjects: string[] = []
    const messages = await consumer.fetch({ max_messages: REGIONS.length, expires: FETCH_EXPIRES_MS })
    for await (const message of messages) subjects.push(message.subject)
    t.same(
      subjects.sort(),
      REGIONS.map((origin) => names.gameSubject(origin, 'g1')).sort(),
      `a consumer in ${region} reads the update of every region`,
    )
  }
})

t.test('close stops every server it started and removes its temp dir', async (t) => {
  t.ok(
    pids.every((pid) => pid !== undefined),
    'every server had a pid',
  )
  await superCluster.close()
  const alive = pids.filter((pid) => pid !== undefined && isAlive(pid))
  t.same(alive, [], 'no server process is left')
  t.notOk(existsSync(superCluster.dir), 'the temp dir is gone')
})

function isAlive(pid: number): boolean {
  try {
    // Signal 0 checks that the process exists without touching it.
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
