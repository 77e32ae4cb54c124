/**
 * Bet placement benchmark on a real 3-server cluster: API node processes (two unless told), a
 * settlement node process and an in-process trader keeping a market open. An open-loop load (sends
 * on a fixed schedule whatever the replies, so a slow reply cannot hide the queue behind it) places
 * bets at several rates. Each rate warms up unmeasured, then runs several measured windows back to
 * back; per window, HDR histograms of successful answers give the provisional verdict (reply) and
 * the final verdict (first `final` status on the user's status subject), both from the scheduled
 * send, while refusals and failed requests are counted by code. At every window boundary the
 * ledger stream's message count and every process's CPU time are read.
 *
 * Baseline in the same run: raw JetStream R3 publishes on a stream of their own at a low fixed
 * rate, each awaiting its ack, on the idle stack before the sweep and alongside the bet load at
 * every rate; and async publish throughput. Then 10,000 bets on one market are settled and timed
 * from the result.
 *
 *   npm run bench:bets                          # rates 500..5000, 5 s warm-up + 3 windows of 20 s each
 *   npm run bench:bets -- --rates 1000,2000 --window-s 30 --windows 5 --api-nodes 3 --json out.json
 */

import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { jetstreamManager } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import pino from 'pino'
import { yjsBackend } from '../crdt/index.ts'
import { ensureFabric, limitsWithShards } from '../nodes/fabric/streams.ts'
import type { ManualFeed } from '../nodes/trader/replay-feed.ts'
import { marketIds } from '../nodes/trader/trader.ts'
import { startManualTraderNode } from '../nodes/trader/trader-node.ts'
import { DEFAULT_SHARDS, SHARDS_MAX } from '../protocol/shards.ts'
import { names } from '../protocol/subjects.ts'
import { parseCommandLine, usageError } from '../scripts/command-line.ts'
import { type NatsCluster, startNatsCluster } from '../scripts/nats-cluster.ts'
import { spawnNodeProcess, stopProcesses } from '../scripts/node-process.ts'
import { creditUsers, LIFTED_BET_LIMITS_ENV, placeBets } from './bet-load.ts'
import {
  type BoundarySample,
  type CpuKind,
  errorCount,
  printTables,
  type RateResult,
  type RawSummary,
  summarizeRate,
  summarizeRaw,
  writeJson,
} from './bets-report.ts'
import { onLogEntries, PINO_WARN } from './node-log.ts'
import { nowUs } from './open-loop.ts'
import { CLOCK_TICKS_PER_SECOND, type ProcessKinds, sampleCpu } from './process-cpu.ts'
import { addRawStream, rawThroughput, runRawProbe } from './raw-probe.ts'
import { settlementTime } from './settlement-time.ts'
import { atBoundaries, percentileMs, planSeconds, type WindowPlan } from './windows.ts'

const REGION = 'eu'
const USERS = 500
const STAKE_CENTS = 100
const P99_GOAL_MS = 50
/** The loads start this long after they are planned, so all of them share one schedule. */
const PLAN_LEAD_MS = 200
/** Beyond the planned windows: starting the stack, draining replies and finals, settling. */
const SETUP_BUDGET_S = 180
const DRAIN_BUDGET_S = 30
const SETTLE_BUDGET_S = 180

const USAGE =
  '[--rates n,n,... (1..50000)] [--window-s s (1..600, default 20)] [--windows n (1..20, default 3)] ' +
  '[--warmup-s s (0..120, default 5)] [--raw-rate n (1..5000, default 100)] [--api-nodes n (1..8, default 2)] ' +
  '[--settle-bets n (0..100000)] [--shards n (1..64, default 8)] [--split] [--json FILE] [--cpu-prof-dir DIR]'
