/**
 * Gateway benchmark on a real 3-server cluster, everything on this machine: the gateway, two API
 * nodes and a settlement node run as their own processes, the clients as one more
 * (bench/gateway-clients.ts), and this process writes the game as the trader (`trader-1`).
 *
 * Fan-out: N clients, each its own user with its own token, follow one game while the writer
 * reprices a market at `--hz`. Each update takes the real path: commit on the trader's replica,
 * publish to the region's fabric stream (R3), the gateway's replica applies it, the game's delta is
 * serialized once and written to every socket. Update k carries the price 1,500 + k, which is how a
 * client tells updates apart; latency is from just before the commit to the client's receipt.
 * Baseline in the same run: as many clients subscribed straight to a nats-server WebSocket listener,
 * to a core subject on which the writer publishes the same prices at the same moment, on the same
 * connection. The two kinds of clients take turns (the clients process has file descriptors for one
 * crowd at a time); the writer does the same work in both turns.
 *
 * Bets: ~200 sockets, each its own credited user, send `place` frames on an open-loop schedule (a
 * slow reply cannot hold back the next send); latency from the scheduled send to the `provisional`
 * and `final` bet frames. Baseline in the same run: the same bets sent straight to the API nodes
 * over NATS (`bets.place`), as bench/bets.ts does.
 *
 *   npm run bench:gateway                                   # 1,000 and 10,000 clients, bets at 1,000 and 2,000/s
 *   npm run bench:gateway -- --clients 100 --seconds 3 --bet-rates 500
 *   npm run bench:gateway -- --cpu-prof-dir /tmp/prof     # V8 profiles of the gateway and the clients
 */

import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { NatsConnection } from '@nats-io/transport-node'
import * as hdr from 'hdr-histogram-js'
import pino from 'pino'
import { type Op, stampOps, yjsBackend } from '../crdt/index.ts'
import { WS_PATH } from '../gateway/protocol.ts'
import { DEFAULT_GATEWAY_LIMITS } from '../gateway/server.ts'
import { ensureFabric, limitsWithShards } from '../nodes/fabric/streams.ts'
import type { ManualFeed } from '../nodes/trader/replay-feed.ts'
import { marketIds } from '../nodes/trader/trader.ts'
import { startManualTraderNode, type TraderNode } from '../nodes/trader/trader-node.ts'
import type { PlaceBetReply } from '../protocol/bets.ts'
import { ALL_STATUSES_SUBJECT, depositSubject, placeSubject } from '../protocol/subjects.ts'
import { parseCommandLine, usageError } from '../scripts/command-line.ts'
import { type NatsCluster, pollUntil, startNatsCluster } from '../scripts/nats-cluster.ts'
import { spawnNodeProcess, stopProcesses } from '../scripts/node-process.ts'
import type {
  BetsReport,
  ClientsCommand,
  ClientsReply,
  FanoutReport,
  FanoutTarget,
  LatencySummary,
  OpenResult,
} from './gateway-clients.ts'
import { nowUs, openLoop } from './open-loop.ts'

const REGION = 'eu'
const SHARDS = 8
const GAME = 'match-1'
/** Update k of a fan-out phase prices selection `tick` at PRICE_BASE + k (odds in thousandths). */
const PRICE_BASE = 1_500
const OTHER_PRICE = 2_000
const BASELINE_SUBJECT = 'bench.gateway.prices'
const BETTOR_PREFIX = 'bettor-'
const STAKE_CENTS = 100
const DEPOSIT_CENTS = 10_000_000
/** Beyond the clients' own sockets: the process's files, pipes and NATS connections. */
const FD_HEADROOM = 1_000
/** 10,000 sockets with their receive buffers and a receipt per client and update fit well inside. */
const CLIENTS_HEAP_MB = 4_096
/** Per connection and per user, in place of the defaults (20/s and 50/s), so that the bet load is never refused for its rate. */
const BET_FRAMES_PER_SECOND = 1_000
const START_TIMEOUT_MS = 60_000
/** Opening sockets: a fixed part plus a part per socket (about 1 ms each is typical here). */
const OPEN_TIMEOUT_MS = 60_000
const OPEN_TIMEOUT_PER_SOCKET_MS = 20
const REPORT_WAIT_MS = 5_000
const FINAL_WAIT_MS = 15_000
/** What a command to the clients process may take beyond its own bounds before it counts as hung. */
const COMMAND_SLACK_MS = 60_000
const PROBE_TIMEOUT_MS = 5_000
const LATENCY_MS_MAX = 120_000
const GOALS = { fanoutP99Ms: 50, fanoutClients: 1_000, lastClientP99Ms: 150, lastClients: 10_000 }

const USAGE =
  '--clients n,n,... (1..50000, may be empty) --hz n (1..100) --seconds s (1..600) --bet-rates n,... (1..20000, may be empty) --bet-sockets n (1..5000) --gateway-workers n (1..16) [--cpu-prof-dir DIR]'
