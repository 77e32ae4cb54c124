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
  return {
    readiness: () => caughtUpReadiness(node),
    close: () => node.close(),
    state: (options) => describeNode(node, options),
    diverged: () => divergenceOf(node),
    clock: node.replicas.clock,
  }
})
