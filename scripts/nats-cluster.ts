/**
 * A real nats-server cluster for tests: N servers with JetStream on free loopback ports, each with its
 * own store dir and config file in a fresh temp dir. Every per-server config includes the project's
 * nats.conf, so tests run against the same limits as deployments; only the cluster block is added here,
 * and, when asked for, a WebSocket listener and a higher connection limit (benchmarks use them to
 * compare the gateway with browsers talking to nats-server directly).
 *
 * `startSuperCluster` starts several such clusters, one per region and named after it, joined by
 * gateway blocks into one super-cluster (see docs/architecture.md, "Regions", and nodes/fabric/regions.ts for
 * how JetStream behaves across regions).
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
import {
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  StorageType,
} from '@nats-io/jetstream'
import { connect, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node'
import { assertRegion } from '../nodes/fabric/streams.ts'

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
/** A super-cluster server has a gateway port besides its client, cluster and monitor ports. */
const PORTS_PER_GATEWAY_SERVER = 4
export const DEFAULT_SERVERS_PER_REGION = 3
/**
 * One meta group spans every region, and it forms only after the gateways have carried every
 * server's JetStream announcement to every other region, which takes longer than inside one cluster.
 */
export const DEFAULT_SUPER_CLUSTER_READY_TIMEOUT_MS = 60_000
const LOOPBACK_HOST = '127.0.0.1'
const CLUSTER_NAME = 'fabric-test'
const PROBE_STREAM = 'CLUSTER_READY_PROBE'
const PROBE_SUBJECT = 'cluster-ready-probe'
const REGION_PROBE_STREAM_PREFIX = 'SUPER_CLUSTER_READY_PROBE_'
const REGION_PROBE_SUBJECT_PREFIX = 'super-cluster-ready-probe'

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

  #shutdown(): Promise<void> {
    return shutdownServers(this.#connections, this.#servers, this.dir)
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
    return pollWhileRunning(what, timeoutMs, mustRun, () => this.logs(), attempt)
  }

  #agreedMetaLeader(): Promise<string | undefined> {
    return agreedMetaLeader(this.#servers)
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

export interface SuperClusterOptions {
  /** One cluster per region, named after it (the fabric's region names: FABRIC_<REGION> is placed there). */
  regions: readonly string[]
  /** Servers per region; an R3 stream placed in a region needs at least 3. */
  serversPerRegion?: number
  /** How long startSuperCluster waits until JetStream works in every region. */
  readyTimeoutMs?: number
}

export interface SuperClusterServerInfo extends NatsServerInfo {
  /** The region (cluster and gateway name) the server belongs to. */
  readonly region: string
  /** True while paused by pauseServer. */
  readonly paused: boolean
  /** The JetStream meta leader this server sees, or undefined while there is none. */
  metaLeader(): Promise<string | undefined>
}

export interface NatsSuperCluster {
  readonly regions: readonly string[]
  /** The temp dir holding configs and store dirs; removed by close(). */
  readonly dir: string
  /** Every server, region by region in the order given; names are `<region>-n<i>`. */
  readonly processes: readonly SuperClusterServerInfo[]
  /** Client URLs of one region's servers. */
  servers(region: string): string[]
  /** One region's servers. */
  processesOf(region: string): readonly SuperClusterServerInfo[]
  /** A connection to one region's servers only (the client learns no URLs across gateways). */
  connect(region: string, options?: Omit<NodeConnectionOptions, 'servers'>): Promise<NatsConnection>
  /** Stops a server by name and waits for its exit. SIGKILL simulates a crash. */
  stopServer(name: string, signal?: StopSignal): Promise<void>
  /**
   * Restarts a server with its old config and store dir; resolves once it serves clients. It does not
   * wait for JetStream: a server in a region cut off from the meta group's quorum never gets a leader.
   */
  startServer(name: string): Promise<void>
  /** SIGSTOP: the server keeps its sockets and answers nothing, as if its links had gone silent. */
  pauseServer(name: string): void
  /** SIGCONT after pauseServer. */
  resumeServer(name: string): void
  /** The last log lines of every server, for failure messages. */
  logs(): string
  close(): Promise<void>
}

/**
 * Starts one cluster per region, joined by gateways into one super-cluster, and resolves once every
 * server sees the same meta leader, every server has a gateway to every other region, and in every
 * region a replicated stream placed there accepts a publish.
 */
export async function startSuperCluster(options: SuperClusterOptions): Promise<NatsSuperCluster> {
  const regions = [...options.regions]
  if (regions.length === 0) throw new RangeError('regions must name at least one region')
  for (const region of regions) assertRegion(region)
  if (new Set(regions).size !== regions.length) {
    throw new RangeError(`regions must be distinct: ${regions.join(', ')}`)
  }
  const perRegion = options.serversPerRegion ?? DEFAULT_SERVERS_PER_REGION
  if (!Number.isInteger(perRegion) || perRegion < 1) {
    throw new RangeError(`serversPerRegion must be a positive integer: ${perRegion}`)
  }
  const dir = await mkdtemp(path.join(tmpdir(), 'nats-super-cluster-'))
  liveDirs.add(dir)
  let cluster: SuperCluster | undefined
  try {
    const servers = await prepareSuperClusterServers(dir, regions, perRegion)
    const readyTimeoutMs = options.readyTimeoutMs ?? DEFAULT_SUPER_CLUSTER_READY_TIMEOUT_MS
    cluster = new SuperCluster(dir, regions, servers, readyTimeoutMs)
    await cluster.start()
    return cluster
  } catch (err) {
    // The caller never gets a handle to close, so clean up here.
    if (cluster) await cluster.close().catch(() => undefined)
    else await removeDir(dir)
    throw err
  }
}

class SuperCluster implements NatsSuperCluster {
  readonly dir: string
  readonly regions: readonly string[]
  readonly #servers: readonly ServerProcess[]
  readonly #regionOf: ReadonlyMap<ServerProcess, string>
  readonly #readyTimeoutMs: number
  readonly #connections = new Set<NatsConnection>()
  #closing: Promise<void> | undefined

  constructor(
    dir: string,
    regions: readonly string[],
    servers: ReadonlyMap<ServerProcess, string>,
    readyTimeoutMs: number,
  ) {
    this.dir = dir
    this.regions = regions
    this.#regionOf = servers
    this.#servers = [...servers.keys()]
    this.#readyTimeoutMs = readyTimeoutMs
  }

  get processes(): readonly SuperClusterServerInfo[] {
    return this.#servers.map((server) => this.#describe(server))
  }

  servers(region: string): string[] {
    return this.#members(region).map((server) => server.url)
  }

  processesOf(region: string): readonly SuperClusterServerInfo[] {
    return this.#members(region).map((server) => this.#describe(server))
  }

  async start(): Promise<void> {
    await Promise.all(this.#servers.map((server) => server.start()))
    const deadline = Date.now() + this.#readyTimeoutMs
    const remaining = () => Math.max(0, deadline - Date.now())
    const all = this.#servers
    await this.#poll('every server to see the same JetStream meta leader', remaining(), all, () =>
      agreedMetaLeader(all),
    )
    await this.#poll('a gateway from every server to every other region', remaining(), all, () =>
      this.#gatewaysJoined(),
    )
    await Promise.all(this.regions.map((region) => this.#probeRegion(region, remaining())))
  }

  async connect(
    region: string,
    options: Omit<NodeConnectionOptions, 'servers'> = {},
  ): Promise<NatsConnection> {
    if (this.#closing) throw new Error('the super-cluster is closed')
    const nc = await connect({ ...options, servers: this.servers(region) })
    this.#connections.add(nc)
    void nc.closed().then(() => this.#connections.delete(nc))
    return nc
  }

  async stopServer(name: string, signal: StopSignal = 'SIGTERM'): Promise<void> {
    await this.#server(name).stop(signal)
  }

  async startServer(name: string): Promise<void> {
    const server = this.#server(name)
    await server.start()
    await this.#poll(`${name} to serve clients`, this.#readyTimeoutMs, [server], () => server.answers())
  }

  pauseServer(name: string): void {
    this.#server(name).pause()
  }

  resumeServer(name: string): void {
    this.#server(name).resume()
  }

  logs(): string {
    return this.#servers.map(formatLogs).join('\n')
  }

  close(): Promise<void> {
    this.#closing ??= this.#shutdown()
    return this.#closing
  }

  #shutdown(): Promise<void> {
    return shutdownServers(this.#connections, this.#servers, this.dir)
  }

  #members(region: string): ServerProcess[] {
    if (!this.regions.includes(region)) {
      throw new RangeError(`no region ${JSON.stringify(region)}; the regions are ${this.regions.join(', ')}`)
    }
    return this.#servers.filter((server) => this.#regionOf.get(server) === region)
  }

  #server(name: string): ServerProcess {
    const server = this.#servers.find((candidate) => candidate.name === name)
    if (!server) throw new RangeError(`no server ${JSON.stringify(name)} in the super-cluster`)
    return server
  }

  #describe(server: ServerProcess): SuperClusterServerInfo {
    const region = this.#regionOf.get(server) ?? ''
    return Object.freeze({
      region,
      name: server.name,
      url: server.url,
      monitorUrl: server.monitorUrl,
      websocketUrl: server.websocketUrl,
      storeDir: server.storeDir,
      configFile: server.configFile,
      ports: server.ports,
      get pid() {
        return server.pid
      },
      get running() {
        return server.running
      },
      get paused() {
        return server.paused
      },
      logs: () => server.logs(),
      metaLeader: () => server.metaLeader(),
    })
  }

  #poll<T>(
    what: string,
    timeoutMs: number,
    mustRun: readonly ServerProcess[],
    attempt: () => Promise<T | undefined>,
  ): Promise<T> {
    return pollWhileRunning(what, timeoutMs, mustRun, () => this.logs(), attempt)
  }

  async #gatewaysJoined(): Promise<true | undefined> {
    const joined = await Promise.all(
      this.#servers.map(async (server) => {
        const reached = new Set(await server.gatewaysTo())
        const own = this.#regionOf.get(server)
        return this.regions.every((region) => region === own || reached.has(region))
      }),
    )
    return joined.every(Boolean) ? true : undefined
  }

  /** A meta leader alone does not prove a region can place replicas and store; a publish does. */
  async #probeRegion(region: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    const remaining = () => Math.max(0, deadline - Date.now())
    const members = this.#members(region)
    const nc = await this.#poll(`a client connection to ${region}`, remaining(), members, () =>
      this.connect(region, { timeout: PROBE_TIMEOUT_MS }),
    )
    try {
      const jsm = await jetstreamManager(nc, { timeout: PROBE_TIMEOUT_MS, checkAPI: false })
      const js = jetstream(nc, { timeout: PROBE_TIMEOUT_MS })
      const replicas = Math.min(members.length, STREAM_REPLICAS_MAX)
      await this.#poll(
        `an R${replicas} stream placed in ${region} to accept a publish`,
        remaining(),
        members,
        () => probeRegionStream(jsm, js, region, replicas),
      )
    } finally {
      await nc.close()
    }
  }
}

