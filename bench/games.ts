/**
 * Many games benchmark: how bet latency, heartbeat traffic, memory, CPU and a node's restart time
 * change with the number of live matches. For each match count a fresh stack runs on a real
 * 3-server cluster: one trader process playing that many simulated tennis matches at the feed's
 * pace (`--time-scale`; `TRADER_GAMES`, their starts staggered over one point cycle, at least
 * 10 s), two API node processes, one settlement node process, and in this process the load
 * generator beside a read-only replica of every game.
 *
 * Once every match has opened its first point (the replica here holds its `p1-winner` market), and
 * no sooner than 5 s past the start spread after the trader's spawn whatever the count (so every
 * run starts on an equally settled stack), an open-loop load (sends on a fixed schedule whatever
 * the replies) places bets at one rate, spread uniformly over the games: each bet goes to a random
 * game among those whose latest point-winner market is open as this process's replica shows it, at
 * the price shown there, policy `any` (when no game has one open, to the latest market of a random
 * game, and refused: with one match, that is from each serve until the next point opens). After a
 * warm-up, several measured windows run back to back;
 * per window, HDR histograms of accepted bets give the provisional verdict (reply) and the final
 * verdict (first `final` status on the user's status subject), both from the scheduled send.
 * Refusals (an `ok` reply whose verdict refuses the bet, MARKET_NOT_OPEN when a point closed
 * between the look and the stamp) and errors are counted by code, out of the histograms. During
 * the windows it also counts the heartbeat messages heard on `heartbeat.<region>.writers` (a trader
 * process sends one per round for all its games), reads the trader's own count of beats sent
 * (`trader_beats_total` on its /metrics) and what reading beats costs each API and settlement node
 * (its `<kind>_games_beat_seconds` and `<kind>_games_beat_heartbeats`), and samples each process's RSS (/proc/<pid>/status) and
 * CPU time (/proc/<pid>/stat), each node's event-loop lag (its /metrics, read only at the window
 * boundaries) and this process's own (a reply read late counts its delay into the latencies). After the windows, once a snapshot round has covered every match,
 * one API node is stopped and a new one with the same id started: the time from its spawn until
 * its /readyz says ready (replicas restored from the snapshots, streams caught up) is reported,
 * with the games it then holds.
 *
 * The 1-game run is the baseline, measured in the same invocation under the same load: the table
 * gives every count's p99s as a multiple of its.
 *
 *   npm run bench:games                           # 1, 10, 100, 500 games; 1,000 bets/s; 5 s + 3 x 20 s
 *   npm run bench:games -- --games 1,100 --rate 500 --window-s 30 --windows 5 --json out.json
 */

import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { jetstreamManager } from '@nats-io/jetstream'
import type { NatsConnection, Subscription } from '@nats-io/transport-node'
import pino from 'pino'
import { AFTER_ALL_STAMPS, createHlc, type Prices, transitionAt, yjsBackend } from '../crdt/index.ts'
import { createPrng } from '../nodes/fabric/prng.ts'
import { createReplicaSync, type ReplicaSync } from '../nodes/fabric/replica-sync.ts'
import { ensureFabric, LEDGER_STREAM_BYTES_MAX, limitsWithShards } from '../nodes/fabric/streams.ts'
import { natsTransport } from '../nodes/fabric/transport.ts'
import { WRITER_GAMES_MAX } from '../nodes/fabric/writer-beats.ts'
import { lastPoint, marketIds } from '../nodes/trader/point-markets.ts'
import { DEFAULT_SHARDS } from '../protocol/shards.ts'
import { names } from '../protocol/subjects.ts'
import { parseCommandLine, usageError } from '../scripts/command-line.ts'
import { freePorts, type NatsCluster, startNatsCluster } from '../scripts/nats-cluster.ts'
import { spawnNodeProcess, stopProcesses } from '../scripts/node-process.ts'
import { type BetTarget, type BetWindow, creditUsers, LIFTED_BET_LIMITS_ENV, placeBets } from './bet-load.ts'
import { latencyOver, percentileJson, round, spreadJson } from './bets-report.ts'
import { onLogEntries, PINO_WARN } from './node-log.ts'
import { nowUs } from './open-loop.ts'
import {
  CLOCK_TICKS_PER_SECOND,
  type CpuSample,
  cpuBetween,
  type ProcessKinds,
  rssBytes,
  sampleCpu,
} from './process-cpu.ts'
import {
  atBoundaries,
  formatMs,
  formatSpread,
  type Histogram,
  percentileMs,
  planSeconds,
  type Spread,
  type WindowPlan,
} from './windows.ts'

const REGION = 'eu'
const USERS = 500
const STAKE_CENTS = 100
const SHARDS = DEFAULT_SHARDS
const API_NODES = 2
/** The trader's heartbeat round (its default): one beat message per round per trader process. */
const HEARTBEAT_MS = 20
const TRADER_SEED = 1
/** The matches' starts are spread over at least this. */
const START_SPREAD_MIN_MS = 10_000
/** The simulated tennis's mean point cycle at time scale 1 (simulated-tennis.ts). */
const POINT_CYCLE_MS = 6_500
const SNAPSHOT_INTERVAL_MS = 5_000
/** The restart waits until a whole snapshot round has run since every match started, and this much more. */
const SNAPSHOT_MARGIN_MS = 2_000
const TRADER = 'trader-1'
/** The API node stopped and started again for the restore time. */
const RESTARTED_NODE = 'api-2'
const FIRST_MARKET = marketIds(1).winner
/** The load starts this long after it is planned, so the load and the sampling share one schedule. */
const PLAN_LEAD_MS = 200
const POLL_MS = 50
/** The sampling resolution of the generator's event-loop delay histogram. */
const LOOP_DELAY_RESOLUTION_MS = 1
const PROGRESS_MS = 2_000
const NODES_READY_TIMEOUT_MS = 90_000
const SNAPSHOTS_TIMEOUT_MS = 30_000
const RESTORE_TIMEOUT_MS = 120_000
const OPS_REQUEST_TIMEOUT_MS = 5_000
const CLOSE_TIMEOUT_MS = 30_000
const RESTORE_LINE_WAIT_MS = 1_000
/** Per match count, beyond the planned windows: the stack, crediting, the matches' start, drains, the restart. */
const PER_COUNT_BUDGET_S = 420

const FINAL_P99_GOAL_MS = 50
const PROVISIONAL_P99_RATIO_GOAL = 1.5
const NODE_RSS_GOAL_BYTES = 1024 ** 3
/** Heartbeat messages/s at the largest count may differ from the 1-game run's by this fraction at most. */
const BEATS_TOLERANCE = 0.1

const USAGE =
  `[--games n,n,... (1..${WRITER_GAMES_MAX}, distinct, must include 1: the baseline; default 1,10,100,500)] ` +
  '[--rate bets/s (1..50000, default 1000)] [--window-s s (1..600, default 20)] [--windows n (1..20, default 3)] ' +
  '[--warmup-s s (0..120, default 5)] [--time-scale x (0.01..1000, default 1)] [--ledger-checkpoint-s s (0..600, default 0: none)] ' +
  '[--json FILE] [--cpu-prof-dir DIR]'
