/**
 * Bet placement benchmark on a real 3-server cluster: two API node processes, a settlement node
 * process and an in-process trader keeping a market open. An open-loop load (sends on a fixed
 * schedule whatever the replies, so a slow reply cannot hide the queue behind it) places bets at
 * several rates; HDR histograms give p50/p99/p99.9 of the provisional verdict (reply) and of the
 * final verdict (status event), both measured from the scheduled send time. Then 10,000 bets on
 * one market are settled and timed from the result. Baseline in the same run: raw JetStream R3
 * publish latency at the same rates, and async publish throughput.
 *
 *   npm run bench:bets                         # rates 500,1000,2000,3000,5000 for 5 s each
 *   npm run bench:bets -- --rates 1000,2000 --seconds 10 --settle-bets 10000
 */

import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import * as hdr from 'hdr-histogram-js'
import pino from 'pino'
import { yjsBackend } from '../crdt/index.ts'
import { joinLedger } from '../nodes/fabric/regions.ts'
import { ensureFabric } from '../nodes/fabric/streams.ts'
import type { ManualFeed } from '../nodes/trader/replay-feed.ts'
import { marketIds } from '../nodes/trader/trader.ts'
import { startManualTraderNode } from '../nodes/trader/trader-node.ts'
import type { PlaceBetReply } from '../protocol/bets.ts'
import { ALL_STATUSES_SUBJECT, DEPOSIT_SUBJECT, PLACE_SUBJECT } from '../protocol/subjects.ts'
import { parseCommandLine, usageError } from '../scripts/command-line.ts'
import { startNatsCluster } from '../scripts/nats-cluster.ts'
import { spawnNodeProcess, stopProcesses } from '../scripts/node-process.ts'
import { nowUs, openLoop } from './open-loop.ts'

const REGION = 'eu'
const SHARDS = 8
const USERS = 500
const STAKE_CENTS = 100
const LATENCY_MS_MAX = 120_000
const P99_GOAL_MS = 50

const USAGE =
  '--rates n,n,... (1..50000) --seconds s (1..600) --settle-bets n (0..100000) [--cpu-prof-dir DIR]'
const values = parseCommandLine(
  {
    rates: { type: 'string', default: '500,1000,2000,3000,5000' },
    seconds: { type: 'string', default: '5' },
    'settle-bets': { type: 'string', default: '10000' },
    /** Write V8 CPU profiles of the node processes here, to see where a bet's time goes. */
    'cpu-prof-dir': { type: 'string' },
  },
  USAGE,
)
const RATES = values.rates.split(',').map(Number)
const SECONDS = Number(values.seconds)
const SETTLE_BETS = Number(values['settle-bets'])
if (
  !RATES.every((r) => Number.isSafeInteger(r) && r > 0 && r <= 50_000) ||
  !(SECONDS > 0 && SECONDS <= 600) ||
  !(SETTLE_BETS >= 0 && SETTLE_BETS <= 100_000)
) {
  usageError('an option is out of range', USAGE)
}

const histogram = () =>
  hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: LATENCY_MS_MAX * 1000,
    numberOfSignificantValueDigits: 3,
  })
type Histogram = ReturnType<typeof histogram>
const ms = (h: Histogram, p: number) =>
  h.totalCount === 0 ? '-' : (h.getValueAtPercentile(p) / 1000).toFixed(1)

function spawnNode(dir: string, name: string, main: string, env: Record<string, string>): ChildProcess {
  const profile = values['cpu-prof-dir'] ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof-dir']}`] : []
  const child = spawnNodeProcess({
    main,
    nodeId: name,
    region: REGION,
    shards: SHARDS,
    nodeArgs: profile,
    env: {
      ...env,
      LOG_LEVEL: 'warn',
      API_USER_OPEN_STAKE_CENTS_MAX: '100000000',
      API_MARKET_LIABILITY_CENTS_MAX: '1000000000000',
      SETTLEMENT_DATABASE: join(dir, `${name}.db`),
    },
  })
  child.stdout?.resume()
  child.stderr?.pipe(process.stderr)
  return child
}