export async function probeRegionStream(
  jsm: JetStreamManager,
  js: JetStreamClient,
  region: string,
  replicas: number,
): Promise<true> {
  const name = `${REGION_PROBE_STREAM_PREFIX}${region}`
  const subject = `${REGION_PROBE_SUBJECT_PREFIX}.${region}`
  // Adding a stream with the config it already has succeeds, so a retry after a failed publish is fine.
  await jsm.streams.add({
    name,
    subjects: [subject],
    storage: StorageType.Memory,
    num_replicas: replicas,
    placement: { cluster: region, tags: [] },
  })
  const ack = await js.publish(subject, new TextEncoder().encode(region))
  if (ack.stream !== name) throw new Error(`the probe publish in ${region} was stored in ${ack.stream}`)
  await jsm.streams.delete(name)
  return true
}

interface ServerPlan {
  name: string
  /** The cluster block's name; in a super-cluster also the gateway's, i.e. the region. */
  clusterName: string
  clientPort: number
  clusterPort: number
  httpPort: number
  websocketPort: number | undefined
  gatewayPort: number | undefined
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
  readonly ports: ServerPorts
  readonly #env: NodeJS.ProcessEnv
  readonly #log = new LogRing(LOG_LINES_MAX)
  #child: ChildProcess | undefined
  #exited: Promise<void> = Promise.resolve()
  #paused = false