const values = parseCommandLine(
  {
    /** Match counts, one fresh stack each. */
    games: { type: 'string', default: '1,10,100,500' },
    /** Bets per second, spread over the live games. */
    rate: { type: 'string', default: '1000' },
    /** Length of one measured window. */
    'window-s': { type: 'string', default: '20' },
    /** Measured windows per count, back to back; the p99 spread is over these. */
    windows: { type: 'string', default: '3' },
    /** Unmeasured load before a count's first window. */
    'warmup-s': { type: 'string', default: '5' },
    /**
     * The trader's TRADER_TIME_SCALE: at 1 its simulated tennis plays a point about every 6.5 s
     * (a 4 s betting window before each serve); real tennis plays one about every 30-40 s, near 0.2.
     */
    'time-scale': { type: 'string', default: '1' },
    /**
     * The settlement node's --ledger-checkpoint-ms, in seconds: the restarted API node then starts
     * its ledger from the checkpoints (0: none, it folds every entry).
     */
    'ledger-checkpoint-s': { type: 'string', default: '0' },
    /** Write the figures per count as JSON here. */
    json: { type: 'string' },
    /** Write V8 CPU profiles of the node processes here, to see where a match's time goes. */
    'cpu-prof-dir': { type: 'string' },
  },
  USAGE,
)
const PROFILE_ARGS = values['cpu-prof-dir'] ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof-dir']}`] : []
const isWhole = (text: string) => /^\d+$/.test(text.trim())
const COUNTS = values.games.split(',').map((text) => (isWhole(text) ? Number(text) : Number.NaN))
const RATE = Number(values.rate)
const WINDOW_S = Number(values['window-s'])
const WINDOWS = Number(values.windows)
const WARMUP_S = Number(values['warmup-s'])
const TIME_SCALE = Number(values['time-scale'])
const LEDGER_CHECKPOINT_S = Number(values['ledger-checkpoint-s'])
const inRange = (value: number, min: number, max: number) =>
  Number.isSafeInteger(value) && value >= min && value <= max
if (!COUNTS.every((count) => inRange(count, 1, WRITER_GAMES_MAX)))
  usageError(`--games must list match counts from 1 to ${WRITER_GAMES_MAX}: ${values.games}`, USAGE)
if (new Set(COUNTS).size !== COUNTS.length) usageError(`--games lists a count twice: ${values.games}`, USAGE)
if (!COUNTS.includes(1)) usageError('--games must include 1: the 1-game run is the baseline', USAGE)
if (!inRange(RATE, 1, 50_000))
  usageError(`--rate must be a whole number from 1 to 50000: ${values.rate}`, USAGE)
if (!inRange(WINDOW_S, 1, 600))
  usageError(`--window-s must be a whole number from 1 to 600: ${values['window-s']}`, USAGE)
if (!inRange(WINDOWS, 1, 20))
  usageError(`--windows must be a whole number from 1 to 20: ${values.windows}`, USAGE)
if (!inRange(WARMUP_S, 0, 120))
  usageError(`--warmup-s must be a whole number from 0 to 120: ${values['warmup-s']}`, USAGE)
if (!(Number.isFinite(TIME_SCALE) && TIME_SCALE >= 0.01 && TIME_SCALE <= 1000))
  usageError(`--time-scale must be a number from 0.01 to 1000: ${values['time-scale']}`, USAGE)
if (!inRange(LEDGER_CHECKPOINT_S, 0, 600))
  usageError(
    `--ledger-checkpoint-s must be a whole number from 0 to 600: ${values['ledger-checkpoint-s']}`,
    USAGE,
  )
COUNTS.sort((a, b) => a - b)
/**
 * The stagger spreads the matches' starts over this: at least one point cycle, so that the matches'
 * points are out of step as on a real match day (spread over less, their markets open and close in
 * bursts); every match has started about this long after the trader is ready.
 */
const START_SPREAD_MS = Math.max(START_SPREAD_MIN_MS, Math.round(POINT_CYCLE_MS / TIME_SCALE))
/**
 * No load starts sooner than this after the trader's spawn, whatever the count, so that every run
 * begins on a stack as settled as the largest one's (a cluster whose streams were just created
 * answers its first seconds of ledger appends slowly, and a 1-game run's match starts at once).
 */
const LOAD_AFTER_SPAWN_MS = START_SPREAD_MS + 5_000
const MATCHES_START_TIMEOUT_MS = START_SPREAD_MS + 60_000
const PLAN = { warmupS: WARMUP_S, windowS: WINDOW_S, windows: WINDOWS }

const KINDS = ['nats', 'trader', 'api', 'settlement', 'generator'] as const
type Kind = (typeof KINDS)[number]
/** The kinds whose processes are the fabric's nodes: the RSS goal is theirs. */
const NODE_KINDS: readonly NodeSpec['kind'][] = ['trader', 'api', 'settlement']

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const seconds = (ms: number) => (ms / 1000).toFixed(1)
const staggerOf = (games: number) => (games > 1 ? Math.floor(START_SPREAD_MS / (games - 1)) : 0)
const gameIdsOf = (games: number) => Array.from({ length: games }, (_, i) => `match-${i + 1}`)

// ---------------------------------------------------------------------------------------------
// The stack: cluster, node processes, and this process's read-only replicas.

interface NodeSpec {
  readonly name: string
  readonly kind: Exclude<Kind, 'nats' | 'generator'>
  readonly main: string
  readonly env: Readonly<Record<string, string>>
}

interface NodeProcess {
  readonly spec: NodeSpec
  readonly child: ChildProcess
  readonly opsUrl: string
  /** Date.now() at its spawn. */
  readonly spawnedAtMs: number
  /** Resolves with `games` and `fromSeq` from the node's "restored replicas from snapshots" line. */
  readonly restoredGames: Promise<{ readonly games: number; readonly fromSeq: number }>
  /** Resolves with the phases of its start from its "ready: caught up with its streams" line. */
  readonly startPhases: Promise<StartPhases>
}

/** How a node's start went, as it logs once ready (nodes/fabric/node-main.ts). */
interface StartPhases {
  /** From the process's start until ready. */
  readonly processMs: number
  /** Its start: restoring replicas from snapshots, opening its streams. */
  readonly startMs: number
  /** From then until it had caught up with its streams. */
  readonly catchUpMs: number
  /** Within that, when each readiness check (the fabric stream, the ledger) was met. */
  readonly metAfterMs: Readonly<Record<string, number>>
}

interface Stack {
  readonly games: number
  readonly gameIds: readonly string[]
  readonly cluster: NatsCluster
  /** The load generator's connection. */
  readonly nc: NatsConnection
  readonly replicas: ReplicaSync
  readonly snapshots: Awaited<ReturnType<typeof ensureFabric>>['snapshots']
  readonly nodes: Map<string, NodeProcess>
  readonly kinds: ProcessKinds<Kind>
  /** Heartbeat messages heard on the region's beat subject since the stack started. */
  beatsHeard(): number
  /** Throws if a node process exited that was not stopped on purpose. */
  assertAlive(): void
  startNode(spec: NodeSpec): Promise<NodeProcess>
  stopNode(name: string): Promise<void>
  close(): Promise<void>
}

/** The line a node logs (at info) once it restored its replicas from the snapshots. */
const RESTORED_MESSAGE = 'restored replicas from snapshots'
const READY_MESSAGE = 'ready: caught up with its streams'
/** Warnings and errors a node logs that are echoed here (on stderr), per node process. */
const ECHOED_LOG_LINES_MAX = 10

/**
 * Read a node's log lines (pino JSON on stdout): echo its first warnings and errors on stderr (none
 * once it is being stopped), and resolve what its "restored replicas from snapshots" and "ready"
 * lines say once it logs them.
 */
function readNodeLog(
  name: string,
  child: ChildProcess,
  stopping: () => boolean,
): Pick<NodeProcess, 'restoredGames' | 'startPhases'> {
  let restored: (restore: { games: number; fromSeq: number }) => void = () => {}
  let ready: (phases: StartPhases) => void = () => {}
  const restoredGames = new Promise<{ games: number; fromSeq: number }>((resolve) => {
    restored = resolve
  })
  const startPhases = new Promise<StartPhases>((resolve) => {
    ready = resolve
  })
  let echoed = 0
  onLogEntries(child, (entry, line) => {
    if (
      entry.msg === RESTORED_MESSAGE &&
      typeof entry.games === 'number' &&
      typeof entry.fromSeq === 'number'
    )
      restored({ games: entry.games, fromSeq: entry.fromSeq })
    const { processMs, startMs, catchUpMs, metAfterMs } = entry
    if (
      entry.msg === READY_MESSAGE &&
      typeof processMs === 'number' &&
      typeof startMs === 'number' &&
      typeof catchUpMs === 'number'
    ) {
      const met = typeof metAfterMs === 'object' && metAfterMs !== null ? metAfterMs : {}
      ready({
        processMs,
        startMs,
        catchUpMs,
        metAfterMs: Object.fromEntries(
          Object.entries(met).filter((pair): pair is [string, number] => typeof pair[1] === 'number'),
        ),
      })
    }
    // A node being stopped warns of requests its closing connection cut short: not news.
    if (typeof entry.level !== 'number' || entry.level < PINO_WARN || stopping()) return
    if (echoed < ECHOED_LOG_LINES_MAX) process.stderr.write(`[${name}] ${line.slice(0, 600)}\n`)
    else if (echoed === ECHOED_LOG_LINES_MAX)
      process.stderr.write(`[${name}] (further warnings and errors of ${name} not shown)\n`)
    echoed++
  })
  return { restoredGames, startPhases }
}