async function rawBaseline(nc: NatsConnection, rate: number): Promise<Histogram> {
  const js = jetstream(nc)
  const h = histogram()
  const pending: Promise<unknown>[] = []
  await openLoop(rate, SECONDS, (scheduledUs, i) => {
    pending.push(
      js
        .publish('baseline.x', JSON.stringify({ i, pad: 'x'.repeat(200) }))
        .then(() => h.recordValue(nowUs() - scheduledUs)),
    )
  })
  await Promise.all(pending)
  return h
}

async function rawThroughput(nc: NatsConnection): Promise<number> {
  const js = jetstream(nc)
  const count = 20_000
  const window = 500
  const start = performance.now()
  for (let sent = 0; sent < count; sent += window) {
    await Promise.all(
      Array.from({ length: window }, (_, i) =>
        js.publish('baseline.x', JSON.stringify({ i: sent + i, pad: 'x'.repeat(200) })),
      ),
    )
  }
  return count / ((performance.now() - start) / 1000)
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-bets-'))
  const cluster = await startNatsCluster()
  const children: ChildProcess[] = []
  try {
    const nc = await cluster.connect()
    await ensureFabric(nc, REGION)
    const jsm = await jetstreamManager(nc)
    await jsm.streams.add({
      name: 'BASELINE',
      subjects: ['baseline.>'],
      num_replicas: 3,
      storage: StorageType.File,
      max_bytes: 256 * 1024 ** 2,
    })
    const servers = cluster.servers.join(',')
    for (const name of ['api-1', 'api-2'])
      children.push(spawnNode(dir, name, 'nodes/api/main.ts', { FABRIC_NATS_SERVERS: servers }))
    children.push(spawnNode(dir, 'settle-1', 'nodes/settlement/main.ts', { FABRIC_NATS_SERVERS: servers }))
    const trader = await startManualTraderNode({
      nc: await cluster.connect(),
      region: REGION,
      backend: yjsBackend,
      log: pino({ level: 'warn' }),
      snapshotIntervalMs: 0,
      limits: { staleFeedMs: 3_600_000 },
    })
    const feed = trader.feed
    feed.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
    await credit(nc)
    console.log(
      `bet placement, open loop, ${SECONDS} s per rate, 2 API nodes, ${USERS} users, heartbeat 20 ms`,
    )
    console.log(
      'rate/s | provisional p50 / p99 / p99.9 ms | final p50 / p99 / p99.9 ms | errors | raw R3 publish p50 / p99 / p99.9 ms',
    )
    let point = 0
    let bestRate = 0
    for (const rate of RATES) {
      point++
      feed.emit({ type: 'point-start', point, server: 'home' })
      const r = await placeAtRate(nc, rate, point)
      const raw = await rawBaseline(nc, rate)
      if (r.provisional.getValueAtPercentile(99) / 1000 <= P99_GOAL_MS && r.errors === 0) bestRate = rate
      console.log(
        `${String(rate).padStart(6)} | ${ms(r.provisional, 50)} / ${ms(r.provisional, 99)} / ${ms(r.provisional, 99.9)} | ${ms(r.final, 50)} / ${ms(r.final, 99)} / ${ms(r.final, 99.9)} | ${r.errors} | ${ms(raw, 50)} / ${ms(raw, 99)} / ${ms(raw, 99.9)}`,
      )
    }
    console.log(
      `highest rate tried with provisional p99 <= ${P99_GOAL_MS} ms and no errors: ${bestRate || 'none'} bets/s`,
    )
    console.log(
      `raw JetStream R3 async publish throughput (window 500): ${Math.round(await rawThroughput(nc))} msgs/s`,
    )
    if (SETTLE_BETS > 0) await settlementTime(nc, feed, point + 1)
    await trader.close()
  } finally {
    await stopProcesses(children)
    await cluster.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

async function credit(nc: NatsConnection): Promise<void> {
  const deadline = Date.now() + 60_000
  for (let i = 0; i < USERS; i++) {
    for (;;) {
      try {
        const reply = (
          await nc.request(
            DEPOSIT_SUBJECT,
            JSON.stringify({ id: `bench-deposit-${i}`, userId: `user-${i}`, amountCents: 10_000_000 }),
            { timeout: 5_000 },
          )
        ).json<{ ok: boolean }>()
        if (reply.ok) break
      } catch {
        if (Date.now() > deadline) throw new Error('API nodes did not come up')
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
    }
  }
}

async function placeAtRate(nc: NatsConnection, rate: number, point: number) {
  const provisional = histogram()
  const final = histogram()
  const scheduled = new Map<string, number>()
  let errors = 0
  const statuses = nc.subscribe(ALL_STATUSES_SUBJECT, {
    callback: (_e, m) => {
      const status = m.json<{ betId: string; status: string }>()
      const at = scheduled.get(status.betId)
      if (status.status !== 'final' || at === undefined) return
      // API and settlement nodes both announce final verdicts: the first one counts.
      scheduled.delete(status.betId)
      final.recordValue(nowUs() - at)
    },
  })
  const marketId = marketIds(point).winner
  const pending: Promise<void>[] = []
  await openLoop(rate, SECONDS, (scheduledUs, i) => {
    const betId = `bench-${point}-${i}-${rate}`
    scheduled.set(betId, scheduledUs)
    const request = {
      betId,
      userId: `user-${i % USERS}`,
      gameId: 'match-1',
      marketId,
      selectionId: 'home',
      stakeCents: STAKE_CENTS,
      odds: 1_001,
      policy: 'any',
    }
    pending.push(
      nc.request(PLACE_SUBJECT, JSON.stringify(request), { timeout: 10_000 }).then(
        (reply) => {
          provisional.recordValue(nowUs() - scheduledUs)
          if (!reply.json<PlaceBetReply>().ok) errors++
        },
        () => {
          errors++
        },
      ),
    )
  })
  await Promise.all(pending)
  const deadline = Date.now() + 10_000
  while (final.totalCount < provisional.totalCount - errors && Date.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 50))
  statuses.unsubscribe()
  return { provisional, final, errors }
}

async function settlementTime(nc: NatsConnection, feed: ManualFeed, point: number): Promise<void> {
  feed.emit({ type: 'point-start', point, server: 'home' })
  const marketId = marketIds(point).winner
  const window = 200
  for (let sent = 0; sent < SETTLE_BETS; sent += window) {
    await Promise.all(
      Array.from({ length: Math.min(window, SETTLE_BETS - sent) }, (_, k) => {
        const i = sent + k
        const request = {
          betId: `settle-${point}-${i}`,
          userId: `user-${i % USERS}`,
          gameId: 'match-1',
          marketId,
          selectionId: i % 2 ? 'home' : 'away',
          stakeCents: STAKE_CENTS,
          odds: 1_001,
          policy: 'any',
        }
        return nc.request(PLACE_SUBJECT, JSON.stringify(request), { timeout: 10_000 })
      }),
    )
  }
  const ledger = await joinLedger({ nc, region: REGION, shards: SHARDS, log: pino({ level: 'warn' }) })
  const prefix = `settle-${point}-`
  let settled = 0
  ledger.onEntry((_shard, _seq, result, entry) => {
    if (entry?.type === 'settlement' && entry.betId.startsWith(prefix) && result.status === 'applied')
      settled++
  })
  while (!ledger.caughtUp()) await new Promise((resolve) => setTimeout(resolve, 20))
  feed.emit({ type: 'serve', point, second: false })
  const resultAt = performance.now()
  feed.emit({ type: 'point-end', point, winner: 'home', ace: false })
  const deadline = Date.now() + 120_000
  while (settled < SETTLE_BETS && Date.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, 5))
  const elapsedMs = performance.now() - resultAt
  console.log(
    `settlement: ${settled} of ${SETTLE_BETS} bets on one market settled ${(elapsedMs / 1000).toFixed(2)} s after the result (goal <= 1 s)`,
  )
  await ledger.close()
}

await main()