  constructor(plan: ServerPlan) {
    this.name = plan.name
    this.url = `nats://${LOOPBACK_HOST}:${plan.clientPort}`
    this.monitorUrl = `http://${LOOPBACK_HOST}:${plan.httpPort}`
    this.websocketUrl =
      plan.websocketPort === undefined ? undefined : `ws://${LOOPBACK_HOST}:${plan.websocketPort}`
    this.storeDir = plan.storeDir
    this.configFile = plan.configFile
    this.ports = {
      client: plan.clientPort,
      cluster: plan.clusterPort,
      monitor: plan.httpPort,
      websocket: plan.websocketPort,
      gateway: plan.gatewayPort,
    }
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

  /** True between pause() and resume(), unless the process exited meanwhile. */
  get paused(): boolean {
    return this.#paused && this.running
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
    // A paused server (by pause() or by a chaos script holding its PID) only acts on SIGTERM once it
    // runs again; for a running one SIGCONT is a no-op.
    child.kill('SIGCONT')
    this.#paused = false
    if (await this.#waitExit(STOP_GRACE_MS)) return
    this.#log.note(`still running ${STOP_GRACE_MS} ms after ${signal}; sending SIGKILL`)
    child.kill('SIGKILL')
    if (!(await this.#waitExit(KILL_WAIT_MS))) {
      throw new Error(`${this.name} (pid ${child.pid}) survived SIGKILL`)
    }
  }

  /** SIGSTOP: the process keeps its sockets but answers nothing, as if the network had gone silent. */
  pause(): void {
    if (!this.running) throw new Error(`${this.name} is not running`)
    this.#child?.kill('SIGSTOP')
    this.#paused = true
    this.#log.note(`paused pid ${this.pid} (SIGSTOP)`)
  }

  resume(): void {
    if (!this.running) throw new Error(`${this.name} is not running`)
    this.#child?.kill('SIGCONT')
    this.#paused = false
    this.#log.note(`resumed pid ${this.pid} (SIGCONT)`)
  }

  /** True once the monitoring endpoint answers, i.e. the process is up and serving. */
  async answers(): Promise<true | undefined> {
    const response = await fetch(`${this.monitorUrl}/varz`, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) })
    return response.ok ? true : undefined
  }

  /** Names of the regions this server holds an outbound gateway connection to. */
  async gatewaysTo(): Promise<string[]> {
    const response = await fetch(`${this.monitorUrl}/gatewayz`, {
      signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
    })
    if (!response.ok) return []
    return readOutboundGateways(await response.json())
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
    await writeFile(plan.configFile, renderConfig(dir, plan, routes, extras, []))
  }
  return plans.map((plan) => new ServerProcess(plan))
}

async function prepareSuperClusterServers(
  dir: string,
  regions: readonly string[],
  perRegion: number,
): Promise<Map<ServerProcess, string>> {
  const ports = await freePorts(regions.length * perRegion * PORTS_PER_GATEWAY_SERVER)
  const plans = regions.map((region, r) =>
    Array.from({ length: perRegion }, (_, i) => planRegionalServer(dir, region, r * perRegion + i, i, ports)),
  )
  const gateways = regions.map((region, r) => ({
    region,
    urls: (plans[r] ?? []).map((plan) => `nats://${LOOPBACK_HOST}:${plan.gatewayPort}`),
  }))
  const servers = new Map<ServerProcess, string>()
  for (const [r, region] of regions.entries()) {
    const regionPlans = plans[r] ?? []
    const routes = regionPlans.map((plan) => `nats-route://${LOOPBACK_HOST}:${plan.clusterPort}`)
    for (const plan of regionPlans) {
      await mkdir(plan.storeDir)
      await writeFile(plan.configFile, renderConfig(dir, plan, routes, { websocket: false }, gateways))
      servers.set(new ServerProcess(plan), region)
    }
  }
  return servers
}

/** Server `indexInRegion` of `region`; `slot` numbers servers across the whole super-cluster. */
function planRegionalServer(
  dir: string,
  region: string,
  slot: number,
  indexInRegion: number,
  ports: readonly number[],
): ServerPlan {
  // Unique across regions: JetStream's one meta group tracks its peers by server name.
  const name = `${region}-n${indexInRegion + 1}`
  const port = (offset: number) => {
    const value = ports[slot * PORTS_PER_GATEWAY_SERVER + offset]
    if (value === undefined) throw new Error(`no free port allocated for ${name}`)
    return value
  }
  return {
    name,
    clusterName: region,
    clientPort: port(0),
    clusterPort: port(1),
    httpPort: port(2),
    websocketPort: undefined,
    gatewayPort: port(3),
    storeDir: path.join(dir, name),
    configFile: path.join(dir, `${name}.conf`),
  }
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
    clusterName: CLUSTER_NAME,
    clientPort: port(0),
    clusterPort: port(1),
    httpPort: port(2),
    websocketPort: portsPerServer > PORTS_PER_SERVER ? port(3) : undefined,
    gatewayPort: undefined,
    storeDir: path.join(dir, name),
    configFile: path.join(dir, `${name}.conf`),
  }
}

