/** The trader process's options (beside the common ones in nodes/fabric/node-main.ts). */

import { GAME_ID_SOURCE } from '../../protocol/ids.ts'
import { defineOptions } from '../fabric/config.ts'
import { WRITER_GAMES_MAX as TRADER_GAMES_MAX } from '../fabric/writer-beats.ts'
import { ARCHIVE_AFTER_MS_DEFAULT, ARCHIVE_AFTER_MS_MAX } from './match-archive.ts'

export const options = defineOptions({
  gameId: {
    type: 'string',
    default: 'match-1',
    env: 'TRADER_GAME_ID',
    flag: '--game-id',
    doc: 'the game this trader writes',
    pattern: new RegExp(GAME_ID_SOURCE),
  },
  gameIds: {
    type: 'list',
    default: [],
    env: 'TRADER_GAME_IDS',
    flag: '--game-ids',
    doc: 'the games this trader writes, comma-separated, each its own simulated match (default: --game-id alone)',
    pattern: new RegExp(GAME_ID_SOURCE),
  },
  games: {
    type: 'integer',
    default: 0,
    min: 0,
    max: TRADER_GAMES_MAX,
    env: 'TRADER_GAMES',
    flag: '--games',
    doc: 'run this many simulated matches, match-1 to match-N, with seeds --seed to --seed + N - 1 (0: --game-ids or --game-id)',
  },
  staggerMs: {
    type: 'integer',
    default: 0,
    min: 0,
    max: 3_600_000,
    env: 'TRADER_STAGGER_MS',
    flag: '--stagger-ms',
    doc: 'the n-th new match (from 0) starts n times this long after the trader is ready',
  },
  writers: {
    type: 'list',
    default: [],
    env: 'TRADER_WRITERS',
    flag: '--writers',
    doc: 'every writer of each game, the same for all of them (default: this node only)',
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
  standby: {
    type: 'boolean',
    default: false,
    env: 'TRADER_STANDBY',
    flag: '--standby',
    doc: 'stand by in every game: heartbeat as a writer of each, and take one over when its trader falls silent in it (needs --takeover-after-ms)',
  },
  takeoverAfterMs: {
    type: 'integer',
    default: 0,
    min: 0,
    max: 600_000,
    env: 'TRADER_TAKEOVER_AFTER_MS',
    flag: '--takeover-after-ms',
    doc: 'fence a writer of the game not heard from for this long; a standby then takes over (0: never)',
  },
  archiveAfterMs: {
    type: 'integer',
    default: ARCHIVE_AFTER_MS_DEFAULT,
    min: 0,
    max: ARCHIVE_AFTER_MS_MAX,
    env: 'TRADER_ARCHIVE_AFTER_MS',
    flag: '--archive-after-ms',
    doc: 'archive a match this long after it ended, once nothing in it can change (0: never): its replica leaves every node, its updates leave the stream',
  },
  commitLog: {
    type: 'string',
    default: '',
    env: 'TRADER_COMMIT_LOG',
    flag: '--commit-log',
    doc: 'append every entry this trader commits to this file, one JSON line each (chaos checks read it; empty: off)',
  },
})

/** The games a configuration names: `--games N`, else `--game-ids`, else `--game-id`. */
export function gameIdsOf(config: {
  readonly gameId: string
  readonly gameIds: readonly string[]
  readonly games: number
}): string[] {
  if (config.games > 0) return Array.from({ length: config.games }, (_, i) => `match-${i + 1}`)
  return config.gameIds.length > 0 ? [...config.gameIds] : [config.gameId]
}