const values = parseCommandLine(
  {
    clients: { type: 'string', default: '1000,10000' },
    hz: { type: 'string', default: '10' },
    seconds: { type: 'string', default: '10' },
    'bet-rates': { type: 'string', default: '1000,2000' },
    'bet-sockets': { type: 'string', default: '200' },
    /** Gateway processes sharing the port (`GATEWAY_WORKERS`). */
    'gateway-workers': { type: 'string', default: '1' },
    /** Write V8 CPU profiles of the gateway and the clients process here. */
    'cpu-prof-dir': { type: 'string' },
  },
  USAGE,
)
const CLIENTS = values.clients.split(',').filter(Boolean).map(Number)
const HZ = Number(values.hz)
const SECONDS = Number(values.seconds)
const BET_RATES = values['bet-rates'].split(',').filter(Boolean).map(Number)
const BET_SOCKETS = Number(values['bet-sockets'])
const GATEWAY_WORKERS = Number(values['gateway-workers'])
if (
  !CLIENTS.every((n) => Number.isSafeInteger(n) && n > 0 && n <= 50_000) ||
  !(Number.isSafeInteger(HZ) && HZ >= 1 && HZ <= 100) ||
  !(Number.isSafeInteger(SECONDS) && SECONDS >= 1 && SECONDS <= 600) ||
  !BET_RATES.every((r) => Number.isSafeInteger(r) && r > 0 && r <= 20_000) ||
  !(Number.isSafeInteger(BET_SOCKETS) && BET_SOCKETS >= 1 && BET_SOCKETS <= 5_000) ||
  !(Number.isSafeInteger(GATEWAY_WORKERS) && GATEWAY_WORKERS >= 1 && GATEWAY_WORKERS <= 16)
) {
  usageError('an option is out of range', USAGE)
}
const UPDATES = HZ * SECONDS
const MAX_CLIENTS = Math.max(0, ...CLIENTS)
const SECRET = randomBytes(32).toString('hex')
const PROFILE = values['cpu-prof-dir'] ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof-dir']}`] : []

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const histogram = () =>
  hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: LATENCY_MS_MAX * 1000,
    numberOfSignificantValueDigits: 3,
  })
type Histogram = ReturnType<typeof histogram>

function summaryOf(h: Histogram): LatencySummary {
  const at = (p: number) => (h.totalCount === 0 ? 0 : h.getValueAtPercentile(p) / 1000)
  return { count: h.totalCount, p50: at(50), p99: at(99), p999: at(99.9), max: at(100) }
}

// ---- the machine: file descriptors and CPU ------------------------------------------------------

/**
 * Node raises its soft limit of open files to the hard one at start, so every node process here
 * (the clients, the gateway) gets what this one has now; nats-server (Go) does the same.
 */
function openFilesLimit(): number {
  const line = readFileSync('/proc/self/limits', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max open files'))
  const soft = line?.split(/\s{2,}/)[1]
  return soft === undefined || soft === 'unlimited' ? Number.POSITIVE_INFINITY : Number(soft)
}

function checkOpenFiles(): void {
  const needed = MAX_CLIENTS + FD_HEADROOM
  const limit = openFilesLimit()
  if (limit >= needed) return
  console.error(
    `${MAX_CLIENTS} clients need ${needed} open files in the clients process and as many in the gateway, ` +
      `but the limit is ${limit}: raise it (ulimit -n ${needed}) or pass fewer --clients`,
  )
  process.exit(1)
}

function clockTicksPerSecond(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
}
const CLOCK_TICKS = clockTicksPerSecond()

/** CPU seconds a process has used (user + system), from /proc; 0 once it is gone. */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return 0
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name: state is field 3, utime 14 and stime 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
  } catch {
    return 0
  }
}

/** A process and its children (a gateway's workers), from /proc. */
function withChildren(pid: number | undefined): (number | undefined)[] {
  if (pid === undefined) return []
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
    return [pid, ...children.map(Number)]
  } catch {
    return [pid]
  }
}

type CpuGroups = Record<string, () => (number | undefined)[]>
type CpuPercent = Record<string, number>

/** Start a CPU window over groups of processes; the returned function ends it, in % of one core. */
function cpuWindow(groups: CpuGroups): () => CpuPercent {
  const sample = () =>
    Object.fromEntries(
      Object.entries(groups).map(([name, pids]) => [
        name,
        pids().reduce<number>((sum, pid) => sum + cpuSeconds(pid), 0),
      ]),
    )
  const before = sample()
  const startUs = nowUs()
  return () => {
    const after = sample()
    const seconds = (nowUs() - startUs) / 1e6
    return Object.fromEntries(
      Object.keys(groups).map((name) => [name, (100 * ((after[name] ?? 0) - (before[name] ?? 0))) / seconds]),
    )
  }
}

// ---- processes ----------------------------------------------------------------------------------