async function startStack(games: number, dir: string): Promise<Stack> {
  const cluster = await startNatsCluster()
  const nodes = new Map<string, NodeProcess>()
  const stopped = new Set<ChildProcess>()
  const exits: string[] = []
  let closing = false
  let beats = 0
  let beatSub: Subscription | undefined
  let replicas: ReplicaSync | undefined
  const connections: NatsConnection[] = []
  const servers = cluster.servers.join(',')

  const startNode = async (spec: NodeSpec): Promise<NodeProcess> => {
    const [port] = await freePorts(1)
    const child = spawnNodeProcess({
      main: spec.main,
      nodeId: spec.name,
      region: REGION,
      shards: SHARDS,
      nodeArgs: PROFILE_ARGS,
      env: {
        FABRIC_NATS_SERVERS: servers,
        FABRIC_OPS_PORT: String(port),
        LOG_LEVEL: 'warn',
        ...spec.env,
      },
    })
    const { restoredGames, startPhases } = readNodeLog(spec.name, child, () => closing || stopped.has(child))
    child.stderr?.on('data', (chunk: Buffer) => process.stderr.write(`[${spec.name}] ${chunk}`))
    child.once('exit', (code, signal) => {
      if (!closing && !stopped.has(child)) exits.push(`${spec.name} exited (${code ?? signal})`)
    })
    const node = {
      spec,
      child,
      opsUrl: `http://127.0.0.1:${port}`,
      spawnedAtMs: Date.now(),
      restoredGames,
      startPhases,
    }
    nodes.set(spec.name, node)
    return node
  }
  const children = () => [...nodes.values()].map((node) => node.child)
  const pidsOf = (kind: Kind) => () =>
    [...nodes.values()].filter((n) => n.spec.kind === kind).map((n) => n.child.pid)

  let closed: Promise<void> | undefined
  const close = () =>
    (closed ??= (async () => {
      closing = true
      beatSub?.unsubscribe()
      await replicas?.close().catch(() => undefined)
      await stopProcesses(children())
      for (const nc of connections) await nc.close().catch(() => undefined)
      await cluster.close()
    })())

  try {
    const connect = async (name: string) => {
      // As on the nodes' own connections (nodes/fabric/node-main.ts): no Error built per request.
      const nc = await cluster.connect({ name, noAsyncTraces: true })
      connections.push(nc)
      return nc
    }
    const nc = await connect('bench-generator')
    const watchNc = await connect('bench-watcher')
    const { snapshots } = await ensureFabric(watchNc, REGION, limitsWithShards(SHARDS))
    beatSub = watchNc.subscribe(names.beatSubject(REGION), { callback: () => void beats++ })
    await startNode({
      name: TRADER,
      kind: 'trader',
      main: 'nodes/trader/main.ts',
      env: {
        TRADER_GAMES: String(games),
        TRADER_SEED: String(TRADER_SEED),
        TRADER_STAGGER_MS: String(staggerOf(games)),
        TRADER_TIME_SCALE: String(TIME_SCALE),
        TRADER_HEARTBEAT_MS: String(HEARTBEAT_MS),
        TRADER_SNAPSHOT_INTERVAL_MS: String(SNAPSHOT_INTERVAL_MS),
      },
    })
    for (let i = 1; i <= API_NODES; i++)
      await startNode({
        name: `api-${i}`,
        kind: 'api',
        main: 'nodes/api/main.ts',
        env: LIFTED_BET_LIMITS_ENV,
      })
    await startNode({
      name: 'settle-1',
      kind: 'settlement',
      main: 'nodes/settlement/main.ts',
      env: {
        SETTLEMENT_DATABASE: join(dir, `settle-1-${games}.db`),
        SETTLEMENT_LEDGER_CHECKPOINT_MS: String(LEDGER_CHECKPOINT_S * 1000),
      },
    })
    replicas = await createReplicaSync({
      transport: natsTransport(watchNc, snapshots),
      region: REGION,
      backend: yjsBackend,
      hlc: createHlc({ node: 'bench-games' }),
      log: pino({ level: 'warn' }),
    })
    const kinds: ProcessKinds<Kind> = {
      nats: () => cluster.processes.map((server) => server.pid),
      trader: pidsOf('trader'),
      api: pidsOf('api'),
      settlement: pidsOf('settlement'),
      // The load generator and this process's read-only replicas of every game.
      generator: () => [process.pid],
    }
    return {
      games,
      gameIds: gameIdsOf(games),
      cluster,
      nc,
      replicas,
      snapshots,
      nodes,
      kinds,
      beatsHeard: () => beats,
      assertAlive() {
        if (exits.length > 0) throw new Error(`a node process fell over: ${exits.join('; ')}`)
      },
      startNode,
      async stopNode(name) {
        const node = nodes.get(name)
        if (node === undefined) return
        stopped.add(node.child)
        await stopProcesses([node.child])
        nodes.delete(name)
      },
      close,
    }
  } catch (error) {
    await close()
    throw error
  }
}

// ---------------------------------------------------------------------------------------------
// Ops endpoints.

async function getOps(url: string): Promise<Response> {
  return fetch(url, { signal: AbortSignal.timeout(OPS_REQUEST_TIMEOUT_MS) })
}

/** Where the node's reading of each stream stands (its /debug/state), for a failure message. */
async function streamsOf(node: NodeProcess): Promise<string> {
  try {
    const state = (await (await getOps(`${node.opsUrl}/debug/state?replicas-only=1`)).json()) as {
      streams?: Record<string, unknown>
    }
    return JSON.stringify(state.streams ?? {})
  } catch (error) {
    return `unknown (${(error as Error).message})`
  }
}

/** Resolves once the node's /readyz answers ready; throws after `timeoutMs`, or if the node exits. */
async function waitReady(node: NodeProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = 'no answer from its ops server'
  for (;;) {
    if (node.child.exitCode !== null || node.child.signalCode !== null)
      throw new Error(`${node.spec.name} exited before it was ready`)
    try {
      const response = await getOps(`${node.opsUrl}/readyz`)
      if (response.ok) return
      const body = (await response.json()) as { reasons?: unknown }
      last = Array.isArray(body.reasons) ? body.reasons.join('; ') : `status ${response.status}`
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline)
      throw new Error(
        `${node.spec.name} was not ready within ${seconds(timeoutMs)} s (${last}; its streams: ${await streamsOf(node)})`,
      )
    await sleep(POLL_MS)
  }
}

type NodeKind = NodeSpec['kind']

/** How late a process's event loop ran (ms), as its /metrics says for the time since the last read. */
interface LoopLag {
  readonly p99Ms: number
  readonly maxMs: number
}

interface NodesScrape {
  /** The trader's `trader_beats_total{result="sent"}`, or undefined if its /metrics did not answer. */
  readonly traderBeatsSent: number | undefined
  /**
   * Per kind, the worst of its processes' event-loop lag since the previous scrape: the client
   * library behind /metrics measures it every 10 ms and starts afresh at each read, and nothing but
   * these boundary samples reads it during a run.
   */
  readonly loopLag: Readonly<Partial<Record<NodeKind, LoopLag>>>
  /** Per kind, its processes' beat work so far (their `<kind>_games_beat_*` on /metrics), summed. */
  readonly beatWork: Readonly<Partial<Record<NodeKind, BeatWorkSum>>>
}

