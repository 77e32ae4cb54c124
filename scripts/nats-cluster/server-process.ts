/**
 * One nats-server process of a test launch: started from its config file, stopped, paused and
 * resumed by its PID only, its output kept in a bounded ring, and asked over its monitoring port
 * whether it serves, which gateways it holds and which JetStream meta leader it sees.
 */

import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { liveChildren } from './exit-cleanup.ts'
import { describeError } from './poll.ts'
import { LOOPBACK_HOST, type ServerPlan } from './server-config.ts'

/** Log lines kept per server, enough to see why a server failed without holding a whole run in memory. */
export const LOG_LINES_MAX = 200
/** A single line longer than this is cut, so one runaway line cannot defeat the line bound. */
const LOG_LINE_CHARS_MAX = 4_096
/** Bounds one probe (HTTP or JetStream API call) so a hung server cannot use the whole deadline in one try. */
export const PROBE_TIMEOUT_MS = 2_000
/** Time a server gets to flush its store after SIGTERM before it is killed. */
const STOP_GRACE_MS = 10_000
/** SIGKILL cannot be ignored; this only guards against never hearing about the exit. */
const KILL_WAIT_MS = 5_000

export type StopSignal = 'SIGTERM' | 'SIGKILL'

export interface ServerPorts {
  readonly client: number
  readonly cluster: number
  readonly monitor: number
  /** Only with `websocket: true`. */
  readonly websocket: number | undefined
  /** Only in a super-cluster. */
  readonly gateway: number | undefined
}

export interface NatsServerInfo {
  readonly name: string
  /** Client URL, nats://127.0.0.1:port. */
  readonly url: string
  /** HTTP monitoring base URL (/varz, /jsz, /healthz). */
  readonly monitorUrl: string
  /** ws://127.0.0.1:port when the cluster was started with `websocket: true`. */
  readonly websocketUrl: string | undefined
  readonly storeDir: string
  readonly configFile: string
  /** Every port the server listens on; the same after a restart. */
  readonly ports: ServerPorts
  /** PID of the running process; undefined while the server is stopped. */
  readonly pid: number | undefined
  readonly running: boolean
  /** The last LOG_LINES_MAX lines the server wrote to stdout or stderr, plus the helper's own notes. */
  logs(): string[]
}

export interface ServerProcess extends NatsServerInfo {
  /** The cluster it belongs to: in a super-cluster, its region. */
  readonly clusterName: string
  /** True between pause() and resume(), unless the process exited meanwhile. */
  readonly paused: boolean
  start(): Promise<void>
  /** Signal it and wait for its exit; SIGKILL follows a SIGTERM it does not act on in time. */
  stop(signal: StopSignal): Promise<void>
  /** SIGSTOP: the process keeps its sockets but answers nothing, as if the network had gone silent. */
  pause(): void
  resume(): void
  /** True once the monitoring endpoint answers, i.e. the process is up and serving. */
  answers(): Promise<true | undefined>
  /** Names of the regions this server holds an outbound gateway connection to. */
  gatewaysTo(): Promise<string[]>
  /** The JetStream meta leader this server sees, or undefined while there is none. */
  metaLeader(): Promise<string | undefined>
}

export function createServerProcess(plan: ServerPlan): ServerProcess {
  const name = plan.name
  const log = createLogRing(LOG_LINES_MAX)
  let child: ChildProcess | undefined
  let exited: Promise<void> = Promise.resolve()
  let paused = false

  const running = () => child?.pid !== undefined && child.exitCode === null && child.signalCode === null
  const pid = () => (running() ? child?.pid : undefined)
  const waitExit = (timeoutMs: number) => exitedWithin(exited, timeoutMs)

  async function stop(signal: StopSignal): Promise<void> {
    const stopping = child
    if (!stopping || !running()) return
    stopping.kill(signal)
    // A paused server (by pause() or by a chaos script holding its PID) only acts on SIGTERM once it
    // runs again; for a running one SIGCONT is a no-op.
    stopping.kill('SIGCONT')
    paused = false
    if (await waitExit(STOP_GRACE_MS)) return
    log.note(`still running ${STOP_GRACE_MS} ms after ${signal}; sending SIGKILL`)
    stopping.kill('SIGKILL')
    if (!(await waitExit(KILL_WAIT_MS))) {
      throw new Error(`${name} (pid ${stopping.pid}) survived SIGKILL`)
    }
  }

  return {
    ...describePlan(plan),
    get pid() {
      return pid()
    },
    get running() {
      return running()
    },
    get paused() {
      return paused && running()
    },
    logs: () => log.lines(),
    async start() {
      if (running()) throw new Error(`${name} is already running (pid ${pid()})`)
      const spawned = spawnServer(plan, log)
      child = spawned.child
      exited = spawned.exited
      await spawned.started
    },
    stop,
    pause() {
      if (!running()) throw new Error(`${name} is not running`)
      child?.kill('SIGSTOP')
      paused = true
      log.note(`paused pid ${pid()} (SIGSTOP)`)
    },
    resume() {
      if (!running()) throw new Error(`${name} is not running`)
      child?.kill('SIGCONT')
      paused = false
      log.note(`resumed pid ${pid()} (SIGCONT)`)
    },
    ...monitorProbes(`http://${LOOPBACK_HOST}:${plan.httpPort}`),
  }
}

