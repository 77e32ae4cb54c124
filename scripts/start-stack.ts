/**
 * The whole stack on this machine: a 3-server nats-server cluster, one trader process playing
 * simulated tennis matches (three by default, starting a few seconds apart), two API nodes, two settlement nodes, the gateway with its web page (each its own
 * process, logs in the run directory), and a crowd of bettors placing bets through the NATS
 * service. Prints the page's address, then progress every second; at the end (Ctrl-C or
 * --duration) it checks the ledger and prints a summary.
 *
 *   npm start                              # until Ctrl-C; the page is at http://127.0.0.1:8080/
 *   npm start -- --duration 60 --bettors 20 --games 5 --time-scale 2 --port 0 --logs delete
 */

import type { ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { createHlc, yjsBackend } from '../crdt/index.ts'
import { DIVERGED_EXIT_CODE, REBUILDS_PER_NODE_MAX, rebuildBackoffMs } from '../nodes/fabric/node-main.ts'
import { ensureFabric, limitsWithShards } from '../nodes/fabric/streams.ts'
import { depositSubject } from '../protocol/subjects.ts'
import { startBettors } from './bettors.ts'
import { parseCommandLine } from './command-line.ts'
import { freePorts, startNatsCluster } from './nats-cluster.ts'
import { spawnNodeProcess, stopProcesses } from './node-process.ts'

/** How often settle-1 writes the ledger checkpoints (and purges below the one before). */
const LEDGER_CHECKPOINT_MS = 300_000
const REGION = 'eu'
const SHARDS = 8
const READY_TIMEOUT_MS = 60_000
const DURATION_S_MAX = 86_400
/** The matches one run plays at most; a trader process runs up to WRITER_GAMES_MAX. */
const GAMES_MAX = 100
/** How long after the previous one each match starts (at time scale 1). */
const MATCH_STAGGER_MS = 3_000
/** Times a node whose state diverged from a stream is started again in one run. */
/** The user the page suggests logging in as, credited at start. */
const DEMO_USER = 'demo'
const DEMO_DEPOSIT_CENTS = 100_000

function fail(message: string): never {
  console.error(`start: ${message}`)
  process.exit(1)
}

function parseOptions() {
  const values = parseCommandLine(
    {
      duration: { type: 'string', default: '0' },
      bettors: { type: 'string', default: '10' },
      games: { type: 'string', default: '3' },
      'time-scale': { type: 'string', default: '1' },
      seed: { type: 'string', default: '7' },
      logs: { type: 'string', default: 'keep' },
      port: { type: 'string', default: '8080' },
    },
    `[--duration 0..${DURATION_S_MAX} s, 0: until stopped] [--bettors 1..1000] [--games 1..${GAMES_MAX}] [--time-scale 0.1..100] [--seed n] [--logs keep|delete] [--port 0..65535]`,
  )
  if (values.logs !== 'keep' && values.logs !== 'delete') fail('--logs must be keep or delete')
  const number = (name: string, text: string, min: number, max: number) => {
    const value = Number(text)
    if (!Number.isFinite(value) || value < min || value > max)
      fail(`--${name} must be a number in ${min}..${max}`)
    return value
  }
  return {
    durationS: number('duration', values.duration, 0, DURATION_S_MAX),
    bettors: Math.floor(number('bettors', values.bettors, 1, 1_000)),
    games: Math.floor(number('games', values.games, 1, GAMES_MAX)),
    timeScale: number('time-scale', values['time-scale'], 0.1, 100),
    seed: Math.floor(number('seed', values.seed, 0, 2 ** 32 - 1)),
    /** The gateway's port (0: any free one). */
    port: Math.floor(number('port', values.port, 0, 65_535)),
    /** The run directory holds each node's log and SQLite file; tests delete it, people read it. */
    deleteRunDir: values.logs === 'delete',
  }
}

/** The node processes by name, the one running now (a node started again replaces its entry). */
const nodeProcesses = new Map<string, ChildProcess>()
const rebuilds = new Map<string, number>()

function spawnNode(dir: string, name: string, main: string, env: Record<string, string>): ChildProcess {
  const log = createWriteStream(join(dir, `${name}.log`), { flags: 'a' })
  const child = spawnNodeProcess({ main, nodeId: name, region: REGION, shards: SHARDS, env })
  child.stdout?.pipe(log)
  child.stderr?.pipe(log)
  nodeProcesses.set(name, child)
  child.on('exit', (code, signal) => {
    if (stopping) return
    const count = rebuilds.get(name) ?? 0
    // A node whose state diverged from a stream exits to be started again and rebuild from the log.
    if (code === DIVERGED_EXIT_CODE && count < REBUILDS_PER_NODE_MAX) {
      rebuilds.set(name, count + 1)
      const waitMs = rebuildBackoffMs(count)
      console.error(
        `${name} found its state diverged from a stream; starting it again in ${waitMs} ms to rebuild`,
      )
      setTimeout(() => {
        if (!stopping) spawnNode(dir, name, main, env)
      }, waitMs)
      return
    }
    console.error(`${name} exited (${code ?? signal}); see ${join(dir, `${name}.log`)}`)
  })
  return child
}

let stopping = false

/** The gateway logs its address once it listens; read it from the process's log lines. */
function gatewayUrl(child: ChildProcess, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = ''
    const timer = setTimeout(() => reject(new Error('the gateway did not start listening')), timeoutMs)
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString('utf8')
      for (const line of buffered.split('\n')) {
        const url = /"url":"(http:\/\/[^"]+)","msg":"gateway listening"/.exec(line)?.[1]
        if (url === undefined) continue
        clearTimeout(timer)
        child.stdout?.off('data', onData)
        resolve(url)
      }
      buffered = buffered.slice(buffered.lastIndexOf('\n') + 1)
    }
    child.stdout?.on('data', onData)
    child.once('exit', () => reject(new Error('the gateway exited')))
  })
}