/** The node kinds that read other writers' beats (a trader passes over its own). */
const BEAT_READERS = ['api', 'settlement'] as const satisfies readonly NodeKind[]

const beatWorkText = (rate: BeatWorkRate | undefined) =>
  rate === undefined
    ? '-'
    : `${rate.msPerSPerNode.toFixed(1)} (${Math.round(rate.heartbeatsPerSPerNode).toLocaleString('en-US')})`

interface BeatWorkSum {
  readonly seconds: number
  readonly heartbeats: number
  readonly processes: number
}

/**
 * What beats cost a node kind over the windows, per process: ms per second, the final verdicts they
 * released included (so it grows with the bets as well as with the games), and the games'
 * heartbeats they carried per second.
 */
interface BeatWorkRate {
  readonly msPerSPerNode: number
  readonly heartbeatsPerSPerNode: number
}

function beatWorkOver(
  first: NodesScrape,
  last: NodesScrape,
  measuredS: number,
): Partial<Record<NodeKind, BeatWorkRate>> {
  const over: Partial<Record<NodeKind, BeatWorkRate>> = {}
  for (const [kind, end] of Object.entries(last.beatWork) as [NodeKind, BeatWorkSum][]) {
    const start = first.beatWork[kind]
    // A process that did not answer at one end would skew the difference: no figure then.
    if (start === undefined || start.processes !== end.processes) continue
    const seconds = end.seconds - start.seconds
    const heartbeats = end.heartbeats - start.heartbeats
    over[kind] = {
      msPerSPerNode: (seconds * 1000) / measuredS / end.processes,
      heartbeatsPerSPerNode: heartbeats / measuredS / end.processes,
    }
  }
  return over
}

const metricValue = (text: string, name: string) => {
  const value = new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]
  return value === undefined ? undefined : Number(value)
}

/** The windows' lags (each sample's covers the window it ends), per kind: the worst p99, and the max. */
function loopLagOver(ends: readonly BoundarySample[]): Partial<Record<NodeKind, LoopLag>> {
  const over: Partial<Record<NodeKind, LoopLag>> = {}
  for (const { nodes } of ends)
    for (const [kind, lag] of Object.entries(nodes.loopLag) as [NodeKind, LoopLag][]) {
      const known = over[kind]
      over[kind] = {
        p99Ms: Math.max(known?.p99Ms ?? 0, lag.p99Ms),
        maxMs: Math.max(known?.maxMs ?? 0, lag.maxMs),
      }
    }
  return over
}

async function ledgerBytes(stack: Stack): Promise<number | undefined> {
  try {
    const jsm = await jetstreamManager(stack.nc)
    let bytes = 0
    for (let shard = 0; shard < SHARDS; shard++)
      bytes += (await jsm.streams.info(names.ledgerStream(REGION, shard))).state.bytes
    return bytes
  } catch {
    return undefined
  }
}

/** The ledger messages a node has read, over every shard (its own /metrics), or undefined. */
async function ledgerMessagesRead(node: NodeProcess): Promise<number | undefined> {
  try {
    const text = await (await getOps(`${node.opsUrl}/metrics`)).text()
    const counts = [...text.matchAll(/^ledger_shard_messages_read_total\{shard="\d+"\} (\S+)$/gm)]
    return counts.length === 0 ? undefined : counts.reduce((sum, match) => sum + Number(match[1]), 0)
  } catch {
    return undefined
  }
}

async function scrapeNodes(stack: Stack): Promise<NodesScrape> {
  let traderBeatsSent: number | undefined
  const loopLag: Partial<Record<NodeKind, LoopLag>> = {}
  const beatWork: Partial<Record<NodeKind, BeatWorkSum>> = {}
  await Promise.all(
    [...stack.nodes.values()].map(async (node) => {
      let text: string
      try {
        text = await (await getOps(`${node.opsUrl}/metrics`)).text()
      } catch {
        return
      }
      if (node.spec.kind === 'trader')
        traderBeatsSent = metricValue(text, 'trader_beats_total\\{result="sent"\\}')
      const seconds = metricValue(text, '\\w+_games_beat_seconds')
      const heartbeats = metricValue(text, '\\w+_games_beat_heartbeats')
      if (seconds !== undefined && heartbeats !== undefined) {
        const known = beatWork[node.spec.kind]
        beatWork[node.spec.kind] = {
          seconds: (known?.seconds ?? 0) + seconds,
          heartbeats: (known?.heartbeats ?? 0) + heartbeats,
          processes: (known?.processes ?? 0) + 1,
        }
      }
      const p99 = metricValue(text, '\\w+_nodejs_eventloop_lag_p99_seconds')
      const max = metricValue(text, '\\w+_nodejs_eventloop_lag_max_seconds')
      if (p99 === undefined || max === undefined) return
      const known = loopLag[node.spec.kind]
      loopLag[node.spec.kind] = {
        p99Ms: Math.max(known?.p99Ms ?? 0, p99 * 1000),
        maxMs: Math.max(known?.maxMs ?? 0, max * 1000),
      }
    }),
  )
  return { traderBeatsSent, loopLag, beatWork }
}

// ---------------------------------------------------------------------------------------------
// Where the bets go.

interface LatestMarket {
  readonly marketId: string
  readonly prices: Prices
}

/**
 * Each game's latest point-winner market as this process's replica shows it, kept up to date as
 * updates arrive; the games whose one is open are kept apart for the picks.
 */
function trackMarkets(replicas: ReplicaSync, seed: number) {
  const prng = createPrng(seed)
  const latest = new Map<string, LatestMarket>()
  const live: string[] = []
  const open: string[] = []
  const openAt = new Map<string, number>()
  const setOpen = (gameId: string, isOpen: boolean) => {
    const at = openAt.get(gameId)
    if (isOpen && at === undefined) {
      openAt.set(gameId, open.length)
      open.push(gameId)
    } else if (!isOpen && at !== undefined) {
      const moved = open.pop() as string
      if (moved !== gameId) {
        open[at] = moved
        openAt.set(moved, at)
      }
      openAt.delete(gameId)
    }
  }
  const refresh = (gameId: string) => {
    const game = replicas.replica(gameId)?.game
    if (game === undefined) return
    const point = lastPoint(game)
    if (point === 0) return
    const marketId = marketIds(point).winner
    const shown = transitionAt(game, marketId, AFTER_ALL_STAMPS)
    if (shown === null || Object.keys(shown.prices).length === 0) return
    if (!latest.has(gameId)) live.push(gameId)
    latest.set(gameId, { marketId, prices: shown.prices })
    setOpen(gameId, shown.status === 'open')
  }
  for (const gameId of replicas.games()) refresh(gameId)
  const stop = replicas.onChange((change) => {
    if (change.source === 'stream' && change.result.added > 0) refresh(change.gameId)
  })
  return {
    openGames: () => open.length,
    /** Bet `i`: a random game with its latest market open, else a random live game's latest market. */
    target(i: number): BetTarget {
      const gameId = open.length > 0 ? prng.pick(open) : live.length > 0 ? prng.pick(live) : undefined
      const market = gameId === undefined ? undefined : latest.get(gameId)
      if (gameId === undefined || market === undefined)
        return { gameId: 'match-1', marketId: FIRST_MARKET, selectionId: 'home', odds: 1_001 }
      const selections = Object.keys(market.prices)
      const selectionId = selections[i % selections.length] as string
      return { gameId, marketId: market.marketId, selectionId, odds: market.prices[selectionId] as number }
    },
    stop,
  }
}

