/** The trader process: one game, a simulated tennis feed or a recorded one. `--help` lists options. */

import { Counter } from 'prom-client'
import { defineOptions } from '../fabric/config.ts'
import { readinessOf, runNode } from '../fabric/node-main.ts'
import { createReplayFeed } from './replay-feed.ts'
import { createSimulatedTennisFeed, DEFAULT_BET_WINDOW_MS } from './simulated-tennis.ts'
import { startTraderNode } from './trader-node.ts'

const options = defineOptions({
  gameId: {
    type: 'string',
    default: 'match-1',
    env: 'TRADER_GAME_ID',
    flag: '--game-id',
    doc: 'the game this trader writes',
    pattern: /[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}/,
  },
  writers: {
    type: 'list',
    default: [],
    env: 'TRADER_WRITERS',
    flag: '--writers',
    doc: 'every writer of the game (default: this node only)',
  },
  feed: {
    type: 'enum',
    values: ['simulated', 'replay'],
    default: 'simulated',
    env: 'TRADER_FEED',
    flag: '--feed',
    doc: 'where match events come from',
  },
  replayFile: {
    type: 'string',
    env: 'TRADER_REPLAY_FILE',
    flag: '--replay-file',
    doc: 'recorded feed (JSON lines) for --feed replay',
  },
  seed: {
    type: 'integer',
    default: 1,
    min: 0,
    max: 4_294_967_295,
    env: 'TRADER_SEED',
    flag: '--seed',
    doc: 'seed of the simulated match',
  },
  timeScale: {
    type: 'number',
    default: 1,
    min: 0.01,
    max: 1_000,
    env: 'TRADER_TIME_SCALE',
    flag: '--time-scale',
    doc: 'how much faster than real time the feed runs',
  },
  points: {
    type: 'integer',
    default: 0,
    min: 0,
    max: 100_000,
    env: 'TRADER_POINTS',
    flag: '--points',
    doc: 'points to play (0: until stopped)',
  },
  heartbeatMs: {
    type: 'integer',
    default: 20,
    min: 1,
    max: 1_000,
    env: 'TRADER_HEARTBEAT_MS',
    flag: '--heartbeat-ms',
    doc: 'heartbeat interval: how fast verdicts turn final',
  },
  snapshotIntervalMs: {
    type: 'integer',
    default: 10_000,
    min: 0,
    max: 3_600_000,
    env: 'TRADER_SNAPSHOT_INTERVAL_MS',
    flag: '--snapshot-interval-ms',
    doc: 'how often to write replica snapshots (0: never)',
  },
})

await runNode('trader', options, async ({ config, nc, log, registry, backend }) => {
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
  const node = await startTraderNode({
    nc,
    region: config.region,
    node: config.nodeId,
    gameId: config.gameId,
    writers: config.writers.length > 0 ? config.writers : [config.nodeId],
    feed,
    backend,
    log,
    snapshotIntervalMs: config.snapshotIntervalMs,
    limits: { heartbeatMs: config.heartbeatMs },
  })
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
    readiness: () => readinessOf({ 'caught up with the fabric stream': node.replicas.caughtUp() }),
    close: () => node.close(),
  }
})