const values = parseCommandLine(
  {
    rates: { type: 'string', default: '500,1000,2000,3000,5000' },
    /** Length of one measured window. */
    'window-s': { type: 'string', default: '20' },
    /** Measured windows per rate, back to back; the p99 spread is over these. */
    windows: { type: 'string', default: '3' },
    /** Unmeasured load before a rate's first window. */
    'warmup-s': { type: 'string', default: '5' },
    /** Rate of the raw R3 publisher beside the load, and alone on the idle stack. */
    'raw-rate': { type: 'string', default: '100' },
    'api-nodes': { type: 'string', default: '2' },
    'settle-bets': { type: 'string', default: '10000' },
    /** Ledger shards of the region (one stream each). */
    shards: { type: 'string', default: String(DEFAULT_SHARDS) },
    /** Each API node serves its own part of the shards (shard % api-nodes), instead of all. */
    split: { type: 'boolean', default: false },
    /** Write the figures per rate as JSON here. */
    json: { type: 'string' },
    /** Write V8 CPU profiles of the node processes here, to see where a bet's time goes. */
    'cpu-prof-dir': { type: 'string' },
  },
  USAGE,
)
const RATES = values.rates.split(',').map(Number)
const WINDOW_S = Number(values['window-s'])
const WINDOWS = Number(values.windows)
const WARMUP_S = Number(values['warmup-s'])
const RAW_RATE = Number(values['raw-rate'])
const API_NODES = Number(values['api-nodes'])
const SETTLE_BETS = Number(values['settle-bets'])
const SHARDS = Number(values.shards)
const SPLIT = values.split === true
const inRange = (value: number, min: number, max: number) =>
  Number.isSafeInteger(value) && value >= min && value <= max
if (
  !RATES.every((rate) => inRange(rate, 1, 50_000)) ||
  !inRange(WINDOW_S, 1, 600) ||
  !inRange(WINDOWS, 1, 20) ||
  !inRange(WARMUP_S, 0, 120) ||
  !inRange(RAW_RATE, 1, 5_000) ||
  !inRange(API_NODES, 1, 8) ||
  !inRange(SETTLE_BETS, 0, 100_000) ||
  !inRange(SHARDS, 1, SHARDS_MAX) ||
  (SPLIT && API_NODES > SHARDS)
) {
  usageError('an option is out of range', USAGE)
}
const PLAN = { warmupS: WARMUP_S, windowS: WINDOW_S, windows: WINDOWS }
const planFromNow = (): WindowPlan => ({ ...PLAN, startUs: nowUs() + PLAN_LEAD_MS * 1000 })

/** The shards API node `i` (1-based) serves: with --split its own part, else all (empty). */
const servedBy = (i: number) =>
  SPLIT
    ? Array.from({ length: SHARDS }, (_, shard) => shard)
        .filter((shard) => shard % API_NODES === i - 1)
        .join(',')
    : ''

/**
 * Warnings and errors the node processes logged during the run, by process kind and message: a
 * replaced stream consumer, a failed append or a stalled server under load is part of the result.
 */
const nodeWarnings = new Map<string, number>()

/** Count each warning or error line of a node's log (pino JSON on stdout) under `kind: msg`. */
function countWarnings(kind: string, child: ChildProcess): void {
  onLogEntries(child, (entry) => {
    if (typeof entry.level !== 'number' || entry.level < PINO_WARN) return
    const key = `${kind}: ${String(entry.msg)}`
    nodeWarnings.set(key, (nodeWarnings.get(key) ?? 0) + 1)
  })
}

function spawnNode(dir: string, name: string, main: string, servers: string, served = ''): ChildProcess {
  const profile = values['cpu-prof-dir'] ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof-dir']}`] : []
  const child = spawnNodeProcess({
    main,
    nodeId: name,
    region: REGION,
    shards: SHARDS,
    nodeArgs: profile,
    env: {
      FABRIC_NATS_SERVERS: servers,
      LOG_LEVEL: 'warn',
      ...LIFTED_BET_LIMITS_ENV,
      SETTLEMENT_DATABASE: join(dir, `${name}.db`),
      FABRIC_SERVED_SHARDS: served,
    },
  })
  countWarnings(name.replace(/-\d+$/, ''), child)
  child.stderr?.pipe(process.stderr)
  return child
}

interface Stack {
  readonly cluster: NatsCluster
  /** The load generator's connection. */
  readonly nc: NatsConnection
  /** The raw publisher's own connection. */
  readonly rawNc: NatsConnection
  readonly feed: ManualFeed
  readonly kinds: ProcessKinds<CpuKind>
  /** The ledger stream's message count, and every process's CPU time. */
  sample(): Promise<BoundarySample>
  close(): Promise<void>
}