function spawnNode(dir: string, name: string, main: string, env: Record<string, string>): ChildProcess {
  const child = spawnNodeProcess({
    main: fileURLToPath(new URL(`../${main}`, import.meta.url)),
    nodeId: name,
    region: REGION,
    shards: SHARDS,
    nodeArgs: name.startsWith('gw') ? PROFILE : [],
    env: {
      LOG_LEVEL: 'warn',
      API_USER_OPEN_STAKE_CENTS_MAX: '100000000',
      API_MARKET_LIABILITY_CENTS_MAX: '1000000000000',
      SETTLEMENT_DATABASE: join(dir, `${name}.db`),
      ...env,
    },
  })
  child.stderr?.pipe(process.stderr)
  return child
}

/** The gateway process; resolves with its ws:// URL once it listens and says it is ready. */
async function startGateway(dir: string, servers: string, children: ChildProcess[]): Promise<string> {
  const child = spawnNode(dir, 'gw-1', 'gateway/main.ts', {
    FABRIC_NATS_SERVERS: servers,
    // Info, for the one line that says where it listens; the gateway logs nothing per frame.
    LOG_LEVEL: 'info',
    GATEWAY_JWT_SECRET: SECRET,
    GATEWAY_PORT: '0',
    GATEWAY_WORKERS: String(GATEWAY_WORKERS),
    GATEWAY_CONNECTIONS_MAX: String(
      Math.max(MAX_CLIENTS + FD_HEADROOM, DEFAULT_GATEWAY_LIMITS.connectionsMax),
    ),
    GATEWAY_MESSAGES_PER_SECOND: String(BET_FRAMES_PER_SECOND),
    GATEWAY_MESSAGES_BURST: String(BET_FRAMES_PER_SECOND),
    GATEWAY_USER_MESSAGES_PER_SECOND: String(BET_FRAMES_PER_SECOND),
    GATEWAY_USER_MESSAGES_BURST: String(BET_FRAMES_PER_SECOND),
    // Every simulated client connects from this one loopback address.
    GATEWAY_IP_UPGRADES_PER_SECOND: '1000000',
    GATEWAY_IP_UPGRADES_BURST: '1000000',
  })
  children.push(child)
  let listening = 0
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`the gateway did not listen within ${START_TIMEOUT_MS} ms`)),
      START_TIMEOUT_MS,
    )
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      try {
        const value = JSON.parse(line) as { msg?: unknown; url?: unknown }
        if (value.msg !== 'gateway listening' || typeof value.url !== 'string') return
        // Every worker must listen before clients connect, or the first would take them all.
        if (++listening < GATEWAY_WORKERS) return
        clearTimeout(timer)
        resolve(value.url)
      } catch {
        // Not a log line of ours (node warnings): skip it.
      }
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`the gateway exited (${code ?? signal}) before it listened`))
    })
  })
  await pollUntil(
    'the gateway to be ready',
    async () =>
      (await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) })).ok ? true : undefined,
    { timeoutMs: START_TIMEOUT_MS },
  )
  return `${url.replace('http', 'ws')}${WS_PATH}`
}

interface ClientsProcess {
  readonly child: ChildProcess
  ask<T>(command: ClientsCommand, timeoutMs: number): Promise<T>
}

/** The clients process, with an IPC channel: one reply per command, matched by id. */
function startClients(children: ChildProcess[]): ClientsProcess {
  const child = spawn(
    process.execPath,
    [
      `--max-old-space-size=${CLIENTS_HEAP_MB}`,
      ...PROFILE,
      '--import',
      'tsx',
      fileURLToPath(new URL('./gateway-clients.ts', import.meta.url)),
    ],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: { ...process.env, BENCH_JWT_SECRET: SECRET } },
  )
  children.push(child)
  const waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>()
  let nextId = 0
  child.on('message', (reply: ClientsReply) => {
    const waiter = waiting.get(reply.id)
    if (waiter === undefined) return
    waiting.delete(reply.id)
    if (reply.ok) waiter.resolve(reply.result)
    else waiter.reject(new Error(`clients process: ${reply.error}`))
  })
  child.once('exit', (code, signal) => {
    for (const waiter of waiting.values())
      waiter.reject(new Error(`the clients process exited (${code ?? signal})`))
    waiting.clear()
  })
  return {
    child,
    ask<T>(command: ClientsCommand, timeoutMs: number): Promise<T> {
      const id = nextId++
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id)
          reject(new Error(`the clients process did not answer ${command.type} within ${timeoutMs} ms`))
        }, timeoutMs)
        waiting.set(id, {
          resolve: (value) => {
            clearTimeout(timer)
            resolve(value as T)
          },
          reject: (error) => {
            clearTimeout(timer)
            reject(error)
          },
        })
        child.send({ ...command, id })
      })
    },
  }
}

// ---- the writer -----------------------------------------------------------------------------------

interface PriceWriter {
  /** Create and open a market priced at PRICE_BASE - 1 (no update's price). */
  open(marketId: string): void
  /** Publish update k: the fabric update and the baseline message; returns when it was published. */
  update(marketId: string, k: number): { readonly us: number; readonly wallMs: number }
  close(marketId: string): void
  /** Resolves when JetStream has acknowledged every update so far; throws if one failed. */
  flushed(): Promise<void>
}