/** One region's gateway, as every server of the super-cluster lists it. */
interface GatewayRoute {
  readonly region: string
  readonly urls: readonly string[]
}

function renderConfig(
  dir: string,
  plan: ServerPlan,
  routes: readonly string[],
  extras: ServerExtras,
  gateways: readonly GatewayRoute[],
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
    `  name: ${plan.clusterName}`,
    `  listen: ${LOOPBACK_HOST}:${plan.clusterPort}`,
    // Every server lists every route, itself included; nats-server skips the route to itself.
    '  routes: [',
    ...routes.map((route) => `    ${route}`),
    '  ]',
    '}',
    '',
    ...(plan.gatewayPort !== undefined ? renderGateway(plan.clusterName, plan.gatewayPort, gateways) : []),
  ].join('\n')
}

function renderGateway(region: string, port: number, gateways: readonly GatewayRoute[]): string[] {
  return [
    // The gateway name must equal the cluster name: it is how other regions address this one.
    'gateway {',
    `  name: ${region}`,
    `  listen: ${LOOPBACK_HOST}:${port}`,
    // Every server lists every region, its own included (nats-server skips it), and all of a region's
    // servers, so a region stays reachable while any one of its servers is up.
    '  gateways: [',
    ...gateways.map((gateway) => `    { name: ${gateway.region}, urls: [${gateway.urls.join(', ')}] }`),
    '  ]',
    '}',
    '',
  ]
}

