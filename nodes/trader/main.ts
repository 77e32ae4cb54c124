/**
 * The trader process: one game or many (`--games N`, `--game-ids a,b`), simulated tennis matches or
 * one recorded feed. `--help` lists options.
 */

import { appendFileSync } from 'node:fs'
import { Counter } from 'prom-client'
import type { Entry } from '../../crdt/index.ts'
import { readinessOf, runNode } from '../fabric/node-main.ts'
import { describeNode } from '../fabric/node-state.ts'
import type { FeedAdapter } from './feed.ts'
import { gameIdsOf, options } from './options.ts'
import { createReplayFeed } from './replay-feed.ts'
import { createSimulatedTennisFeed, DEFAULT_BET_WINDOW_MS } from './simulated-tennis.ts'
import type { TraderStats } from './trader.ts'
import { startTraderProcess, TRADER_GAMES_MAX, type TraderGame } from './trader-node.ts'

await runNode('trader', options, async ({ config, nc, log, registry, backend, clock, appendHedge }) => {
  const gameIds = gameIdsOf(config)
  const problem =
    config.feed === 'replay' && config.replayFile === undefined
      ? '--feed replay needs --replay-file'
      : config.feed === 'replay' && gameIds.length > 1
        ? '--feed replay plays one recorded match: give one game'
        : new Set(gameIds).size !== gameIds.length || gameIds.length > TRADER_GAMES_MAX
          ? `--game-ids names 1-${TRADER_GAMES_MAX} distinct games`
          : null
  if (problem !== null) {
    log.fatal(problem)
    process.exit(1)
  }
  const feedOf = (index: number): FeedAdapter =>
    config.feed === 'replay'
      ? createReplayFeed(config.replayFile as string, config.timeScale)
      : createSimulatedTennisFeed({
          seed: config.seed + index,
          timeScale: config.timeScale,
          points: config.points,
          betWindowMs: DEFAULT_BET_WINDOW_MS,
        })
  const games: TraderGame[] = gameIds.map((gameId, index) => ({
    gameId,
    feed: feedOf(index),
    startAfterMs: index * config.staggerMs,
  }))
  // Synchronous appends: the record must hold every commit up to a crash, and commits are few.
  const onCommit = config.commitLog
    ? (entries: readonly Entry[], gameId: string) =>
        appendFileSync(
          config.commitLog,
          entries.map((entry) => `${JSON.stringify({ ...entry, gameId })}\n`).join(''),
        )
    : undefined
  const hedge = await appendHedge()
  const node = await startTraderProcess({
    ...(hedge ? { appendHedge: hedge } : {}),
    nc,
    region: config.region,
    regions: config.regions,
    node: config.nodeId,
    games,
    writers: config.writers.length > 0 ? config.writers : [config.nodeId],
    backend,
    log,
    snapshotIntervalMs: config.snapshotIntervalMs,
    limits: { heartbeatMs: config.heartbeatMs, takeoverAfterMs: config.takeoverAfterMs },
    role: config.standby ? 'standby' : 'active',
    archiveAfterMs: config.archiveAfterMs,
    now: clock,
    ...(onCommit ? { onCommit } : {}),
  })
  if (config.standby && config.takeoverAfterMs === 0)
    log.warn('--standby without --takeover-after-ms: this trader will never take over')
  const traders = [...node.traders.values()]
  const sum = (key: keyof TraderStats) => traders.reduce((total, trader) => total + trader.stats[key], 0)
  for (const key of Object.keys(traders[0]?.stats ?? {}) as (keyof TraderStats)[]) {
    new Counter({
      name: `trader_${key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}_total`,
      help: `trader ${key}, over every game of the process`,
      registers: [registry],
      collect() {
        this.reset()
        this.inc(sum(key))
      },
    })
  }
  new Counter({
    name: 'trader_beats_total',
    help: 'writer beats (one per round for every game of the process), by result',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      this.reset()
      this.inc({ result: 'sent' }, node.beats.sent)
      this.inc({ result: 'failed' }, node.beats.failed)
    },
  })
  const first = traders[0]
  return {
    readiness: () =>
      readinessOf({
        'caught up with the fabric stream': node.replicas.caughtUp(),
        // A process whose games are all archived has nothing to stand down from.
        'not stood down after a takeover in every game':
          traders.length === 0 || traders.some((trader) => trader.role() !== 'fenced'),
      }),
    close: () => node.close(),
    clock: node.replicas.clock,
    replicas: node.replicas,
    state: () => ({
      ...describeNode({ replicas: node.replicas }),
      // The first game's trader (the only one with one game); `traders` has every game's.
      trader: { role: first?.role(), standDownReason: first?.fencedReason() },
      traders: Object.fromEntries(
        [...node.traders].map(([gameId, trader]) => [
          gameId,
          { role: trader.role(), standDownReason: trader.fencedReason() },
        ]),
      ),
    }),
  }
})