/**
 * Writes as the trader node: ops are stamped with its clock, committed on its replica and
 * published to the fabric stream as the trader itself does (nodes/trader/trader.ts), so the gateway
 * sees them as any trader update. Each update is also published to the baseline subject on the same
 * connection, right after.
 */
function createPriceWriter(trader: TraderNode, nc: NatsConnection): PriceWriter {
  const replica = trader.replicas.replicaFor(GAME)
  const pending: Promise<unknown>[] = []
  const failures: string[] = []
  const prices = (k: number) => ({ tick: PRICE_BASE + k, other: OTHER_PRICE })
  const write = (ops: readonly Op[]) => {
    const entries = stampOps(trader.hlc, ops)
    const update = replica.commit(entries)
    const msgId = (entries.at(-1) as { stamp: string }).stamp
    pending.push(
      trader.replicas.publishUpdate(GAME, update, msgId).catch((error: unknown) => {
        failures.push(error instanceof Error ? error.message : String(error))
      }),
    )
  }
  const transition = (marketId: string, status: 'open' | 'closed', k: number): Op => ({
    kind: 'transition',
    marketId,
    status,
    prices: prices(k),
    reason: 'benchmark',
  })
  return {
    open(marketId) {
      const selections = [
        { id: 'tick', name: 'Tick' },
        { id: 'other', name: 'Other' },
      ]
      write([
        { kind: 'market', marketId, name: `Benchmark ${marketId}`, selections },
        transition(marketId, 'open', -1),
      ])
    },
    update(marketId, k) {
      const published = { us: nowUs(), wallMs: Date.now() }
      write([transition(marketId, 'open', k)])
      nc.publish(BASELINE_SUBJECT, JSON.stringify({ gameId: GAME, marketId, prices: prices(k) }))
      return published
    },
    close(marketId) {
      write([transition(marketId, 'closed', -1)])
    },
    async flushed() {
      await Promise.all(pending.splice(0))
      if (failures.length > 0) throw new Error(`fabric publishes failed: ${failures.slice(0, 3).join('; ')}`)
    },
  }
}

// ---- phases ---------------------------------------------------------------------------------------

interface Context {
  readonly cluster: NatsCluster
  readonly nc: NatsConnection
  readonly trader: TraderNode & { readonly feed: ManualFeed }
  readonly writer: PriceWriter
  readonly clients: ClientsProcess
  readonly wsUrl: string
  readonly cpuGroups: CpuGroups
  point: number
}

interface FanoutRun {
  readonly clients: number
  readonly target: FanoutTarget
  readonly opened: OpenResult
  readonly report: FanoutReport
  readonly cpu: CpuPercent
}

