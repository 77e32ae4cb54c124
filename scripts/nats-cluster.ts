/**
 * A real nats-server cluster for tests: N servers with JetStream on free loopback ports, each with its
 * own store dir and config file in a fresh temp dir. Every per-server config includes the project's
 * nats.conf, so tests run against the same limits as deployments; only the cluster block is added here,
 * and, when asked for, a WebSocket listener and a higher connection limit (benchmarks use them to
 * compare the gateway with browsers talking to nats-server directly).
 *
 * The helper only ever signals processes it spawned, and always by their PID.
 */

import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { rmSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { type JetStreamManager, jetstreamManager, StorageType } from '@nats-io/jetstream'
import { connect, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node'

export const DEFAULT_SERVER_COUNT = 3
export const DEFAULT_READY_TIMEOUT_MS = 30_000
/** Short enough to add little to a real wait, long enough not to hammer a server that is starting. */
export const POLL_INTERVAL_MS = 100
/** Log lines kept per server, enough to see why a server failed without holding a whole run in memory. */
export const LOG_LINES_MAX = 200
/** A single line longer than this is cut, so one runaway line cannot defeat the line bound. */
const LOG_LINE_CHARS_MAX = 4_096
/** Bounds one probe (HTTP or JetStream API call) so a hung server cannot use the whole deadline in one try. */
const PROBE_TIMEOUT_MS = 2_000
/** Time a server gets to flush its store after SIGTERM before it is killed. */
const STOP_GRACE_MS = 10_000
/** SIGKILL cannot be ignored; this only guards against never hearing about the exit. */
const KILL_WAIT_MS = 5_000
/** JetStream refuses more replicas than this. */
const STREAM_REPLICAS_MAX = 5
/** Client, cluster and monitor port; a WebSocket port is one more. */
const PORTS_PER_SERVER = 3
const LOOPBACK_HOST = '127.0.0.1'
const CLUSTER_NAME = 'fabric-test'
const PROBE_STREAM = 'CLUSTER_READY_PROBE'
const PROBE_SUBJECT = 'cluster-ready-probe'

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url))
const SHARED_CONFIG_FILE = path.join(REPO_ROOT, 'nats.conf')

// Safety net for a test process that exits without close() (a crash, process.exit): leave no server
// running and no temp dir behind. Only this module's own children and dirs are touched.
const liveChildren = new Set<ChildProcess>()
const liveDirs = new Set<string>()
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL')
  for (const dir of liveDirs) {
    try {
      rmSync(dir, { recursive: true, force: true })
    } catch {
      // A just-killed server may still be writing; a leftover dir beats failing the exit.
    }
  }
})

export type StopSignal = 'SIGTERM' | 'SIGKILL'

export interface NatsClusterOptions {
  /** Number of servers; R3 streams need at least 3. */
  count?: number
  /** How long startNatsCluster and startServer wait for JetStream to be usable. */
  readyTimeoutMs?: number
  /** Give each server a plain (no TLS) WebSocket listener on a free loopback port. */
  websocket?: boolean
  /**
   * Client connections each server admits, WebSocket ones included, in place of nats.conf's
   * `max_connections` (sized for nodes, not end users): for benchmarks that open thousands of sockets.
   */
  maxConnections?: number
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
  /** PID of the running process; undefined while the server is stopped. */
  readonly pid: number | undefined
  readonly running: boolean
  /** The last LOG_LINES_MAX lines the server wrote to stdout or stderr, plus the helper's own notes. */
  logs(): string[]
}

export interface NatsCluster {
  /** Client URLs of all servers, in server order. */
  readonly servers: string[]
  readonly monitorUrls: string[]
  /** WebSocket URLs of all servers, in server order; empty unless started with `websocket: true`. */
  readonly websocketUrls: string[]
  /** The temp dir holding configs and store dirs; removed by close(). */
  readonly dir: string
  readonly processes: readonly NatsServerInfo[]
  /** A connection that knows every server; closed by close() if still open. */
  connect(options?: Omit<NodeConnectionOptions, 'servers'>): Promise<NatsConnection>
  /** Stops server `index` and waits for its exit. SIGKILL simulates a crash. */
  stopServer(index: number, signal?: StopSignal): Promise<void>
  /** Restarts server `index` with its old config and store dir; resolves once it rejoined JetStream. */
  startServer(index: number): Promise<void>
  /** The last log lines of every server, for failure messages. */
  logs(): string
  close(): Promise<void>
}