/**
 * Ports the OS hands out for 127.0.0.1:0. All listeners stay open until every port is read, so the
 * ports are distinct; another process could still take one before nats-server binds it, which is rare
 * enough for tests.
 */
export async function freePorts(count: number): Promise<number[]> {
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

/** Polls like pollUntil, but gives up at once (with every log) if a server that must run has died. */
function pollWhileRunning<T>(
  what: string,
  timeoutMs: number,
  mustRun: readonly ServerProcess[],
  logs: () => string,
  attempt: () => Promise<T | undefined>,
): Promise<T> {
  const check = () => {
    // A dead server will not become ready; fail now with its logs instead of at the deadline.
    const dead = mustRun.find((server) => !server.running)
    if (dead) throw new Error(`${dead.name} is not running while waiting for ${what}\n${logs()}`)
  }
  return pollUntil(what, attempt, { timeoutMs, check, context: logs })
}

/** The meta leader every one of `servers` names, or undefined while any sees none or they differ. */
async function agreedMetaLeader(servers: readonly ServerProcess[]): Promise<string | undefined> {
  const leaders = await Promise.all(servers.map((server) => server.metaLeader()))
  const [first] = leaders
  return leaders.every((leader) => leader !== undefined && leader === first) ? first : undefined
}

function formatLogs(server: NatsServerInfo): string {
  const lines = server.logs()
  return [`--- ${server.name} (${server.url}) last ${lines.length} log lines ---`, ...lines].join('\n')
}

/** Close the connections handed out, stop every server (by PID), remove the temp dir; one stop failing fails the close, after the rest. */
async function shutdownServers(
  connections: ReadonlySet<NatsConnection>,
  servers: readonly ServerProcess[],
  dir: string,
): Promise<void> {
  await Promise.allSettled([...connections].map((nc) => nc.close()))
  const stops = await Promise.allSettled(servers.map((server) => server.stop('SIGTERM')))
  await removeDir(dir)
  const failed = stops.find((result) => result.status === 'rejected')
  if (failed) throw failed.reason
}

function describeError(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err)
}

async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
  liveDirs.delete(dir)
}