const TARGET_NAMES: Record<FanoutTarget, string> = { gateway: 'gateway', nats: 'nats-server ws (baseline)' }
const fixed = (ms: number) => (ms >= 100 ? ms.toFixed(0) : ms.toFixed(1))
const triple = (s: LatencySummary) => `${fixed(s.p50)} / ${fixed(s.p99)} / ${fixed(s.p999)}`
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(1)}x` : '-')
const percent = (cpu: CpuPercent, name: string) => `${Math.round(cpu[name] ?? 0)}`

/** Wait (on a timer) until hrtime reaches `atUs`. */
async function until(atUs: number): Promise<void> {
  const waitMs = (atUs - nowUs()) / 1000
  if (waitMs > 0) await delay(waitMs)
}

async function fanoutRun(ctx: Context, clients: number, target: FanoutTarget): Promise<FanoutRun> {
  const marketId = `fanout-${target}-${clients}`
  ctx.writer.open(marketId)
  await ctx.writer.flushed()
  const openTimeoutMs = OPEN_TIMEOUT_MS + clients * OPEN_TIMEOUT_PER_SOCKET_MS
  const url = target === 'gateway' ? ctx.wsUrl : (ctx.cluster.websocketUrls[0] as string)
  const opened = await ctx.clients.ask<OpenResult>(
    {
      type: 'open-fanout',
      target,
      url,
      count: clients,
      userPrefix: `fan-${target}-${clients}-`,
      gameId: GAME,
      subject: BASELINE_SUBJECT,
      priceBase: PRICE_BASE,
      updatesMax: UPDATES,
    },
    openTimeoutMs + COMMAND_SLACK_MS,
  )
  if (opened.ready === 0) throw new Error(`no ${target} client got ready: ${opened.firstErrors.join('; ')}`)
  const cpu = cpuWindow(ctx.cpuGroups)
  const publishedUs: number[] = []
  const publishedWallMs: number[] = []
  const startUs = nowUs()
  const intervalUs = 1_000_000 / HZ
  for (let k = 0; k < UPDATES; k++) {
    await until(startUs + k * intervalUs)
    const published = ctx.writer.update(marketId, k)
    publishedUs.push(published.us)
    publishedWallMs.push(published.wallMs)
  }
  await until(startUs + UPDATES * intervalUs)
  const cpuPercent = cpu()
  await ctx.writer.flushed()
  const report = await ctx.clients.ask<FanoutReport>(
    { type: 'report-fanout', publishedUs, publishedWallMs, waitMs: REPORT_WAIT_MS },
    REPORT_WAIT_MS + COMMAND_SLACK_MS,
  )
  ctx.writer.close(marketId)
  await ctx.clients.ask({ type: 'close-all' }, COMMAND_SLACK_MS)
  console.log(fanoutProgress(clients, target, opened, report))
  return { clients, target, opened, report, cpu: cpuPercent }
}

function fanoutProgress(
  clients: number,
  target: FanoutTarget,
  opened: OpenResult,
  report: FanoutReport,
): string {
  const failed = opened.failed > 0 ? `, ${opened.failed} failed (${opened.firstErrors[0]})` : ''
  const troubles = [
    ...Object.entries(report.closedByServer).map(([code, n]) => `${n} closed by the server (${code})`),
    ...Object.entries(report.errors).map(([code, n]) => `${n} errors ${code}`),
  ]
  return (
    `fan-out ${String(clients).padStart(6)} clients via ${TARGET_NAMES[target]}: ${opened.ready} ready in ${(opened.ms / 1000).toFixed(1)} s${failed}; ` +
    `${report.updates} updates, delivery p99 ${fixed(report.deliveries.p99)} ms, last client p99 ${fixed(report.lastClient.p99)} ms, ` +
    `${report.missing} of ${report.expected} receipts missing, ${report.resyncSnapshots} resync snapshots, ` +
    `last client median ${fixed(report.lastClientTrendMs[0])} ms in the first tenth of the updates and ${fixed(report.lastClientTrendMs[1])} ms in the last, ` +
    `least latency ${report.minLatencyMs.toFixed(2)} ms${troubles.length > 0 ? `; ${troubles.join(', ')}` : ''}`
  )
}

/** Open the next point's markets; resolves once API nodes accept bets on its winner market. */
async function openPoint(ctx: Context): Promise<string> {
  ctx.point++
  ctx.trader.feed.emit({ type: 'point-start', point: ctx.point, server: 'home' })
  const marketId = marketIds(ctx.point).winner
  let probes = 0
  let acceptedInRow = 0
  // Several in a row, as the two API nodes take turns answering and each must have the market.
  await pollUntil(
    `API nodes to take bets on ${marketId}`,
    async () => {
      const request = betRequest(`probe-${marketId}-${probes++}`, `${BETTOR_PREFIX}0`, marketId)
      const reply = (
        await ctx.nc.request(placeSubject(`${BETTOR_PREFIX}0`, SHARDS), request, {
          timeout: PROBE_TIMEOUT_MS,
        })
      ).json<PlaceBetReply>()
      acceptedInRow = reply.ok && reply.verdict.accepted ? acceptedInRow + 1 : 0
      return acceptedInRow >= 3 ? true : undefined
    },
    { timeoutMs: START_TIMEOUT_MS },
  )
  return marketId
}

function betRequest(betId: string, userId: string, marketId: string): string {
  return JSON.stringify({
    betId,
    userId,
    gameId: GAME,
    marketId,
    selectionId: 'home',
    stakeCents: STAKE_CENTS,
    odds: 1_001,
    policy: 'any',
  })
}

interface DirectReport {
  readonly sent: number
  readonly provisional: LatencySummary
  readonly final: LatencySummary
  readonly rejected: number
  readonly errors: Record<string, number>
}

/** The baseline: the same bets straight to the API nodes over NATS, from this process. */
async function placeDirect(nc: NatsConnection, rate: number, marketId: string): Promise<DirectReport> {
  const provisional = histogram()
  const final = histogram()
  const awaitingFinal = new Map<string, number>()
  const errors: Record<string, number> = {}
  let rejected = 0
  const statuses = nc.subscribe(ALL_STATUSES_SUBJECT, {
    callback: (_error, message) => {
      const status = message.json<{ betId: string; status: string }>()
      const at = awaitingFinal.get(status.betId)
      if (status.status !== 'final' || at === undefined) return
      // API and settlement nodes both announce final verdicts: the first one counts.
      awaitingFinal.delete(status.betId)
      final.recordValue(Math.max(1, nowUs() - at))
    },
  })
  const pending: Promise<void>[] = []
  const fail = (betId: string, code: string) => {
    errors[code] = (errors[code] ?? 0) + 1
    awaitingFinal.delete(betId)
  }
  await openLoop(rate, SECONDS, (scheduledUs, i) => {
    const betId = `direct-${rate}-${i}`
    awaitingFinal.set(betId, scheduledUs)
    const userId = `${BETTOR_PREFIX}${i % BET_SOCKETS}`
    const request = betRequest(betId, userId, marketId)
    pending.push(
      nc
        .request(placeSubject(userId, SHARDS), request, { timeout: DEFAULT_GATEWAY_LIMITS.placeTimeoutMs })
        .then(
          (message) => {
            provisional.recordValue(Math.max(1, nowUs() - scheduledUs))
            const reply = message.json<PlaceBetReply>()
            if (!reply.ok) fail(betId, reply.error.code)
            else if (!reply.verdict.accepted) rejected++
          },
          () => fail(betId, 'no reply'),
        ),
    )
  })
  await Promise.all(pending)
  const deadline = Date.now() + FINAL_WAIT_MS
  while (awaitingFinal.size > 0 && Date.now() < deadline) await delay(20)
  statuses.unsubscribe()
  if (awaitingFinal.size > 0) errors['no final'] = awaitingFinal.size
  const report = {
    sent: rate * SECONDS,
    provisional: summaryOf(provisional),
    final: summaryOf(final),
    rejected,
    errors,
  }
  provisional.destroy()
  final.destroy()
  return report
}

interface BetRun {
  readonly rate: number
  readonly gateway: BetsReport
  readonly gatewayCpu: CpuPercent
  readonly direct: DirectReport
  readonly directCpu: CpuPercent
}

const errorCount = (errors: Record<string, number>) => Object.values(errors).reduce((a, b) => a + b, 0)
const errorText = (errors: Record<string, number>) =>
  Object.entries(errors)
    .map(([code, n]) => `${n} ${code}`)
    .join(', ') || '0'

async function betRun(ctx: Context, rate: number): Promise<BetRun> {
  const gatewayMarket = await openPoint(ctx)
  let cpu = cpuWindow(ctx.cpuGroups)
  const gateway = await ctx.clients.ask<BetsReport>(
    {
      type: 'bets',
      url: ctx.wsUrl,
      sockets: BET_SOCKETS,
      userPrefix: BETTOR_PREFIX,
      rate,
      seconds: SECONDS,
      gameId: GAME,
      marketId: gatewayMarket,
      selectionId: 'home',
      stakeCents: STAKE_CENTS,
      betPrefix: `gw-${rate}`,
      finalWaitMs: FINAL_WAIT_MS,
    },
    OPEN_TIMEOUT_MS + SECONDS * 1000 + FINAL_WAIT_MS + COMMAND_SLACK_MS,
  )
  const gatewayCpu = cpu()
  const directMarket = await openPoint(ctx)
  cpu = cpuWindow(ctx.cpuGroups)
  const direct = await placeDirect(ctx.nc, rate, directMarket)
  const directCpu = cpu()
  console.log(
    `bets ${rate}/s via gateway: provisional p99 ${fixed(gateway.provisional.p99)} ms, final p99 ${fixed(gateway.final.p99)} ms, errors ${errorText(gateway.errors)}; ` +
      `direct NATS: provisional p99 ${fixed(direct.provisional.p99)} ms, final p99 ${fixed(direct.final.p99)} ms, errors ${errorText(direct.errors)}`,
  )
  if (gateway.firstErrors.length > 0)
    console.log(`  first gateway errors: ${gateway.firstErrors.join(' | ')}`)
  return { rate, gateway, gatewayCpu, direct, directCpu }
}

// ---- results --------------------------------------------------------------------------------------

function fanoutRow(run: FanoutRun): string {
  const { report, cpu } = run
  const last = report.lastClient
  const fabric =
    report.fabricLeg.count > 0 ? `${fixed(report.fabricLeg.p50)} / ${fixed(report.fabricLeg.p99)}` : '-'
  return [
    String(run.clients).padStart(7),
    TARGET_NAMES[run.target],
    triple(report.deliveries),
    `${fixed(last.p50)} / ${fixed(last.p99)} / ${fixed(last.max)}`,
    `${report.missing} of ${report.expected}`,
    `${fixed(report.newest.p99)} / ${fixed(report.newestLastClient.p99)}`,
    fabric,
    `${percent(cpu, 'gateway')} / ${percent(cpu, 'nats')} / ${percent(cpu, 'clients')}`,
  ].join(' | ')
}

function fanoutRatioRow(gateway: FanoutRun, nats: FanoutRun): string {
  const g = gateway.report
  const n = nats.report
  const three = (a: LatencySummary, b: LatencySummary, top: 'p999' | 'max') =>
    `${ratio(a.p50, b.p50)} / ${ratio(a.p99, b.p99)} / ${ratio(a[top], b[top])}`
  return [
    String(gateway.clients).padStart(7),
    'gateway / baseline',
    three(g.deliveries, n.deliveries, 'p999'),
    three(g.lastClient, n.lastClient, 'max'),
    '',
    `${ratio(g.newest.p99, n.newest.p99)} / ${ratio(g.newestLastClient.p99, n.newestLastClient.p99)}`,
    '',
    `server CPU ${ratio(gateway.cpu.gateway ?? 0, nats.cpu.nats ?? 0)} (the gateway vs the three nats-servers)`,
  ].join(' | ')
}

function printFanout(runs: readonly FanoutRun[]): void {
  if (runs.length === 0) return
  console.log('')
  console.log(
    `Fan-out: one game, ${HZ} price updates/s for ${SECONDS} s; latency from the writer's publish to each client's receipt`,
  )
  console.log(
    'clients | path | delivery p50 / p99 / p99.9 ms | last client p50 / p99 / max ms | receipts missing | newest state p99 / last client p99 ms | publish to gateway delta p50 / p99 ms | CPU % gateway / nats-servers / clients',
  )
  for (const clients of CLIENTS) {
    const gateway = runs.find((r) => r.clients === clients && r.target === 'gateway')
    const nats = runs.find((r) => r.clients === clients && r.target === 'nats')
    for (const run of [gateway, nats]) if (run !== undefined) console.log(fanoutRow(run))
    if (gateway !== undefined && nats !== undefined) console.log(fanoutRatioRow(gateway, nats))
  }
}

function printBets(runs: readonly BetRun[]): void {
  if (runs.length === 0) return
  console.log('')
  console.log(
    `Bets: open loop, ${SECONDS} s per rate, ${BET_SOCKETS} sockets / users; latency from the scheduled send`,
  )
  console.log(
    'rate/s | path | provisional p50 / p99 / p99.9 ms | final p50 / p99 / p99.9 ms | errors | rejected | CPU % gateway / API+settlement / nats-servers / load generator',
  )
  for (const run of runs) {
    // The gateway's bets come from the clients process, the direct ones from this process.
    const rows = [
      ['gateway', run.gateway, run.gatewayCpu, 'clients'],
      ['direct NATS (baseline)', run.direct, run.directCpu, 'driver'],
    ] as const
    for (const [name, report, cpu, generator] of rows)
      console.log(
        [
          String(run.rate).padStart(6),
          name,
          triple(report.provisional),
          triple(report.final),
          errorCount(report.errors),
          report.rejected,
          [cpu.gateway, cpu.nodes, cpu.nats, cpu[generator]].map((c) => Math.round(c ?? 0)).join(' / '),
        ].join(' | '),
      )
    const { gateway: g, direct: d } = run
    const three = (a: LatencySummary, b: LatencySummary) =>
      `${ratio(a.p50, b.p50)} / ${ratio(a.p99, b.p99)} / ${ratio(a.p999, b.p999)}`
    console.log(
      [
        String(run.rate).padStart(6),
        'gateway / baseline',
        three(g.provisional, d.provisional),
        three(g.final, d.final),
        '',
        '',
        '',
      ].join(' | '),
    )
  }
}

function printGoals(fanouts: readonly FanoutRun[], bets: readonly BetRun[]): void {
  console.log('')
  const verdict = (met: boolean) => (met ? 'met' : 'NOT met')
  const small = fanouts.find((r) => r.clients === GOALS.fanoutClients && r.target === 'gateway')
  if (small !== undefined && HZ === 10) {
    const p99 = small.report.deliveries.p99
    console.log(
      `goal: delivery p99 <= ${GOALS.fanoutP99Ms} ms for ${GOALS.fanoutClients} clients x 10 updates/s: ${fixed(p99)} ms, ${verdict(p99 <= GOALS.fanoutP99Ms && small.report.missing === 0)}`,
    )
  }
  const large = fanouts.find((r) => r.clients === GOALS.lastClients && r.target === 'gateway')
  if (large !== undefined) {
    const p99 = large.report.lastClient.p99
    console.log(
      `goal: the last of ${GOALS.lastClients} clients receives a broadcast within ${GOALS.lastClientP99Ms} ms p99: ${fixed(p99)} ms, ${verdict(p99 <= GOALS.lastClientP99Ms && large.report.missing === 0)}`,
    )
  }
  for (const run of bets)
    console.log(
      `bet round trip through the gateway at ${run.rate}/s: provisional p99 ${fixed(run.gateway.provisional.p99)} ms, final p99 ${fixed(run.gateway.final.p99)} ms ` +
        `(direct NATS: ${fixed(run.direct.provisional.p99)} / ${fixed(run.direct.final.p99)} ms), ${errorCount(run.gateway.errors)} errors`,
    )
}

// ---- the run --------------------------------------------------------------------------------------

async function credit(nc: NatsConnection): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS
  for (let i = 0; i < BET_SOCKETS; i++) {
    const request = JSON.stringify({
      id: `bench-gateway-deposit-${i}`,
      userId: `${BETTOR_PREFIX}${i}`,
      amountCents: DEPOSIT_CENTS,
    })
    for (;;) {
      try {
        const reply = await nc.request(depositSubject(`${BETTOR_PREFIX}${i}`, SHARDS), request, {
          timeout: PROBE_TIMEOUT_MS,
        })
        if (reply.json<{ ok: boolean }>().ok) break
      } catch {
        // The API nodes are still starting.
      }
      if (Date.now() > deadline) throw new Error('API nodes did not credit the bettors in time')
      await delay(200)
    }
  }
}

/** A bound on the whole run, from the phases' own bounds: a hang anywhere still ends in cleanup. */
function runDeadlineMs(): number {
  const fanout = CLIENTS.reduce(
    (sum, n) =>
      sum +
      2 *
        (OPEN_TIMEOUT_MS +
          n * OPEN_TIMEOUT_PER_SOCKET_MS +
          SECONDS * 1000 +
          REPORT_WAIT_MS +
          2 * COMMAND_SLACK_MS),
    0,
  )
  const bets = BET_RATES.length * 2 * (START_TIMEOUT_MS + SECONDS * 1000 + FINAL_WAIT_MS + COMMAND_SLACK_MS)
  return 5 * START_TIMEOUT_MS + fanout + bets
}

async function start(
  dir: string,
  children: ChildProcess[],
  own: { cluster?: NatsCluster; trader?: TraderNode },
) {
  const startedMs = Date.now()
  const cluster = await startNatsCluster({ websocket: true, maxConnections: MAX_CLIENTS + FD_HEADROOM })
  own.cluster = cluster
  const nc = await cluster.connect()
  await ensureFabric(nc, REGION, limitsWithShards(SHARDS))
  const servers = cluster.servers.join(',')
  const nodes = ['api-1', 'api-2'].map((name) =>
    spawnNode(dir, name, 'nodes/api/main.ts', { FABRIC_NATS_SERVERS: servers }),
  )
  nodes.push(spawnNode(dir, 'settle-1', 'nodes/settlement/main.ts', { FABRIC_NATS_SERVERS: servers }))
  for (const child of nodes) child.stdout?.resume()
  children.push(...nodes)
  const writerNc = await cluster.connect()
  const trader = await startManualTraderNode({
    nc: writerNc,
    region: REGION,
    backend: yjsBackend,
    log: pino({ level: 'warn' }),
    limits: { staleFeedMs: 3_600_000 },
  })
  own.trader = trader
  // The game exists before the gateway starts, so its replica holds it once caught up.
  trader.feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  await trader.trader.flush()
  const wsUrl = await startGateway(dir, servers, children)
  const gatewayPid = children.at(-1)?.pid
  await credit(nc)
  const clients = startClients(children)
  console.log(
    `started in ${((Date.now() - startedMs) / 1000).toFixed(1)} s: 3 nats-servers (WebSocket on ${cluster.websocketUrls[0]} for the baseline), ` +
      `2 API nodes, a settlement node, the gateway at ${wsUrl} (pid ${gatewayPid}), the clients process (pid ${clients.child.pid}), ${BET_SOCKETS} bettors credited`,
  )
  const ctx: Context = {
    cluster,
    nc,
    trader,
    writer: createPriceWriter(trader, writerNc),
    clients,
    wsUrl,
    cpuGroups: {
      gateway: () => withChildren(gatewayPid),
      nats: () => cluster.processes.map((server) => server.pid),
      clients: () => [clients.child.pid],
      nodes: () => nodes.map((child) => child.pid),
      driver: () => [process.pid],
    },
    point: 0,
  }
  return ctx
}

async function main(): Promise<void> {
  checkOpenFiles()
  const [load1, load5] = (await import('node:os')).loadavg()
  console.log(
    `gateway benchmark: fan-out to ${CLIENTS.join(', ')} clients at ${HZ} updates/s for ${SECONDS} s each, bets at ${BET_RATES.join(', ') || 'no'} bets/s over ${BET_SOCKETS} sockets; ` +
      `load average ${load1?.toFixed(2)} / ${load5?.toFixed(2)} (1 / 5 min) before the run`,
  )
  const dir = mkdtempSync(join(tmpdir(), 'bench-gateway-'))
  const children: ChildProcess[] = []
  const own: { cluster?: NatsCluster; trader?: TraderNode } = {}
  let cleaning: Promise<void> | undefined
  const cleanup = () => {
    cleaning ??= (async () => {
      // The trader flushes its own queued publishes; a dead cluster must not hold the exit.
      await Promise.race([own.trader?.close(), delay(START_TIMEOUT_MS / 6)]).catch(() => undefined)
      await stopProcesses(children)
      await own.cluster?.close().catch((error: unknown) => console.error(error))
      rmSync(dir, { recursive: true, force: true })
    })()
    return cleaning
  }
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => {
      console.error(`${signal}: stopping every process this benchmark started`)
      void cleanup().finally(() => process.exit(130))
    })
  const watchdog = setTimeout(() => {
    console.error(`the benchmark passed its deadline of ${runDeadlineMs()} ms; stopping`)
    void cleanup().finally(() => process.exit(1))
  }, runDeadlineMs())
  watchdog.unref()
  const startedMs = Date.now()
  try {
    const ctx = await start(dir, children, own)
    const fanouts: FanoutRun[] = []
    for (const clients of CLIENTS)
      for (const target of ['gateway', 'nats'] as const) fanouts.push(await fanoutRun(ctx, clients, target))
    const bets: BetRun[] = []
    for (const rate of BET_RATES) bets.push(await betRun(ctx, rate))
    printFanout(fanouts)
    printBets(bets)
    printGoals(fanouts, bets)
  } finally {
    clearTimeout(watchdog)
    await cleanup()
  }
  console.log(
    `\nthe benchmark took ${((Date.now() - startedMs) / 1000).toFixed(0)} s, start and cleanup included`,
  )
}

await main()