async function startStack(dir: string): Promise<Stack> {
  const cluster = await startNatsCluster()
  const apis: ChildProcess[] = []
  let settlement: ChildProcess | undefined
  try {
    // As on the nodes' own connections (nodes/fabric/node-main.ts): no Error built per request.
    const connect = (name: string) => cluster.connect({ name, noAsyncTraces: true })
    const nc = await connect('bench-generator')
    const rawNc = await connect('bench-raw')
    const adminNc = await connect('bench-admin')
    await ensureFabric(adminNc, REGION, limitsWithShards(SHARDS))
    await addRawStream(adminNc)
    const servers = cluster.servers.join(',')
    for (let i = 1; i <= API_NODES; i++)
      apis.push(spawnNode(dir, `api-${i}`, 'nodes/api/main.ts', servers, servedBy(i)))
    settlement = spawnNode(dir, 'settle-1', 'nodes/settlement/main.ts', servers)
    const trader = await startManualTraderNode({
      nc: await connect('bench-trader'),
      region: REGION,
      backend: yjsBackend,
      log: pino({ level: 'warn' }),
      snapshotIntervalMs: 0,
      limits: { staleFeedMs: 3_600_000 },
    })
    trader.feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
    const jsm = await jetstreamManager(adminNc)
    const ledgerStreams = Array.from({ length: SHARDS }, (_, shard) => names.ledgerStream(REGION, shard))
    const kinds: ProcessKinds<CpuKind> = {
      nats: () => cluster.processes.map((server) => server.pid),
      api: () => apis.map((child) => child.pid),
      settlement: () => [settlement?.pid],
      // The trader and the raw publisher share this process with the load generator.
      generator: () => [process.pid],
    }
    const children = [...apis, settlement]
    return {
      cluster,
      nc,
      rawNc,
      feed: trader.feed,
      kinds,
      async sample() {
        const cpu = sampleCpu(kinds)
        let ledgerMessages = 0
        let ledgerBytes = 0
        for (const stream of ledgerStreams) {
          const { state } = await jsm.streams.info(stream)
          ledgerMessages += state.messages
          ledgerBytes += state.bytes
        }
        return { cpu, ledgerMessages, ledgerBytes }
      },
      async close() {
        await trader.close()
        await stopProcesses(children)
        await cluster.close()
      },
    }
  } catch (error) {
    await stopProcesses(settlement ? [...apis, settlement] : apis)
    await cluster.close()
    throw error
  }
}

const progress = (label: string) => (index: number) =>
  console.log(`  ${label}: window ${index + 1}/${WINDOWS} done`)

/** The raw publisher alone on the idle stack (the trader heartbeating, no bets). */
async function rawIdle(stack: Stack): Promise<RawSummary> {
  const plan = planFromNow()
  console.log(`raw R3 publish at ${RAW_RATE}/s on the idle stack: ${planSeconds(plan)} s`)
  const [raw] = await Promise.all([
    runRawProbe(stack.rawNc, RAW_RATE, plan),
    atBoundaries(plan, async () => undefined, progress('idle')),
  ])
  return summarizeRaw(raw)
}

async function measureRate(stack: Stack, rate: number, point: number): Promise<RateResult> {
  stack.feed.emit({ type: 'point-start', point, server: 'home' })
  const plan = planFromNow()
  console.log(`${rate} bets/s: ${WARMUP_S} s warm-up, then ${WINDOWS} windows of ${WINDOW_S} s`)
  const [bets, raw, samples] = await Promise.all([
    placeBets(stack.nc, {
      rate,
      plan,
      marketId: marketIds(point).winner,
      users: USERS,
      shards: SHARDS,
      stakeCents: STAKE_CENTS,
      tag: `${point}-${rate}`,
    }),
    runRawProbe(stack.rawNc, RAW_RATE, plan),
    atBoundaries(plan, () => stack.sample(), progress(`${rate} bets/s`)),
  ])
  const result = summarizeRate(rate, WINDOW_S, bets, raw, samples)
  console.log(
    `  ${rate} bets/s: served ${Math.round(result.served)}/s, provisional p99 ${percentileMs(result.provisional, 99)?.toFixed(1) ?? '-'} ms, errors ${errorCount(result)}`,
  )
  return result
}