/** Resolves once every match has opened its first point in this process's replicas. */
async function waitForMatches(stack: Stack): Promise<void> {
  const startedAt = Date.now()
  const deadline = startedAt + MATCHES_START_TIMEOUT_MS
  let lastProgress = startedAt
  for (;;) {
    stack.assertAlive()
    const missing = stack.gameIds.filter((id) => !stack.replicas.replica(id)?.game.markets.has(FIRST_MARKET))
    const started = stack.games - missing.length
    if (missing.length === 0) {
      console.log(`  all ${stack.games} matches started (${seconds(Date.now() - startedAt)} s)`)
      return
    }
    if (Date.now() > deadline)
      throw new Error(
        `only ${started} of ${stack.games} matches started within ${seconds(MATCHES_START_TIMEOUT_MS)} s ` +
          `(no ${FIRST_MARKET} market in this process's replica of ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''})`,
      )
    if (Date.now() - lastProgress >= PROGRESS_MS) {
      lastProgress = Date.now()
      console.log(
        `  waiting for the matches to start: ${started}/${stack.games} (${seconds(Date.now() - startedAt)} s)`,
      )
    }
    await sleep(250)
  }
}

// ---------------------------------------------------------------------------------------------
// Measuring one match count.

interface BoundarySample {
  readonly atUs: number
  readonly cpu: CpuSample<Kind>
  /** The most RSS one process of the kind holds, bytes. */
  readonly rss: Readonly<Record<Kind, number | undefined>>
  readonly beatsHeard: number
  readonly nodes: NodesScrape
  /** What the region's ledger shard streams hold, bytes, or undefined if a stream did not answer. */
  readonly ledgerBytes: number | undefined
}

async function sample(stack: Stack): Promise<BoundarySample> {
  const rss = {} as Record<Kind, number | undefined>
  for (const kind of KINDS) {
    const each = stack.kinds[kind]().flatMap((pid) => {
      const bytes = pid === undefined ? undefined : rssBytes(pid)
      return bytes === undefined ? [] : [bytes]
    })
    rss[kind] = each.length === 0 ? undefined : Math.max(...each)
  }
  return {
    atUs: nowUs(),
    cpu: sampleCpu(stack.kinds),
    rss,
    beatsHeard: stack.beatsHeard(),
    nodes: await scrapeNodes(stack),
    ledgerBytes: await ledgerBytes(stack),
  }
}

interface WindowFigures {
  readonly provisionalP50Ms: number | undefined
  readonly provisionalP99Ms: number | undefined
  readonly finalP50Ms: number | undefined
  readonly finalP99Ms: number | undefined
  readonly ok: number
  readonly refused: number
  readonly errors: number
}

interface Restore {
  /** From the new process's spawn until its /readyz said ready. */
  readonly readyMs: number
  /** Games in its replicas once ready (its /debug/state). */
  readonly gamesHeld: number
  /** Games its "restored replicas from snapshots" log line named, if it logged one. */
  readonly gamesRestored: number | undefined
  /** Where the time went, as the node logged it once ready (undefined if the line did not come). */
  readonly phases: StartPhases | undefined
  /** Fabric messages from the sequence its snapshots left it at to where it stood once ready. */
  readonly fabricReplayed: number | undefined
  /** Ledger messages the new process read until ready (its ledger_shard_messages_read_total). */
  readonly ledgerRead: number | undefined
}

interface CountResult {
  readonly games: number
  readonly staggerMs: number
  /** From the trader's spawn until every match had opened its first point here. */
  readonly startS: number
  readonly offered: number
  /** Accepted bets per second over the measured windows. */
  readonly served: number
  readonly windows: readonly WindowFigures[]
  readonly provisional: Histogram
  readonly provisionalP99Windows: Spread | undefined
  readonly final: Histogram
  readonly finalP99Windows: Spread | undefined
  readonly ok: number
  readonly refusedByReason: ReadonlyMap<string, number>
  readonly errorsByCode: ReadonlyMap<string, number>
  readonly finalsMissing: number
  readonly beatsHeardPerS: number
  readonly traderBeatsPerS: number | undefined
  /** What one heartbeat message per game and round would be. */
  readonly perGameBeatsPerS: number
  readonly rssMaxBytes: Readonly<Record<Kind, number | undefined>>
  readonly cpuPercent: Readonly<Record<Kind, number>>
  /**
   * How late this process's event loop ran its callbacks over the windows (p99 and max, ms): a
   * reply the generator reads late counts that delay into the latencies, so this says how much of
   * them the generator's own work (its replicas of every game) may be.
   */
  readonly generatorLoopDelayMs: { readonly p99: number; readonly max: number }
  /**
   * Ledger stream bytes per accepted bet over the windows: its placement, its settlement, and their
   * share of the messages they went in.
   */
  readonly ledgerBytesPerBet: number | undefined
  /** The most the ledger shard streams held at a window boundary, bytes (purges below checkpoints take it down). */
  readonly ledgerBytesHeldMax: number | undefined
  /** Per node kind, the worst window's p99 and the max of the event-loop lag over the windows. */
  readonly loopLagMs: Readonly<Partial<Record<NodeKind, LoopLag>>>
  /** Per node kind, what writers' beats cost each of its processes over the windows. */
  readonly beatWork: Readonly<Partial<Record<NodeKind, BeatWorkRate>>>
  readonly restore: Restore | { readonly error: string }
}

interface Failed {
  readonly games: number
  readonly error: string
}

const sumOf = (maps: readonly ReadonlyMap<string, number>[]) => {
  const total = new Map<string, number>()
  for (const map of maps) for (const [code, n] of map) total.set(code, (total.get(code) ?? 0) + n)
  return total
}
const total = (map: ReadonlyMap<string, number>) => [...map.values()].reduce((sum, n) => sum + n, 0)

function windowFigures(window: BetWindow): WindowFigures {
  return {
    provisionalP50Ms: percentileMs(window.provisional, 50),
    provisionalP99Ms: percentileMs(window.provisional, 99),
    finalP50Ms: percentileMs(window.final, 50),
    finalP99Ms: percentileMs(window.final, 99),
    ok: window.served,
    refused: total(window.refused),
    errors: total(window.errors),
  }
}

