/**
 * A seeded, realistic simulated tennis feed: the server changes every game, a point cycle is about
 * six and a half seconds at time scale 1 (a four-second window before the serve, a fault now and
 * then, aces, rallies; real tennis plays a point every 30-40 s, near time scale 0.2), and
 * sometimes the provider corrects itself. `timeScale` compresses time for tests and benchmarks.
 */

import { createPrng } from '../fabric/prng.ts'
import type { FeedAdapter, FeedEvent, Side } from './feed.ts'

export interface SimulatedTennisOptions {
  readonly seed: number
  /** 1 is real time; 10 runs ten times faster. */
  readonly timeScale: number
  /** Stop after this many points (0: play on until stopped). */
  readonly points: number
  readonly betWindowMs: number
}

export const DEFAULT_BET_WINDOW_MS = 4_000
const FIRST_SERVE_IN = 0.62
const ACE_FIRST = 0.09
const ACE_SECOND = 0.02
const SERVER_WINS = 0.64
const CORRECTION_CHANCE = 0.03
const POINTS_PER_GAME = 6
/**
 * The feed says it is alive this often, in real time whatever the time scale: at a slow pace the
 * wait before a serve outlasts the trader's stale-feed guard (8 s), which suspended each point's
 * markets 8 s into a 20 s betting window at time scale 0.2.
 */
export const FEED_ALIVE_EVERY_MS = 2_000

export function createSimulatedTennisFeed(options: SimulatedTennisOptions): FeedAdapter {
  const prng = createPrng(options.seed)
  const timers = new Set<NodeJS.Timeout>()
  let stopped = false
  const after = (ms: number, run: () => void) => {
    const timer = setTimeout(() => {
      timers.delete(timer)
      if (!stopped) run()
    }, ms / options.timeScale)
    timers.add(timer)
  }

  function playPoint(emit: (event: FeedEvent) => void, point: number): void {
    const server: Side = Math.floor((point - 1) / POINTS_PER_GAME) % 2 === 0 ? 'home' : 'away'
    const receiver: Side = server === 'home' ? 'away' : 'home'
    emit({ type: 'point-start', point, server })
    const windowMs = options.betWindowMs
    after(windowMs, () => {
      emit({ type: 'serve', point, second: false })
      const firstIn = prng.chance(FIRST_SERVE_IN)
      if (!firstIn) {
        after(400, () => emit({ type: 'fault', point }))
        after(400 + windowMs / 4, () => {
          emit({ type: 'serve', point, second: true })
          finishPoint(emit, point, server, receiver, ACE_SECOND)
        })
      } else {
        finishPoint(emit, point, server, receiver, ACE_FIRST)
      }
    })
  }

  function finishPoint(
    emit: (event: FeedEvent) => void,
    point: number,
    server: Side,
    receiver: Side,
    aceChance: number,
  ): void {
    const ace = prng.chance(aceChance)
    const rallyMs = ace ? 300 : prng.int(600, 2_500)
    after(rallyMs, () => {
      const winner = ace || prng.chance(SERVER_WINS) ? server : receiver
      emit({ type: 'point-end', point, winner, ace })
      if (prng.chance(CORRECTION_CHANCE)) {
        const toMs = Date.now()
        emit({ type: 'correction', point, fromMs: toMs - rallyMs - 500, toMs })
      }
      if (options.points > 0 && point >= options.points) {
        emit({ type: 'match-end' })
        return
      }
      after(prng.int(300, 800), () => playPoint(emit, point + 1))
    })
  }

  return {
    name: `simulated-tennis(seed ${options.seed})`,
    start(emit, resume) {
      const alive = setInterval(() => {
        if (!stopped) emit({ type: 'alive' })
      }, FEED_ALIVE_EVERY_MS)
      timers.add(alive)
      if (resume === undefined)
        emit({ type: 'match-start', home: 'Home Player', away: 'Away Player', server: 'home' })
      const first = (resume?.afterPoint ?? 0) + 1
      after(10, () => playPoint(emit, first))
    },
    stop() {
      stopped = true
      for (const timer of timers) clearTimeout(timer)
      timers.clear()
    },
  }
}