/** The run's time limit: every planned window, and generous room for everything else. */
function plannedSeconds(): number {
  const perLoad = planSeconds(PLAN) + DRAIN_BUDGET_S
  return SETUP_BUDGET_S + perLoad * (RATES.length + 1) + (SETTLE_BETS > 0 ? SETTLE_BUDGET_S : 0)
}

async function main(): Promise<void> {
  const limitS = plannedSeconds()
  setTimeout(() => {
    console.error(`bench:bets: still running after its limit of ${limitS} s; giving up`)
    process.exit(2)
  }, limitS * 1000).unref()
  const dir = mkdtempSync(join(tmpdir(), 'bench-bets-'))
  const stack = await startStack(dir)
  try {
    await creditUsers(stack.nc, { users: USERS, shards: SHARDS })
    console.log(
      `bet placement, open loop, ${API_NODES} API nodes (${SPLIT ? 'each serving its part' : 'each serving all'} of ${SHARDS} ledger shards), ${USERS} users, heartbeat 20 ms; per rate ${WARMUP_S} s warm-up + ${WINDOWS} x ${WINDOW_S} s windows; raw R3 publisher at ${RAW_RATE}/s; about ${Math.round(((RATES.length + 1) * planSeconds(PLAN)) / 60)} min, limit ${limitS} s`,
    )
    console.log(
      `CPU from /proc/<pid>/stat (clock tick 1/${CLOCK_TICKS_PER_SECOND} s); API and settlement nodes are child processes; "generator" is this process: load generator, raw publisher and trader`,
    )
    const idle = await rawIdle(stack)
    const results: RateResult[] = []
    let point = 0
    for (const rate of RATES) results.push(await measureRate(stack, rate, ++point))
    printTables(results, idle)
    const best = results.filter(
      (r) => errorCount(r) === 0 && (percentileMs(r.provisional, 99) ?? Infinity) <= P99_GOAL_MS,
    )
    console.log(
      `highest rate tried with provisional p99 <= ${P99_GOAL_MS} ms and no errors: ${best.at(-1)?.offered ?? 'none'} bets/s`,
    )
    console.log(
      `raw JetStream R3 async publish throughput on the idle stack (500 in flight): ${Math.round(await rawThroughput(stack.rawNc))} msgs/s`,
    )
    const warnings = [...nodeWarnings].sort(([, a], [, b]) => b - a)
    console.log(
      warnings.length === 0
        ? 'warnings logged by the node processes: none'
        : `warnings logged by the node processes: ${warnings.map(([what, count]) => `${count} x ${what}`).join('; ')}`,
    )
    if (values.json) {
      writeJson(values.json, methodOf(), results, idle, Object.fromEntries(nodeWarnings))
      console.log(`wrote ${values.json}`)
    }
    if (SETTLE_BETS > 0)
      await settlementTime(stack.nc, stack.feed, {
        point: point + 1,
        bets: SETTLE_BETS,
        users: USERS,
        region: REGION,
        shards: SHARDS,
        stakeCents: STAKE_CENTS,
      })
  } finally {
    await stack.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

function methodOf(): Record<string, unknown> {
  return {
    apiNodes: API_NODES,
    shards: SHARDS,
    apiShards: SPLIT ? 'split: each API node serves shard % apiNodes' : 'all',
    settlementNodes: 1,
    natsServers: 3,
    users: USERS,
    warmupS: WARMUP_S,
    windowS: WINDOW_S,
    windows: WINDOWS,
    rawRate: RAW_RATE,
    units: 'offered and served in bets/s; latencies in ms from the scheduled send, successful answers only',
    cpu: 'utime+stime from /proc/<pid>/stat, us per served bet over the measured windows; API and settlement nodes run as child processes; generator is the benchmark process, which the load generator, the raw publisher and the trader share',
  }
}

await main()