async function measureLoad(stack: Stack, startS: number): Promise<Omit<CountResult, 'restore'>> {
  const markets = trackMarkets(stack.replicas, TRADER_SEED + stack.games)
  const plan: WindowPlan = { ...PLAN, startUs: nowUs() + PLAN_LEAD_MS * 1000 }
  const samples: BoundarySample[] = []
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS })
  console.log(
    `  ${RATE} bets/s over ${stack.games} games: ${WARMUP_S} s warm-up, then ${WINDOWS} windows of ${WINDOW_S} s`,
  )
  try {
    const [bets] = await Promise.all([
      placeBets(stack.nc, {
        rate: RATE,
        plan,
        target: (i) => markets.target(i),
        users: USERS,
        shards: SHARDS,
        stakeCents: STAKE_CENTS,
        tag: `g${stack.games}`,
        verdictRefusals: true,
      }),
      atBoundaries(
        plan,
        async () => {
          stack.assertAlive()
          const each = await sample(stack)
          // From the first boundary (the warm-up's end) to the last: the measured windows.
          if (samples.length === 0) loopDelay.enable()
          samples.push(each)
          if (samples.length === WINDOWS + 1) loopDelay.disable()
          return each
        },
        (index) => {
          const [before, after] = [samples[index], samples[index + 1]]
          if (before === undefined || after === undefined) return
          const s = (after.atUs - before.atUs) / 1e6
          console.log(
            `  window ${index + 1}/${WINDOWS} done: heartbeat messages ${((after.beatsHeard - before.beatsHeard) / s).toFixed(1)}/s, ` +
              `games with an open point market now ${markets.openGames()}/${stack.games}, trader RSS ${mib(after.rss.trader)} MiB`,
          )
        },
      ),
    ])
    stack.assertAlive()
    const first = samples[0]!
    const last = samples[samples.length - 1]!
    const measuredS = (last.atUs - first.atUs) / 1e6
    const cpu = cpuBetween(first.cpu, last.cpu)
    const rssMaxBytes = {} as Record<Kind, number | undefined>
    for (const kind of KINDS) {
      const each = samples.flatMap((s) => (s.rss[kind] === undefined ? [] : [s.rss[kind]]))
      rssMaxBytes[kind] = each.length === 0 ? undefined : Math.max(...each)
    }
    const ok = bets.reduce((sum, window) => sum + window.served, 0)
    const windows = bets.map(windowFigures)
    for (const [i, w] of windows.entries())
      console.log(
        `  window ${i + 1}: provisional p50 / p99 ${formatMs(w.provisionalP50Ms)} / ${formatMs(w.provisionalP99Ms)} ms, ` +
          `final p50 / p99 ${formatMs(w.finalP50Ms)} / ${formatMs(w.finalP99Ms)} ms, ok ${w.ok}, refused ${w.refused}, errors ${w.errors}`,
      )
    return {
      games: stack.games,
      staggerMs: staggerOf(stack.games),
      startS,
      offered: RATE,
      served: ok / (WINDOWS * WINDOW_S),
      windows,
      ...latencyOver(bets),
      ok,
      refusedByReason: sumOf(bets.map((w) => w.refused)),
      errorsByCode: sumOf(bets.map((w) => w.errors)),
      finalsMissing: bets.reduce((sum, w) => sum + w.finalsMissing, 0),
      beatsHeardPerS: (last.beatsHeard - first.beatsHeard) / measuredS,
      traderBeatsPerS:
        first.nodes.traderBeatsSent === undefined || last.nodes.traderBeatsSent === undefined
          ? undefined
          : (last.nodes.traderBeatsSent - first.nodes.traderBeatsSent) / measuredS,
      perGameBeatsPerS: (stack.games * 1000) / HEARTBEAT_MS,
      rssMaxBytes,
      cpuPercent: Object.fromEntries(
        KINDS.map((kind) => [kind, (cpu[kind] / (measuredS * 1e6)) * 100]),
      ) as Record<Kind, number>,
      generatorLoopDelayMs: { p99: loopDelay.percentile(99) / 1e6, max: loopDelay.max / 1e6 },
      loopLagMs: loopLagOver(samples.slice(1)),
      beatWork: beatWorkOver(first.nodes, last.nodes, measuredS),
      // With checkpoints the streams are purged as they grow: what they gain is not what a bet takes.
      ledgerBytesPerBet:
        LEDGER_CHECKPOINT_S > 0 ||
        first.ledgerBytes === undefined ||
        last.ledgerBytes === undefined ||
        ok === 0
          ? undefined
          : (last.ledgerBytes - first.ledgerBytes) / ok,
      ledgerBytesHeldMax: samples.some((each) => each.ledgerBytes === undefined)
        ? undefined
        : Math.max(...samples.map((each) => each.ledgerBytes ?? 0)),
    }
  } finally {
    loopDelay.disable()
    markets.stop()
  }
}

/** Every game's snapshot is in the bucket. */
async function snapshotsWritten(stack: Stack): Promise<boolean> {
  const present = await Promise.all(
    stack.gameIds.map(async (gameId) => (await stack.snapshots.get(names.snapshotKey(gameId))) !== null),
  )
  return present.every(Boolean)
}

/** Stop one API node once the snapshots cover every match, start it again, time it until ready. */
async function measureRestore(stack: Stack, allStartedAtMs: number): Promise<Restore> {
  const waitMs = allStartedAtMs + SNAPSHOT_INTERVAL_MS + SNAPSHOT_MARGIN_MS - Date.now()
  if (waitMs > 0) {
    console.log(`  waiting ${seconds(waitMs)} s: a snapshot round must have run since every match started`)
    await sleep(waitMs)
  }
  const deadline = Date.now() + SNAPSHOTS_TIMEOUT_MS
  while (!(await snapshotsWritten(stack))) {
    if (Date.now() > deadline)
      throw new Error(`the snapshot bucket lacks a game's snapshot after ${seconds(SNAPSHOTS_TIMEOUT_MS)} s`)
    await sleep(500)
  }
  const old = stack.nodes.get(RESTARTED_NODE)
  if (old === undefined) throw new Error(`no ${RESTARTED_NODE} to restart`)
  console.log(`  stopping ${RESTARTED_NODE} and starting it again`)
  await stack.stopNode(RESTARTED_NODE)
  const spawnedAt = performance.now()
  const fresh = await stack.startNode({ ...old.spec, env: { ...old.spec.env, LOG_LEVEL: 'info' } })
  await waitReady(fresh, RESTORE_TIMEOUT_MS)
  const readyMs = performance.now() - spawnedAt
  const state = (await (await getOps(`${fresh.opsUrl}/debug/state?replicas-only=1`)).json()) as {
    replicas?: Record<string, unknown>
    streams?: { fabric?: { lastSeq?: number } }
  }
  // The node logs the line before its ops server listens; give the pipe a moment to carry it.
  const restored = await Promise.race([
    fresh.restoredGames,
    sleep(RESTORE_LINE_WAIT_MS).then(() => undefined),
  ])
  const gamesRestored = restored?.games
  const phases = await Promise.race([fresh.startPhases, sleep(RESTORE_LINE_WAIT_MS).then(() => undefined)])
  // What it replayed of the fabric stream past its snapshots, up to where it stood once ready.
  const readyAtSeq = state.streams?.fabric?.lastSeq
  const fabricReplayed =
    restored !== undefined && readyAtSeq !== undefined
      ? Math.max(0, readyAtSeq - restored.fromSeq + 1)
      : undefined
  const restore = {
    readyMs,
    gamesHeld: Object.keys(state.replicas ?? {}).length,
    gamesRestored,
    phases,
    fabricReplayed,
    ledgerRead: await ledgerMessagesRead(fresh),
  }
  const phasesText = phases
    ? `; its own account: process ${phases.processMs} ms, of which start (snapshots restored, streams opened) ${phases.startMs} ms and catching up ${phases.catchUpMs} ms (${
        Object.entries(phases.metAfterMs)
          .map(([check, ms]) => `${check} after ${ms} ms`)
          .join(', ') || 'every check met at once'
      })`
    : ''
  const replayedText =
    (fabricReplayed === undefined ? '' : `; ${fabricReplayed} fabric messages replayed past the snapshots`) +
    (restore.ledgerRead === undefined ? '' : `; ${restore.ledgerRead} ledger messages read`)
  console.log(
    `  ${RESTARTED_NODE} ready ${Math.round(readyMs)} ms after its spawn, holding ${restore.gamesHeld} games (${gamesRestored ?? 'none'} restored from snapshots)${phasesText}${replayedText}`,
  )
  return restore
}

async function runCount(games: number, dir: string, track: (stack: Stack | undefined) => void) {
  console.log(
    `\n${games} game${games === 1 ? '' : 's'}: fresh stack (3 nats-servers, trader with TRADER_GAMES=${games} and stagger ${staggerOf(games)} ms, ${API_NODES} API nodes, 1 settlement node)`,
  )
  const stack = await startStack(games, dir)
  track(stack)
  try {
    for (const node of stack.nodes.values()) await waitReady(node, NODES_READY_TIMEOUT_MS)
    await creditUsers(stack.nc, { users: USERS, shards: SHARDS })
    await waitForMatches(stack)
    const allStartedAtMs = Date.now()
    const traderSpawnedAtMs = stack.nodes.get(TRADER)?.spawnedAtMs ?? allStartedAtMs
    const settleMs = traderSpawnedAtMs + LOAD_AFTER_SPAWN_MS - Date.now()
    if (settleMs > 0) {
      console.log(
        `  settling ${seconds(settleMs)} s more: every count's load starts at least ${seconds(LOAD_AFTER_SPAWN_MS)} s after the trader's spawn`,
      )
      await sleep(settleMs)
    }
    const result = await measureLoad(stack, (allStartedAtMs - traderSpawnedAtMs) / 1000)
    let restore: CountResult['restore']
    try {
      restore = await measureRestore(stack, allStartedAtMs)
    } catch (error) {
      restore = { error: (error as Error).message }
      console.log(`  restore not measured: ${restore.error}`)
    }
    return { ...result, restore }
  } finally {
    await stack.close()
    track(undefined)
  }
}