async function main(): Promise<void> {
  const options = parseOptions()
  const dir = mkdtempSync(join(tmpdir(), 'fabric-stack-'))
  console.log(`starting a 3-server nats-server cluster (run directory ${dir})`)
  const cluster = await startNatsCluster()
  console.log(`cluster ready: ${cluster.servers.join(' ')}`)
  const servers = cluster.servers.join(',')
  const nc = await cluster.connect()
  // Create the streams once here, so five processes starting at once do not all race to.
  await ensureFabric(nc, REGION, limitsWithShards(SHARDS))
  // The page's origin names the gateway's port, so a free one is found here, not by the gateway.
  const [port = options.port] = options.port === 0 ? await freePorts(1) : []
  const nodes = new Map<string, ChildProcess>([
    [
      'trader-1',
      spawnNode(dir, 'trader-1', 'nodes/trader/main.ts', {
        FABRIC_NATS_SERVERS: servers,
        TRADER_SEED: String(options.seed),
        TRADER_TIME_SCALE: String(options.timeScale),
        TRADER_GAMES: String(options.games),
        TRADER_STAGGER_MS: String(Math.round(MATCH_STAGGER_MS / options.timeScale)),
      }),
    ],
    ['api-1', spawnNode(dir, 'api-1', 'nodes/api/main.ts', { FABRIC_NATS_SERVERS: servers })],
    ['api-2', spawnNode(dir, 'api-2', 'nodes/api/main.ts', { FABRIC_NATS_SERVERS: servers })],
    [
      'settle-1',
      spawnNode(dir, 'settle-1', 'nodes/settlement/main.ts', {
        FABRIC_NATS_SERVERS: servers,
        SETTLEMENT_DATABASE: join(dir, 'settle-1.db'),
        // This one writes the ledger checkpoints and purges below them (docs/operations.md).
        SETTLEMENT_LEDGER_CHECKPOINT_MS: String(LEDGER_CHECKPOINT_MS),
      }),
    ],
    [
      'settle-2',
      spawnNode(dir, 'settle-2', 'nodes/settlement/main.ts', {
        FABRIC_NATS_SERVERS: servers,
        SETTLEMENT_DATABASE: join(dir, 'settle-2.db'),
        // One settlement node per region spreads the shard leaders (nodes/settlement/options.ts).
        SETTLEMENT_LEADER_SPREAD_MS: '0',
      }),
    ],
    [
      'gateway-1',
      spawnNode(dir, 'gateway-1', 'gateway/main.ts', {
        FABRIC_NATS_SERVERS: servers,
        GATEWAY_PORT: String(port),
        // The page's origin, by both names of this machine: the sockets it opens are allowed.
        GATEWAY_PUBLIC_ORIGIN: `http://127.0.0.1:${port}`,
        GATEWAY_ORIGINS: `http://localhost:${port}`,
        // A fresh secret per run: the demo login signs tokens with it, nothing else knows it.
        GATEWAY_JWT_SECRET: randomBytes(32).toString('hex'),
        GATEWAY_DEMO_LOGIN: 'true',
      }),
    ],
  ])
  console.log(`started ${[...nodes.keys()].join(', ')}; logs in ${dir}`)
  const pageUrl = gatewayUrl(nodes.get('gateway-1') as ChildProcess, READY_TIMEOUT_MS)
  let bettors: Awaited<ReturnType<typeof startBettors>> | null = null
  let progress: NodeJS.Timeout | null = null
  const stop = async (reason: string, failed = false) => {
    if (stopping) return
    stopping = true
    if (progress) clearInterval(progress)
    console.log(`stopping (${reason})`)
    if (bettors) {
      await bettors.stop()
      console.log(bettors.summary())
    }
    await stopProcesses([...nodeProcesses.values()])
    await cluster.close()
    if (options.deleteRunDir) rmSync(dir, { recursive: true, force: true })
    else console.log(`node logs kept in ${dir}`)
    process.exit(failed || !bettors?.healthy() ? 1 : 0)
  }
  // A closed stdout (`npm start | head`) must stop the stack, not crash past the cleanup.
  process.stdout.on('error', () => void stop('stdout closed'))
  process.on('SIGINT', () => void stop('Ctrl-C'))
  process.on('SIGTERM', () => void stop('SIGTERM'))
  try {
    bettors = await startBettors({
      nc,
      region: REGION,
      count: options.bettors,
      seed: options.seed,
      hlc: createHlc({ node: 'bettors' }),
      backend: yjsBackend,
      log: pino({ level: 'warn' }),
      readyTimeoutMs: READY_TIMEOUT_MS,
    })
  } catch (error) {
    await stop(`the stack did not come up: ${(error as Error).message}`, true)
    return
  }
  try {
    const url = await pageUrl
    await nc.request(
      depositSubject(DEMO_USER, SHARDS),
      JSON.stringify({ id: `deposit-${DEMO_USER}`, userId: DEMO_USER, amountCents: DEMO_DEPOSIT_CENTS }),
      { timeout: 5_000 },
    )
    console.log(`page: ${url}/ (log in as "${DEMO_USER}", credited with ${DEMO_DEPOSIT_CENTS / 100})`)
  } catch (error) {
    await stop(`the gateway did not come up: ${(error as Error).message}`, true)
    return
  }
  const running = bettors
  progress = setInterval(() => console.log(running.progressLine()), 1_000)
  if (options.durationS > 0)
    setTimeout(() => void stop(`${options.durationS} s elapsed`), options.durationS * 1_000)
}

await main()
