/** The trader process: one game, a simulated tennis feed or a recorded one. `--help` lists options. */

import { appendFileSync } from 'node:fs'
import { Counter } from 'prom-client'
import type { Entry } from '../../crdt/index.ts'
import { readinessOf, runNode } from '../fabric/node-main.ts'
import { describeNode } from '../fabric/node-state.ts'
import { options } from './options.ts'
import { createReplayFeed } from './replay-feed.ts'
import { createSimulatedTennisFeed, DEFAULT_BET_WINDOW_MS } from './simulated-tennis.ts'
import { startTraderNode } from './trader-node.ts'

await runNode('trader', options, async ({ config, nc, log, registry, backend, clock }) => {
  if (config.feed === 'replay' && config.replayFile === undefined) {
    log.fatal('--feed replay needs --replay-file')
    process.exit(1)
  }
  const feed =
    config.feed === 'replay'
      ? createReplayFeed(config.replayFile as string, config.timeScale)
      : createSimulatedTennisFeed({
          seed: config.seed,
          timeScale: config.timeScale,
          points: config.points,
          betWindowMs: DEFAULT_BET_WINDOW_MS,
        })
  // Synchronous appends: the record must hold every commit up to a crash, and commits are few.
  const onCommit = config.commitLog
    ? (entries: readonly Entry[]) =>
        appendFileSync(config.commitLog, entries.map((entry) => `${JSON.stringify(entry)}\n`).join(''))
    : undefined
  const node = await startTraderNode({
    nc,
    region: config.region,
    regions: config.regions,
    node: config.nodeId,
    gameId: config.gameId,
    writers: config.writers.length > 0 ? config.writers : [config.nodeId],
    feed,
    backend,
    log,
    snapshotIntervalMs: config.snapshotIntervalMs,
    limits: { heartbeatMs: config.heartbeatMs, takeoverAfterMs: config.takeoverAfterMs },
    role: config.standby ? 'standby' : 'active',
    now: clock,
    ...(onCommit ? { onCommit } : {}),
  })
  if (config.standby && config.takeoverAfterMs === 0)
    log.warn('--standby without --takeover-after-ms: this trader will never take over')
  const stats = node.trader.stats
  for (const key of Object.keys(stats) as (keyof typeof stats)[]) {
    new Counter({
      name: `trader_${key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}_total`,
      help: `trader ${key}`,
      registers: [registry],
      collect() {
        this.reset()
        this.inc(stats[key])
      },
    })
  }
  return {
    readiness: () =>
      readinessOf({
        'caught up with the fabric stream': node.replicas.caughtUp(),
        'not stood down after a takeover': node.trader.role() !== 'fenced',
      }),
    close: () => node.close(),
    clock: node.replicas.clock,
    state: () => ({
      ...describeNode({ replicas: node.replicas }),
      trader: { role: node.trader.role(), standDownReason: node.trader.fencedReason() },
    }),
  }
})