export interface PollOptions {
  timeoutMs: number
  /** Runs before each attempt; throw to give up early, e.g. when a process that must run has died. */
  check?: () => void
  /** Appended to the timeout error, e.g. server logs. */
  context?: () => string
}

/**
 * Calls `attempt` every POLL_INTERVAL_MS until it returns a value other than undefined.
 * Errors from `attempt` count as "not yet"; the last one is reported if the deadline passes.
 */
export async function pollUntil<T>(
  what: string,
  attempt: () => Promise<T | undefined>,
  options: PollOptions,
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs
  let last = 'no attempt finished'
  for (;;) {
    options.check?.()
    try {
      const value = await attempt()
      if (value !== undefined) return value
      last = 'not yet'
    } catch (err) {
      last = describeError(err)
    }
    if (Date.now() >= deadline) {
      const context = options.context ? `\n${options.context()}` : ''
      throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${what} (last: ${last})${context}`)
    }
    await delay(POLL_INTERVAL_MS)
  }
}

export async function startNatsCluster(options: NatsClusterOptions = {}): Promise<NatsCluster> {
  const count = options.count ?? DEFAULT_SERVER_COUNT
  if (!Number.isInteger(count) || count < 1) {
    throw new RangeError(`count must be a positive integer: ${count}`)
  }
  const { maxConnections } = options
  if (maxConnections !== undefined && !(Number.isInteger(maxConnections) && maxConnections >= 1)) {
    throw new RangeError(`maxConnections must be a positive integer: ${maxConnections}`)
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'nats-cluster-'))
  liveDirs.add(dir)
  let cluster: Cluster | undefined
  try {
    const servers = await prepareServers(dir, count, {
      websocket: options.websocket ?? false,
      ...(maxConnections !== undefined ? { maxConnections } : {}),
    })
    cluster = new Cluster(dir, servers, options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS)
    await cluster.start()
    return cluster
  } catch (err) {
    // The caller never gets a handle to close, so clean up here.
    if (cluster) await cluster.close().catch(() => undefined)
    else await removeDir(dir)
    throw err
  }
}

class Cluster implements NatsCluster {
  readonly dir: string
  readonly #servers: readonly ServerProcess[]
  readonly #readyTimeoutMs: number
  readonly #connections = new Set<NatsConnection>()
  #closing: Promise<void> | undefined

  constructor(dir: string, servers: readonly ServerProcess[], readyTimeoutMs: number) {
    this.dir = dir
    this.#servers = servers
    this.#readyTimeoutMs = readyTimeoutMs
  }

  get servers(): string[] {
    return this.#servers.map((server) => server.url)
  }

  get monitorUrls(): string[] {
    return this.#servers.map((server) => server.monitorUrl)
  }

  get websocketUrls(): string[] {
    return this.#servers.flatMap((server) => (server.websocketUrl === undefined ? [] : [server.websocketUrl]))
  }

  get processes(): readonly NatsServerInfo[] {
    return this.#servers
  }

  async start(): Promise<void> {
    await Promise.all(this.#servers.map((server) => server.start()))
    const deadline = Date.now() + this.#readyTimeoutMs
    const remaining = () => Math.max(0, deadline - Date.now())
    await this.#poll('every server to see the same JetStream meta leader', remaining(), this.#servers, () =>
      this.#agreedMetaLeader(),
    )
    const nc = await this.#poll('a client connection', remaining(), this.#servers, () =>
      this.connect({ timeout: PROBE_TIMEOUT_MS }),
    )
    try {
      const jsm = await jetstreamManager(nc, { timeout: PROBE_TIMEOUT_MS, checkAPI: false })
      await this.#poll('JetStream account info', remaining(), this.#servers, () => jsm.getAccountInfo())
      // A meta leader alone does not mean it can place replicas yet; creating one proves it can.
      await this.#poll('a replicated probe stream', remaining(), this.#servers, () => this.#probeStream(jsm))
    } finally {
      await nc.close()
    }
  }

  async connect(options: Omit<NodeConnectionOptions, 'servers'> = {}): Promise<NatsConnection> {
    if (this.#closing) throw new Error('the cluster is closed')
    const nc = await connect({ ...options, servers: this.servers })
    this.#connections.add(nc)
    void nc.closed().then(() => this.#connections.delete(nc))
    return nc
  }

  async stopServer(index: number, signal: StopSignal = 'SIGTERM'): Promise<void> {
    await this.#server(index).stop(signal)
  }

  async startServer(index: number): Promise<void> {
    const server = this.#server(index)
    await server.start()
    await this.#poll(`${server.name} to rejoin JetStream`, this.#readyTimeoutMs, [server], () =>
      server.metaLeader(),
    )
  }

  logs(): string {
    return this.#servers.map(formatLogs).join('\n')
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown()
    return this.#closing
  }

  async #shutdown(): Promise<void> {
    await Promise.allSettled([...this.#connections].map((nc) => nc.close()))
    const stops = await Promise.allSettled(this.#servers.map((server) => server.stop('SIGTERM')))
    await removeDir(this.dir)
    const failed = stops.find((result) => result.status === 'rejected')
    if (failed) throw failed.reason
  }

  #server(index: number): ServerProcess {
    const server = this.#servers[index]
    if (!server) throw new RangeError(`no server ${index}; the cluster has ${this.#servers.length}`)
    return server
  }

  #poll<T>(
    what: string,
    timeoutMs: number,
    mustRun: readonly ServerProcess[],
    attempt: () => Promise<T | undefined>,
  ): Promise<T> {
    const check = () => {
      // A dead server will not become ready; fail now with its logs instead of at the deadline.
      const dead = mustRun.find((server) => !server.running)
      if (dead) throw new Error(`${dead.name} is not running while waiting for ${what}\n${this.logs()}`)
    }
    return pollUntil(what, attempt, { timeoutMs, check, context: () => this.logs() })
  }

  async #agreedMetaLeader(): Promise<string | undefined> {
    const leaders = await Promise.all(this.#servers.map((server) => server.metaLeader()))
    const [first] = leaders
    return leaders.every((leader) => leader !== undefined && leader === first) ? first : undefined
  }

  async #probeStream(jsm: JetStreamManager): Promise<true> {
    await jsm.streams.add({
      name: PROBE_STREAM,
      subjects: [PROBE_SUBJECT],
      storage: StorageType.Memory,
      num_replicas: Math.min(this.#servers.length, STREAM_REPLICAS_MAX),
    })
    await jsm.streams.delete(PROBE_STREAM)
    return true
  }
}

interface ServerPlan {
  name: string
  clientPort: number
  clusterPort: number
  httpPort: number
  websocketPort: number | undefined
  storeDir: string
  configFile: string
}

interface ServerExtras {
  readonly websocket: boolean
  readonly maxConnections?: number
}

class ServerProcess implements NatsServerInfo {
  readonly name: string
  readonly url: string
  readonly monitorUrl: string
  readonly websocketUrl: string | undefined
  readonly storeDir: string
  readonly configFile: string
  readonly #env: NodeJS.ProcessEnv
  readonly #log = new LogRing(LOG_LINES_MAX)
  #child: ChildProcess | undefined
  #exited: Promise<void> = Promise.resolve()

  constructor(plan: ServerPlan) {
    this.name = plan.name
    this.url = `nats://${LOOPBACK_HOST}:${plan.clientPort}`
    this.monitorUrl = `http://${LOOPBACK_HOST}:${plan.httpPort}`
    this.websocketUrl =
      plan.websocketPort === undefined ? undefined : `ws://${LOOPBACK_HOST}:${plan.websocketPort}`
    this.storeDir = plan.storeDir
    this.configFile = plan.configFile
    // nats.conf reads these; they are what differs between servers besides the cluster block.
    this.#env = {
      ...process.env,
      NATS_SERVER_NAME: plan.name,
      NATS_LISTEN: `${LOOPBACK_HOST}:${plan.clientPort}`,
      NATS_HTTP: `${LOOPBACK_HOST}:${plan.httpPort}`,
      NATS_STORE_DIR: plan.storeDir,
    }
  }

  get pid(): number | undefined {
    return this.running ? this.#child?.pid : undefined
  }

  get running(): boolean {
    const child = this.#child
    return child?.pid !== undefined && child.exitCode === null && child.signalCode === null
  }

  logs(): string[] {
    return this.#log.lines()
  }

  async start(): Promise<void> {
    if (this.running) throw new Error(`${this.name} is already running (pid ${this.pid})`)
    const bin = process.env.NATS_SERVER_BIN || 'nats-server'
    const child = spawn(bin, ['-c', this.configFile], {
      env: this.#env,
      cwd: path.dirname(this.configFile),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.#child = child
    if (child.pid !== undefined) liveChildren.add(child)
    this.#exited = this.#watchExit(child)
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding('utf8').on('data', (chunk: string) => this.#log.write(chunk))
    }
    try {
      // A missing binary is reported by an async error event; wait for it so the cause is not lost.
      await once(child, 'spawn')
    } catch (err) {
      throw new Error(`cannot run ${bin} for ${this.name} (set NATS_SERVER_BIN?): ${describeError(err)}`)
    }
    this.#log.note(`started ${bin} -c ${this.configFile} as pid ${child.pid}`)
  }

  async stop(signal: StopSignal): Promise<void> {
    const child = this.#child
    if (!child || !this.running) return
    child.kill(signal)
    if (await this.#waitExit(STOP_GRACE_MS)) return
    this.#log.note(`still running ${STOP_GRACE_MS} ms after ${signal}; sending SIGKILL`)
    child.kill('SIGKILL')
    if (!(await this.#waitExit(KILL_WAIT_MS))) {
      throw new Error(`${this.name} (pid ${child.pid}) survived SIGKILL`)
    }
  }

  /** The JetStream meta leader this server sees, or undefined while there is none. */
  async metaLeader(): Promise<string | undefined> {
    const response = await fetch(`${this.monitorUrl}/jsz`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) })
    if (!response.ok) return undefined
    return readMetaLeader(await response.json())
  }

  #watchExit(child: ChildProcess): Promise<void> {
    return new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        liveChildren.delete(child)
        this.#log.note(`pid ${child.pid} exited (code ${code}, signal ${signal})`)
        resolve()
      })
      child.on('error', (err) => {
        this.#log.note(`process error: ${err.message}`)
        // Without a pid it never started, so no exit event will come.
        if (child.pid === undefined) resolve()
      })
    })
  }

  async #waitExit(timeoutMs: number): Promise<boolean> {
    const timer = new AbortController()
    const timedOut = delay(timeoutMs, false, { signal: timer.signal }).catch(() => false)
    const exited = await Promise.race([this.#exited.then(() => true), timedOut])
    timer.abort()
    return exited
  }
}

