// Proves that a settlement node spreads its served ledger shards' stream leaders: with the leaders of
// a region's six shard streams piled onto one server, a settlement node started with a short
// --leader-spread-ms moves them until every server of three leads two, and reports which server
// leads which shard (the map behind /debug/state and the ledger_shard_leader metric).

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { jetstreamManager } from '@nats-io/jetstream'
import pino from 'pino'
import t from 'tap'
import { yjsBackend } from '../../crdt/index.ts'
import { leaderCounts, leaderSpread, readLeaders, requestStepDown } from '../../nodes/fabric/leader-spread.ts'
import { ensureFabric, limitsWithShards, names } from '../../nodes/fabric/streams.ts'
import { startSettlementNode } from '../../nodes/settlement/settlement-node.ts'
import { pollUntil, startNatsCluster } from '../../scripts/nats-cluster.ts'

const REGION = 'eu'
const SHARDS = 6
const SKEWED_AT_LEAST = 4
const PHASE_TIMEOUT_MS = 30_000
const SPREAD_EVERY_MS = 500

t.test('a settlement node spreads its shards’ stream leaders and reports them', async (t) => {
  const cluster = await startNatsCluster()
  const dir = mkdtempSync(join(tmpdir(), 'shard-leaders-'))
  const nc = await cluster.connect()
  t.teardown(async () => {
    await nc.close()
    await cluster.close()
    rmSync(dir, { recursive: true, force: true })
  })
  await ensureFabric(nc, REGION, limitsWithShards(SHARDS))
  const jsm = await jetstreamManager(nc)
  const streams = Array.from({ length: SHARDS }, (_, shard) => names.ledgerStream(REGION, shard))
  const servers = cluster.processes.map((server) => server.name)
  const waitFor = <T>(what: string, attempt: () => Promise<T | undefined>) =>
    pollUntil(what, attempt, { timeoutMs: PHASE_TIMEOUT_MS, context: () => cluster.logs() })

  const target = servers[0] as string
  await waitFor(`${SKEWED_AT_LEAST} shard leaders on ${target}`, async () => {
    const leaders = await readLeaders(jsm, streams)
    if ((leaderCounts(leaders, servers).get(target) ?? 0) >= SKEWED_AT_LEAST) return true
    const away = [...leaders].filter(([, leader]) => leader !== null && leader !== target)
    await Promise.allSettled(away.map(([stream]) => requestStepDown(nc, stream)))
    return undefined
  })

  const node = await startSettlementNode({
    nc: await cluster.connect(),
    region: REGION,
    node: 'settle-1',
    backend: yjsBackend,
    shards: SHARDS,
    databasePath: join(dir, 'settle-1.db'),
    log: pino({ level: 'warn' }),
    leaderSpreadMs: SPREAD_EVERY_MS,
  })
  t.teardown(() => node.close())
  const even = await waitFor('the shard leaders to be spread evenly', async () => {
    const leaders = await readLeaders(jsm, streams)
    const counts = leaderCounts(leaders, servers)
    return leaderSpread(counts) <= 1 && [...leaders.values()].every((leader) => leader !== null)
      ? counts
      : undefined
  })
  t.same([...even.values()], [2, 2, 2], 'each of the three servers leads two shards')
  const reported = await waitFor('the node to report every shard’s leader', async () => {
    const byShard = node.leaders()
    const counts = new Map<string, number>()
    for (const leader of byShard.values()) if (leader) counts.set(leader, (counts.get(leader) ?? 0) + 1)
    return byShard.size === SHARDS && [...counts.values()].every((count) => count === 2) ? byShard : undefined
  })
  t.same([...reported.keys()].sort(), [0, 1, 2, 3, 4, 5], 'by shard')
})
