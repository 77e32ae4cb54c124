/** The settlement process. `--help` lists options. */

import { Gauge } from 'prom-client'
import { caughtUpReadiness, divergenceOf, ledgerShardsOf, runNode } from '../fabric/node-main.ts'
import { describeNode } from '../fabric/node-state.ts'
import { options } from './options.ts'
import { startSettlementNode } from './settlement-node.ts'

await runNode('settlement', options, async ({ config, nc, log, registry, backend, clock }) => {
  const node = await startSettlementNode({
    nc,
    region: config.region,
    regions: config.regions,
    node: config.nodeId,
    backend,
    shards: config.shards,
    ...ledgerShardsOf(config, registry, log),
    databasePath: config.database,
    leaderSpreadMs: config.leaderSpreadMs,
    ledgerCheckpoints: true,
    ledgerCheckpointMs: config.ledgerCheckpointMs,
    log,
    clock,
  })
  const stats = node.settler.stats
  new Gauge({
    name: 'settlement_open_bets',
    help: 'bets not yet settled',
    registers: [registry],
    collect() {
      this.set(node.settler.openBets())
    },
  })
  new Gauge({
    name: 'settlement_held_bets',
    help: 'bets held because their market is under review',
    registers: [registry],
    collect() {
      this.set(stats.held)
    },
  })
  new Gauge({
    name: 'settlement_appended_total',
    help: 'settlement entries appended by this node',
    registers: [registry],
    collect() {
      this.set(stats.settled)
    },
  })
  new Gauge({
    name: 'ledger_shard_leader',
    help: 'the server leading each served ledger shard’s stream, as last read (1 per shard and server)',
    labelNames: ['shard', 'server'],
    registers: [registry],
    collect() {
      this.reset()
      for (const [shard, server] of node.leaders())
        if (server !== null) this.set({ shard: String(shard), server }, 1)
    },
  })
  return {
    readiness: () => caughtUpReadiness(node),
    close: () => node.close(),
    state: (options) => ({
      ...describeNode(node, options),
      shardLeaders: Object.fromEntries(node.leaders()),
    }),
    diverged: () => divergenceOf(node),
    beforeRebuild: () => node.ledger.dropDivergedCheckpoints(),
    clock: node.replicas.clock,
    replicas: node.replicas,
    ledger: node.ledger,
  }
})