/** Keeps the last `max` lines of a process's output. */
class LogRing {
  readonly #max: number
  readonly #lines: string[] = []
  #partial = ''

  constructor(max: number) {
    this.#max = max
  }

  write(chunk: string): void {
    const parts = (this.#partial + chunk).split('\n')
    this.#partial = (parts.pop() ?? '').slice(0, LOG_LINE_CHARS_MAX)
    for (const line of parts) this.#push(line)
  }

  /** A line from the helper itself, marked so it is not mistaken for server output. */
  note(line: string): void {
    this.#push(`[nats-cluster] ${line}`)
  }

  lines(): string[] {
    return this.#partial ? [...this.#lines, this.#partial] : [...this.#lines]
  }

  #push(line: string): void {
    this.#lines.push(line.slice(0, LOG_LINE_CHARS_MAX))
    if (this.#lines.length > this.#max) this.#lines.shift()
  }
}

async function prepareServers(dir: string, count: number, extras: ServerExtras): Promise<ServerProcess[]> {
  const portsPerServer = PORTS_PER_SERVER + (extras.websocket ? 1 : 0)
  const ports = await freePorts(count * portsPerServer)
  const plans = Array.from({ length: count }, (_, i) => planServer(dir, i, ports, portsPerServer))
  const routes = plans.map((plan) => `nats-route://${LOOPBACK_HOST}:${plan.clusterPort}`)
  for (const plan of plans) {
    await mkdir(plan.storeDir)
    await writeFile(plan.configFile, renderConfig(dir, plan, routes, extras))
  }
  return plans.map((plan) => new ServerProcess(plan))
}

function planServer(
  dir: string,
  index: number,
  ports: readonly number[],
  portsPerServer: number,
): ServerPlan {
  const name = `n${index + 1}`
  const port = (offset: number) => {
    const value = ports[index * portsPerServer + offset]
    if (value === undefined) throw new Error(`no free port allocated for ${name}`)
    return value
  }
  return {
    name,
    clientPort: port(0),
    clusterPort: port(1),
    httpPort: port(2),
    websocketPort: portsPerServer > PORTS_PER_SERVER ? port(3) : undefined,
    storeDir: path.join(dir, name),
    configFile: path.join(dir, `${name}.conf`),
  }
}

function renderConfig(
  dir: string,
  plan: ServerPlan,
  routes: readonly string[],
  extras: ServerExtras,
): string {
  // nats-server resolves includes against the including file's dir, even absolute-looking ones.
  const include = path.relative(dir, SHARED_CONFIG_FILE)
  return [
    '# Written by scripts/nats-cluster.ts and deleted with its temp dir.',
    '# Name, client and monitor ports and store dir come from NATS_* env vars read by nats.conf.',
    `include ${JSON.stringify(include)}`,
    '',
    // A key set again after the include replaces the included value.
    ...(extras.maxConnections !== undefined ? [`max_connections: ${extras.maxConnections}`, ''] : []),
    ...(plan.websocketPort !== undefined
      ? [
          'websocket {',
          `  listen: ${JSON.stringify(`${LOOPBACK_HOST}:${plan.websocketPort}`)}`,
          '  no_tls: true',
          '}',
          '',
        ]
      : []),
    'cluster {',
    `  name: ${CLUSTER_NAME}`,
    `  listen: ${LOOPBACK_HOST}:${plan.clusterPort}`,
    // Every server lists every route, itself included; nats-server skips the route to itself.
    '  routes: [',
    ...routes.map((route) => `    ${route}`),
    '  ]',
    '}',
    '',
  ].join('\n')
}

/**
 * Ports the OS hands out for 127.0.0.1:0. All listeners stay open until every port is read, so the
 * ports are distinct; another process could still take one before nats-server binds it, which is rare
 * enough for tests.
 */
async function freePorts(count: number): Promise<number[]> {
  const listeners = await Promise.all(Array.from({ length: count }, listenOnFreePort))
  const ports = listeners.map(portOf)
  await Promise.all(listeners.map((listener) => new Promise((resolve) => listener.close(resolve))))
  return ports
}

function listenOnFreePort(): Promise<Server> {
  return new Promise((resolve, reject) => {
    const listener = createServer()
    listener.once('error', reject)
    listener.listen(0, LOOPBACK_HOST, () => resolve(listener))
  })
}

function portOf(listener: Server): number {
  const address = listener.address()
  if (address === null || typeof address === 'string') throw new Error('expected a TCP listener')
  return address.port
}

function readMetaLeader(body: unknown): string | undefined {
  if (!isRecord(body) || !isRecord(body.meta_cluster)) return undefined
  const leader = body.meta_cluster.leader
  return typeof leader === 'string' && leader !== '' ? leader : undefined
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null
}

function formatLogs(server: NatsServerInfo): string {
  const lines = server.logs()
  return [`--- ${server.name} (${server.url}) last ${lines.length} log lines ---`, ...lines].join('\n')
}

function describeError(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err)
}

async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
  liveDirs.delete(dir)
}
