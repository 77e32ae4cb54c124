// Proves that a node refuses to start on a ledger laid out otherwise than it is configured, on real
// 3-server clusters: a region created with 4 ledger shards refuses an API or settlement node of 8,
// and one created with 8 refuses a node of 4, each with a LedgerLayoutError naming both counts;
// and a region holding the single ledger stream of the layout before shard streams (`LEDGER_EU`,
// subjects `ledger.eu.*.*`) refuses a node with a LedgerLayoutError naming that stream and the
// layout, and is left as it was: no shard stream is created beside it. This is the breaking change
// of shard streams (docs/operations.md, "Regions created before shard streams"), with a test.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream'
import pino from 'pino'
import t, { type Test } from 'tap'
import { yjsBackend } from '../../crdt/index.ts'
import { startApiNode } from '../../nodes/api/api-node.ts'
import { ensureFabric, LedgerLayoutError, limitsWithShards, names } from '../../nodes/fabric/streams.ts'
import { startSettlementNode } from '../../nodes/settlement/settlement-node.ts'
import { startNatsCluster } from '../../scripts/nats-cluster.ts'

const REGION = 'eu'
const log = pino({ level: 'silent' })

async function startCluster(t: Test) {
  const cluster = await startNatsCluster()
  const nc = await cluster.connect()
  const dir = mkdtempSync(join(tmpdir(), 'ledger-layout-'))
  t.teardown(async () => {
    await nc.close()
    await cluster.close()
    rmSync(dir, { recursive: true, force: true })
  })
  const jsm = await jetstreamManager(nc)
  /** The streams holding the region's ledger subjects, by name. */
  const ledgerStreams = async () => {
    const found: string[] = []
    for await (const name of jsm.streams.names(names.allLedgerSubject(REGION))) found.push(name)
    return found.sort()
  }
  const api = async (shards: number) =>
    startApiNode({
      nc: await cluster.connect(),
      region: REGION,
      node: 'api-1',
      backend: yjsBackend,
      shards,
      log,
    })
  const settlement = async (shards: number) =>
    startSettlementNode({
      nc: await cluster.connect(),
      region: REGION,
      node: 'settle-1',
      backend: yjsBackend,
      shards,
      databasePath: join(dir, 'settle-1.db'),
      log,
    })
  return { cluster, nc, jsm, ledgerStreams, api, settlement }
}

const shardStreams = (shards: number) =>
  Array.from({ length: shards }, (_, shard) => names.ledgerStream(REGION, shard)).sort()

for (const [created, configured] of [
  [4, 8],
  [8, 4],
] as const) {
  t.test(`a region created with ${created} shards refuses nodes of ${configured}`, async (t) => {
    const { nc, ledgerStreams, api, settlement } = await startCluster(t)
    await ensureFabric(nc, REGION, limitsWithShards(created))
    const named = new RegExp(`of ${created} of region ${REGION}[\\s\\S]*configured for ${configured}`)
    for (const [kind, start] of [
      ['an API node', api],
      ['a settlement node', settlement],
    ] as const) {
      const refused = await start(configured).then(
        async (node) => {
          await node.close()
          return null
        },
        (error: unknown) => error,
      )
      t.type(refused, LedgerLayoutError, `${kind} of ${configured} shards refuses to start`)
      t.match((refused as Error | null)?.message, named, 'naming the count it found and its own')
    }
    t.same(await ledgerStreams(), shardStreams(created), 'the region keeps its shard streams, no more')
    const node = await api(created)
    t.teardown(() => node.close())
    t.same(node.ledger.served.length, created, `a node of ${created} shards starts`)
  })
}

t.test('a region holding the single ledger stream of before refuses to start a node', async (t) => {
  const { jsm, ledgerStreams, api, settlement } = await startCluster(t)
  const old = names.unshardedLedgerStream(REGION)
  t.equal(old, 'LEDGER_EU')
  await jsm.streams.add({
    name: old,
    subjects: [names.allLedgerSubject(REGION)],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    num_replicas: 3,
  })
  for (const [kind, start] of [
    ['an API node', api],
    ['a settlement node', settlement],
  ] as const) {
    const refused = await start(4).then(
      async (node) => {
        await node.close()
        return null
      },
      (error: unknown) => error,
    )
    t.type(refused, LedgerLayoutError, `${kind} refuses to start`)
    t.match(
      (refused as Error | null)?.message,
      /LEDGER_EU, the single ledger stream of the layout before shard streams/,
      'naming the stream and the layout',
    )
  }
  t.same(await ledgerStreams(), [old], 'no shard stream was created beside the old one')
})
