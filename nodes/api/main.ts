/** The bet-acceptance process. `--help` lists options. */

import { Gauge } from 'prom-client'
import { caughtUpReadiness, divergenceOf, ledgerShardsOf, runNode } from '../fabric/node-main.ts'
import { describeNode } from '../fabric/node-state.ts'
import { startApiNode } from './api-node.ts'
import { options } from './options.ts'

await runNode('api', options, async ({ config, nc, log, registry, backend, clock, appendHedge }) => {
  const hedge = await appendHedge()
  const node = await startApiNode({
    ...(hedge ? { appendHedge: hedge } : {}),
    nc,
    region: config.region,
    regions: config.regions,
    node: config.nodeId,
    backend,
    shards: config.shards,
    ...ledgerShardsOf(config, registry, log),
    ledgerCheckpoints: true,
    log,
    clock,
    limits: {
      stakeCentsMin: config.stakeCentsMin,
      stakeCentsMax: config.stakeCentsMax,
      userOpenStakeCentsMax: config.userOpenStakeCentsMax,
      marketLiabilityCentsMax: config.marketLiabilityCentsMax,
      staleMsMax: config.staleMsMax,
      refusedPerUserPerMinuteMax: config.refusedPerUserPerMinuteMax,
    },
  })
  new Gauge({
    name: 'api_bets_awaiting_final',
    help: 'bets whose final verdict is not yet published',
    registers: [registry],
    collect() {
      this.set(node.service.pendingFinal())
    },
  })
  new Gauge({
    name: 'api_allowance_moves',
    help: 'market liability allowance moves this node asked other shards for since it started, by how they ended (moved, short: no shard had any to spare, failed)',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      for (const [result, count] of Object.entries(node.service.allowances.stats()))
        this.set({ result }, count)
    },
  })
  new Gauge({
    name: 'api_ledger_appends_hedged',
    help: 'ledger appends sent again through the second connection since start (hedged), and those it acknowledged first (answered)',
    labelNames: ['kind'],
    registers: [registry],
    collect() {
      const { hedged, answered } = node.hedgeStats()
      this.set({ kind: 'hedged' }, hedged)
      this.set({ kind: 'answered' }, answered)
    },
  })
  return {
    readiness: () => caughtUpReadiness(node),
    close: () => node.close(),
    state: (options) => describeNode(node, options),
    diverged: () => divergenceOf(node),
    beforeRebuild: () => node.ledger.dropDivergedCheckpoints(),
    clock: node.replicas.clock,
    replicas: node.replicas,
    ledger: node.ledger,
  }
})
