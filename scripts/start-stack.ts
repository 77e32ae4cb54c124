/**
 * The whole stack on this machine: a 3-server nats-server cluster, one trader playing a simulated
 * tennis match, two API nodes, two settlement nodes (each its own process, logs in the run
 * directory), and a crowd of bettors placing bets through the NATS service. Prints progress every
 * second; at the end (Ctrl-C or --duration) it checks the ledger and prints a summary.
 *
 *   npm start                              # until Ctrl-C
 *   npm start -- --duration 60 --bettors 20 --time-scale 2 --logs delete
 */

import type { ChildProcess } from 'node:child_process'
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { createHlc, yjsBackend } from '../crdt/index.ts'
import { ensureFabric } from '../nodes/fabric/streams.ts'
import { startBettors } from './bettors.ts'
import { startNatsCluster } from './nats-cluster.ts'
import { spawnNodeProcess, stopProcesses } from './node-process.ts'

const REGION = 'eu'
const SHARDS = 8
const READY_TIMEOUT_MS = 60_000
const DURATION_S_MAX = 86_400

function fail(message: string): never {
  console.error(`start: ${message}`)
  process.exit(1)
}

function parseOptions() {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string', default: '0' },
      bettors: { type: 'string', default: '10' },
      'time-scale': { type: 'string', default: '1' },
      seed: { type: 'string', default: '7' },
      logs: { type: 'string', default: 'keep' },
    },
  })
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
    timeScale: number('time-scale', values['time-scale'], 0.1, 100),
    seed: Math.floor(number('seed', values.seed, 0, 2 ** 32 - 1)),
    /** The run directory holds each node's log and SQLite file; tests delete it, people read it. */
    deleteRunDir: values.logs === 'delete',
  }
}

function spawnNode(dir: string, name: string, main: string, env: Record<string, string>): ChildProcess {
  const log = createWriteStream(join(dir, `${name}.log`))
  const child = spawnNodeProcess({ main, nodeId: name, region: REGION, shards: SHARDS, env })
  child.stdout?.pipe(log)
  child.stderr?.pipe(log)
  child.on('exit', (code, signal) => {
    if (!stopping) console.error(`${name} exited (${code ?? signal}); see ${join(dir, `${name}.log`)}`)
  })
  return child
}

let stopping = false

async function main(): Promise<void> {
  const options = parseOptions()
  const dir = mkdtempSync(join(tmpdir(), 'fabric-stack-'))
  console.log(`starting a 3-server nats-server cluster (run directory ${dir})`)
  const cluster = await startNatsCluster()
  console.log(`cluster ready: ${cluster.servers.join(' ')}`)
  const servers = cluster.servers.join(',')
  const nc = await cluster.connect()
  // Create the streams once here, so five processes starting at once do not all race to.
  await ensureFabric(nc, REGION)
  const nodes = new Map<string, ChildProcess>([
    [
      'trader-1',
      spawnNode(dir, 'trader-1', 'nodes/trader/main.ts', {
        FABRIC_NATS_SERVERS: servers,
        TRADER_SEED: String(options.seed),
        TRADER_TIME_SCALE: String(options.timeScale),
      }),
    ],
    ['api-1', spawnNode(dir, 'api-1', 'nodes/api/main.ts', { FABRIC_NATS_SERVERS: servers })],
    ['api-2', spawnNode(dir, 'api-2', 'nodes/api/main.ts', { FABRIC_NATS_SERVERS: servers })],
    [
      'settle-1',
      spawnNode(dir, 'settle-1', 'nodes/settlement/main.ts', {
        FABRIC_NATS_SERVERS: servers,
        SETTLEMENT_DATABASE: join(dir, 'settle-1.db'),
      }),
    ],
    [
      'settle-2',
      spawnNode(dir, 'settle-2', 'nodes/settlement/main.ts', {
        FABRIC_NATS_SERVERS: servers,
        SETTLEMENT_DATABASE: join(dir, 'settle-2.db'),
      }),
    ],
  ])
  console.log(`started ${[...nodes.keys()].join(', ')}; logs in ${dir}`)
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
    await stopProcesses([...nodes.values()])
    await cluster.close()
    if (options.deleteRunDir) rmSync(dir, { recursive: true, force: true })
    else console.log(`node logs kept in ${dir}`)
    process.exit(failed || !bettors?.healthy() ? 1 : 0)
  }
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
  const running = bettors
  progress = setInterval(() => console.log(running.progressLine()), 1_000)
  if (options.durationS > 0)
    setTimeout(() => void stop(`${options.durationS} s elapsed`), options.durationS * 1_000)
}

await main()