/** What never changes about a server: its name, addresses, ports and files. */
function describePlan(plan: ServerPlan) {
  return {
    name: plan.name,
    clusterName: plan.clusterName,
    url: `nats://${LOOPBACK_HOST}:${plan.clientPort}`,
    monitorUrl: `http://${LOOPBACK_HOST}:${plan.httpPort}`,
    websocketUrl:
      plan.websocketPort === undefined ? undefined : `ws://${LOOPBACK_HOST}:${plan.websocketPort}`,
    storeDir: plan.storeDir,
    configFile: plan.configFile,
    ports: {
      client: plan.clientPort,
      cluster: plan.clusterPort,
      monitor: plan.httpPort,
      websocket: plan.websocketPort,
      gateway: plan.gatewayPort,
    },
  }
}

type LogRing = ReturnType<typeof createLogRing>

/**
 * Spawn nats-server with the plan's config, its output going to `log`. `started` settles once the
 * process runs, or fails with why it cannot; `exited` once it has exited.
 */
function spawnServer(plan: ServerPlan, log: LogRing) {
  const bin = process.env.NATS_SERVER_BIN || 'nats-server'
  const child = spawn(bin, ['-c', plan.configFile], {
    env: serverEnv(plan),
    cwd: path.dirname(plan.configFile),
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  if (child.pid !== undefined) liveChildren.add(child)
  const exited = watchExit(child, log)
  for (const stream of [child.stdout, child.stderr]) {
    stream?.setEncoding('utf8').on('data', (chunk: string) => log.write(chunk))
  }
  // A missing binary is reported by an async error event; wait for it so the cause is not lost.
  const started = once(child, 'spawn').then(
    () => log.note(`started ${bin} -c ${plan.configFile} as pid ${child.pid}`),
    (err: unknown) => {
      throw new Error(`cannot run ${bin} for ${plan.name} (set NATS_SERVER_BIN?): ${describeError(err)}`)
    },
  )
  return { child, exited, started }
}

/** nats.conf reads these; they are what differs between servers besides the cluster block. */
function serverEnv(plan: ServerPlan): NodeJS.ProcessEnv {
  return {
    ...process.env,
    NATS_SERVER_NAME: plan.name,
    NATS_LISTEN: `${LOOPBACK_HOST}:${plan.clientPort}`,
    NATS_HTTP: `${LOOPBACK_HOST}:${plan.httpPort}`,
    NATS_STORE_DIR: plan.storeDir,
  }
}

function watchExit(child: ChildProcess, log: LogRing): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      liveChildren.delete(child)
      log.note(`pid ${child.pid} exited (code ${code}, signal ${signal})`)
      resolve()
    })
    child.on('error', (err) => {
      log.note(`process error: ${err.message}`)
      // Without a pid it never started, so no exit event will come.
      if (child.pid === undefined) resolve()
    })
  })
}

/** True if `exited` settles within `timeoutMs`. */
async function exitedWithin(exited: Promise<void>, timeoutMs: number): Promise<boolean> {
  const timer = new AbortController()
  const timedOut = delay(timeoutMs, false, { signal: timer.signal }).catch(() => false)
  const hasExited = await Promise.race([exited.then(() => true), timedOut])
  timer.abort()
  return hasExited
}

/** What a server's monitoring port tells. */
function monitorProbes(monitorUrl: string) {
  /** A JSON document from the monitoring port, or undefined when it does not answer with one. */
  const monitor = async (endpoint: string): Promise<unknown> => {
    const response = await fetch(`${monitorUrl}/${endpoint}`, {
      signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
    })
    return response.ok ? await response.json() : undefined
  }
  return {
    async answers(): Promise<true | undefined> {
      const response = await fetch(`${monitorUrl}/varz`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) })
      return response.ok ? true : undefined
    },
    gatewaysTo: async (): Promise<string[]> => readOutboundGateways(await monitor('gatewayz')),
    metaLeader: async (): Promise<string | undefined> => readMetaLeader(await monitor('jsz')),
  }
}

/** The regions a server's /gatewayz names as outbound gateways. */
export function readOutboundGateways(body: unknown): string[] {
  if (!isRecord(body) || !isRecord(body.outbound_gateways)) return []
  return Object.keys(body.outbound_gateways)
}

function readMetaLeader(body: unknown): string | undefined {
  if (!isRecord(body) || !isRecord(body.meta_cluster)) return undefined
  const leader = body.meta_cluster.leader
  return typeof leader === 'string' && leader !== '' ? leader : undefined
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null
}

/** Keeps the last `max` lines of a process's output. */
function createLogRing(max: number) {
  const lines: string[] = []
  let partial = ''
  const push = (line: string) => {
    lines.push(line.slice(0, LOG_LINE_CHARS_MAX))
    if (lines.length > max) lines.shift()
  }
  return {
    write(chunk: string): void {
      const parts = (partial + chunk).split('\n')
      partial = (parts.pop() ?? '').slice(0, LOG_LINE_CHARS_MAX)
      for (const line of parts) push(line)
    },
    /** A line from the helper itself, marked so it is not mistaken for server output. */
    note(line: string): void {
      push(`[nats-cluster] ${line}`)
    },
    lines(): string[] {
      return partial ? [...lines, partial] : [...lines]
    },
  }
}