// ---------------------------------------------------------------------------------------------
// Reporting.

const mib = (bytes: number | undefined) => (bytes === undefined ? '-' : String(Math.round(bytes / 1024 ** 2)))
const ratio = (value: number | undefined, base: number | undefined) =>
  value === undefined || base === undefined || base === 0 ? undefined : value / base
const formatRatio = (value: number | undefined) => (value === undefined ? '-' : `${value.toFixed(2)}x`)
const codesText = (map: ReadonlyMap<string, number>) =>
  map.size === 0 ? '0' : [...map].map(([code, n]) => `${code} ${n}`).join(', ')
/** The region's ledger budget from empty at the accepted rate, in minutes (docs/operations.md). */
const ledgerFullAfterMin = (r: CountResult) =>
  r.ledgerBytesPerBet === undefined || r.ledgerBytesPerBet <= 0 || r.served <= 0
    ? undefined
    : LEDGER_STREAM_BYTES_MAX / r.ledgerBytesPerBet / r.served / 60
const ledgerText = (r: CountResult) =>
  `${r.ledgerBytesPerBet === undefined ? '-' : `${Math.round(r.ledgerBytesPerBet)} (${ledgerFullAfterMin(r)?.toFixed(1) ?? '-'} min)`} | ${r.ledgerBytesHeldMax === undefined ? '-' : (r.ledgerBytesHeldMax / 1024 ** 2).toFixed(1)}`
const lagText = (lag: LoopLag | undefined) =>
  lag === undefined ? '-' : `${lag.p99Ms.toFixed(1)} / ${lag.maxMs.toFixed(1)}`
const isResult = (row: CountResult | Failed): row is CountResult => 'provisional' in row
const p99 = (h: Histogram) => percentileMs(h, 99)

function printTables(rows: readonly (CountResult | Failed)[]): void {
  const base = rows.find((row): row is CountResult => isResult(row) && row.games === 1)
  const results = rows.filter(isResult)
  for (const row of rows) if (!isResult(row)) console.log(`\n${row.games} games: FAILED: ${row.error}`)
  console.log(
    `\nlatency from the scheduled send, accepted bets only; "windows" is the p99's min / median / max over the windows; "x of 1 game" against the 1-game run`,
  )
  console.log(
    'games | stagger ms | all started s after trader spawn | offered/s | accepted/s | provisional p50 / p99 ms | provisional p99 windows | x of 1 game | final p50 / p99 ms | final p99 windows | x of 1 game',
  )
  for (const r of results) {
    console.log(
      `${r.games} | ${r.staggerMs} | ${r.startS.toFixed(1)} | ${r.offered} | ${Math.round(r.served)} | ` +
        `${formatMs(percentileMs(r.provisional, 50))} / ${formatMs(p99(r.provisional))} | ${formatSpread(r.provisionalP99Windows)} | ` +
        `${formatRatio(ratio(p99(r.provisional), base && p99(base.provisional)))} | ` +
        `${formatMs(percentileMs(r.final, 50))} / ${formatMs(p99(r.final))} | ${formatSpread(r.finalP99Windows)} | ` +
        `${formatRatio(ratio(p99(r.final), base && p99(base.final)))}`,
    )
  }
  console.log(
    '\nanswers over the measured windows: accepted, refused by the verdict (by reason), errors by code',
  )
  console.log(
    `games | accepted | refused | errors | finals missing | ledger bytes per accepted bet, settlement included (the region's ${Math.round(LEDGER_STREAM_BYTES_MAX / 1024 ** 2)} MiB ledger full after, at the accepted rate; "-" with checkpoints, whose purges take bytes away) | ledger MiB held, the most at a window boundary`,
  )
  for (const r of results)
    console.log(
      `${r.games} | ${r.ok} | ${codesText(r.refusedByReason)} | ${codesText(r.errorsByCode)} | ${r.finalsMissing} | ${ledgerText(r)}`,
    )
  console.log(
    `\nheartbeats over the measured windows (round ${HEARTBEAT_MS} ms; one trader process): messages heard on ${names.beatSubject(REGION)}, the trader's beats sent, and what one message per game and round would be`,
  )
  console.log(
    `games | heard msgs/s | trader beats/s per process | one-per-game msgs/s | beat work per node, ms/s, the final verdicts beats released included (games' heartbeats/s; nodes' own /metrics): ${BEAT_READERS.join(', ')}`,
  )
  for (const r of results)
    console.log(
      `${r.games} | ${r.beatsHeardPerS.toFixed(1)} | ${r.traderBeatsPerS?.toFixed(1) ?? '-'} | ${r.perGameBeatsPerS.toLocaleString('en-US')} | ` +
        BEAT_READERS.map((kind) => beatWorkText(r.beatWork[kind])).join(', '),
    )
  console.log(
    `\nresources over the measured windows: RSS, the most of one process of the kind over the window boundaries (VmRSS), and CPU, % of one core for all processes of the kind (3 nats-servers, 2 API nodes; clock tick 1/${CLOCK_TICKS_PER_SECOND} s); "generator" is this process: load generator and a read-only replica of every game`,
  )
  console.log(
    `games | RSS MiB ${KINDS.join(' / ')} | CPU % ${KINDS.join(' / ')} | event loop lag p99 / max ms (nodes' own /metrics, their 10 ms sampling period included; generator sampled every 1 ms): ${NODE_KINDS.join(', ')}, generator`,
  )
  for (const r of results)
    console.log(
      `${r.games} | ${KINDS.map((k) => mib(r.rssMaxBytes[k])).join(' / ')} | ${KINDS.map((k) => r.cpuPercent[k].toFixed(0)).join(' / ')} | ` +
        `${NODE_KINDS.map((k) => lagText(r.loopLagMs[k])).join(', ')}, ${lagText({ p99Ms: r.generatorLoopDelayMs.p99, maxMs: r.generatorLoopDelayMs.max })}`,
    )
  console.log(
    `\nrestart of ${RESTARTED_NODE} after the windows: from the new process's spawn until /readyz says ready (replicas restored from snapshots, streams caught up)`,
  )
  console.log('games | ready after ms | games held | games restored from snapshots | ledger messages read')
  for (const r of results) {
    if ('error' in r.restore) console.log(`${r.games} | failed: ${r.restore.error} | - | - | -`)
    else
      console.log(
        `${r.games} | ${Math.round(r.restore.readyMs)} | ${r.restore.gamesHeld} | ${r.restore.gamesRestored ?? 'none'} | ${r.restore.ledgerRead ?? '-'}`,
      )
  }
}

interface Goal {
  readonly goal: string
  readonly pass: boolean
  readonly measured: string
}

function goalsOf(rows: readonly (CountResult | Failed)[]): Goal[] {
  const largestCount = Math.max(...rows.map((row) => row.games))
  const largest = rows.find((row) => row.games === largestCount)
  const base = rows.find((row): row is CountResult => isResult(row) && row.games === 1)
  const at = `at ${largestCount} games`
  if (largest === undefined || !isResult(largest))
    return [{ goal: `every goal ${at}`, pass: false, measured: 'that run failed' }]
  const finalP99 = p99(largest.final)
  const provisionalRatio = ratio(p99(largest.provisional), base && p99(base.provisional))
  const nodeRss = Math.max(...NODE_KINDS.map((kind) => largest.rssMaxBytes[kind] ?? 0))
  const beatsRatio = ratio(largest.beatsHeardPerS, base?.beatsHeardPerS)
  return [
    {
      goal: `final p99 <= ${FINAL_P99_GOAL_MS} ms ${at}`,
      pass: finalP99 !== undefined && finalP99 <= FINAL_P99_GOAL_MS,
      measured: `${formatMs(finalP99)} ms`,
    },
    {
      goal: `provisional p99 ${at} <= ${PROVISIONAL_P99_RATIO_GOAL}x the 1-game run's`,
      pass: provisionalRatio !== undefined && provisionalRatio <= PROVISIONAL_P99_RATIO_GOAL,
      measured: `${formatMs(p99(largest.provisional))} ms, ${formatRatio(provisionalRatio)}`,
    },
    {
      goal: `RSS of each node (trader, API, settlement) <= 1 GiB ${at}`,
      pass: nodeRss > 0 && nodeRss <= NODE_RSS_GOAL_BYTES,
      measured: `largest ${mib(nodeRss)} MiB`,
    },
    {
      goal: `heartbeat messages/s independent of the games (${at} within ${BEATS_TOLERANCE * 100}% of the 1-game run's)`,
      pass: beatsRatio !== undefined && Math.abs(beatsRatio - 1) <= BEATS_TOLERANCE,
      measured: `${largest.beatsHeardPerS.toFixed(1)}/s vs ${base?.beatsHeardPerS.toFixed(1) ?? '-'}/s (one per game would be ${largest.perGameBeatsPerS.toLocaleString('en-US')}/s)`,
    },
  ]
}

function writeJson(file: string, rows: readonly (CountResult | Failed)[], goals: readonly Goal[]): void {
  const spread = spreadJson
  const p = percentileJson
  const base = rows.find((row): row is CountResult => isResult(row) && row.games === 1)
  const counts = rows.map((r) =>
    !isResult(r)
      ? { games: r.games, error: r.error }
      : {
          games: r.games,
          staggerMs: r.staggerMs,
          allStartedSAfterTraderSpawn: round(r.startS, 1),
          offered: r.offered,
          accepted: r.ok,
          acceptedPerS: round(r.served, 1),
          refusedByReason: Object.fromEntries(r.refusedByReason),
          errorsByCode: Object.fromEntries(r.errorsByCode),
          finalsMissing: r.finalsMissing,
          provisionalP50Ms: p(r.provisional, 50),
          provisionalP99Ms: p(r.provisional, 99),
          provisionalP99MsWindows: spread(r.provisionalP99Windows),
          provisionalP99OfOneGame: round(ratio(p99(r.provisional), base && p99(base.provisional)), 2),
          finalP50Ms: p(r.final, 50),
          finalP99Ms: p(r.final, 99),
          finalP99MsWindows: spread(r.finalP99Windows),
          finalP99OfOneGame: round(ratio(p99(r.final), base && p99(base.final)), 2),
          windows: r.windows.map((w) => ({
            provisionalP50Ms: round(w.provisionalP50Ms, 2),
            provisionalP99Ms: round(w.provisionalP99Ms, 2),
            finalP50Ms: round(w.finalP50Ms, 2),
            finalP99Ms: round(w.finalP99Ms, 2),
            accepted: w.ok,
            refused: w.refused,
            errors: w.errors,
          })),
          heartbeatMessagesPerS: round(r.beatsHeardPerS, 1),
          traderBeatsPerSPerProcess: round(r.traderBeatsPerS, 1),
          oneHeartbeatPerGameMessagesPerS: r.perGameBeatsPerS,
          beatWork: Object.fromEntries(
            Object.entries(r.beatWork).map(([kind, rate]) => [
              kind,
              {
                msPerSPerNode: round(rate.msPerSPerNode, 1),
                heartbeatsPerSPerNode: round(rate.heartbeatsPerSPerNode, 0),
              },
            ]),
          ),
          rssMaxMiB: Object.fromEntries(
            KINDS.map((k) => [k, round(r.rssMaxBytes[k] && r.rssMaxBytes[k] / 1024 ** 2, 0)]),
          ),
          cpuPercentOfOneCore: Object.fromEntries(KINDS.map((k) => [k, round(r.cpuPercent[k], 1)])),
          ledgerBytesPerBet: round(r.ledgerBytesPerBet, 0),
          ledgerFullAfterMin: round(ledgerFullAfterMin(r), 1),
          ledgerMiBHeldMax: round(r.ledgerBytesHeldMax && r.ledgerBytesHeldMax / 1024 ** 2, 1),
          loopLagMs: Object.fromEntries(
            Object.entries(r.loopLagMs).map(([kind, lag]) => [
              kind,
              { p99: round(lag.p99Ms, 1), max: round(lag.maxMs, 1) },
            ]),
          ),
          generatorLoopDelayMs: {
            p99: round(r.generatorLoopDelayMs.p99, 1),
            max: round(r.generatorLoopDelayMs.max, 1),
          },
          restart:
            'error' in r.restore
              ? { error: r.restore.error }
              : {
                  readyMs: Math.round(r.restore.readyMs),
                  gamesHeld: r.restore.gamesHeld,
                  gamesRestoredFromSnapshots: r.restore.gamesRestored ?? null,
                  startPhases: r.restore.phases ?? null,
                  fabricReplayed: r.restore.fabricReplayed ?? null,
                  ledgerMessagesRead: r.restore.ledgerRead ?? null,
                },
        },
  )
  const method = {
    natsServers: 3,
    traderProcesses: 1,
    apiNodes: API_NODES,
    settlementNodes: 1,
    shards: SHARDS,
    users: USERS,
    rate: RATE,
    warmupS: WARMUP_S,
    windowS: WINDOW_S,
    windows: WINDOWS,
    heartbeatMs: HEARTBEAT_MS,
    timeScale: TIME_SCALE,
    snapshotIntervalMs: SNAPSHOT_INTERVAL_MS,
    startSpreadMs: START_SPREAD_MS,
    loadStartsAfterTraderSpawnMsAtLeast: LOAD_AFTER_SPAWN_MS,
    units:
      'latencies in ms from the scheduled send, accepted bets only; RSS the most of one process of the kind; CPU % of one core for all processes of the kind',
    bets: 'each on a random game whose latest point-winner market is open in the generator replica (else the latest market of a random live game), at the price shown, policy any',
  }
  writeFileSync(file, `${JSON.stringify({ method, counts, goals }, null, 2)}\n`)
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const limitS = COUNTS.length * (planSeconds(PLAN) + PER_COUNT_BUDGET_S)
  let current: Stack | undefined
  let exiting = false
  const bail = (message: string, code: number) => {
    if (exiting) return
    exiting = true
    console.error(message)
    const closing = current?.close() ?? Promise.resolve()
    void Promise.race([closing.catch(() => undefined), sleep(CLOSE_TIMEOUT_MS)]).then(() =>
      process.exit(code),
    )
  }
  setTimeout(
    () => bail(`bench:games: still running after its limit of ${limitS} s; giving up`, 2),
    limitS * 1000,
  ).unref()
  process.on('SIGINT', () => bail('bench:games: interrupted; stopping the stack', 130))
  process.on('SIGTERM', () => bail('bench:games: terminated; stopping the stack', 143))
  console.log(
    `many games: ${COUNTS.join(', ')} matches (1 is the baseline), a fresh stack each; ${RATE} bets/s open loop, ${USERS} users; ` +
      `${WARMUP_S} s warm-up + ${WINDOWS} x ${WINDOW_S} s windows per count; feed time scale ${TIME_SCALE}; heartbeat ${HEARTBEAT_MS} ms, snapshots every ${SNAPSHOT_INTERVAL_MS / 1000} s; limit ${limitS} s`,
  )
  const dir = mkdtempSync(join(tmpdir(), 'bench-games-'))
  const rows: (CountResult | Failed)[] = []
  try {
    for (const games of COUNTS) {
      try {
        rows.push(await runCount(games, dir, (stack) => (current = stack)))
      } catch (error) {
        const message = (error as Error).message
        console.log(`  ${games} games failed: ${message}`)
        rows.push({ games, error: message })
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  printTables(rows)
  const goals = goalsOf(rows)
  console.log('\ngoals')
  for (const goal of goals) console.log(`${goal.pass ? 'pass' : 'MISS'}: ${goal.goal}: ${goal.measured}`)
  if (values.json) {
    writeJson(values.json, rows, goals)
    console.log(`wrote ${values.json}`)
  }
  process.exit(rows.every(isResult) ? 0 : 1)
}

await main()
