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
 * Both are one launch (nats-cluster/server-group.ts) of clusters laid out differently: one cluster
 * whose servers are known by index, or one per region whose servers are known by name. Each adds its
 * own readiness checks and its own way to address servers.
 *
 * The helper only ever signals processes it spawned, and always by their PID.
 */

import {
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  StorageType,
} from '@nats-io/jetstream'
import type { NatsConnection, NodeConnectionOptions } from '@nats-io/transport-node'
import { assertRegion } from '../nodes/fabric/streams.ts'
import { launchServers, type ServerGroup } from './nats-cluster/server-group.ts'
import {
  type NatsServerInfo,
  PROBE_TIMEOUT_MS,
  type ServerProcess,
  type StopSignal,
} from './nats-cluster/server-process.ts'

export { POLL_INTERVAL_MS, type PollOptions, pollUntil } from './nats-cluster/poll.ts'
export { freePorts } from './nats-cluster/server-config.ts'
export {
  LOG_LINES_MAX,
  type NatsServerInfo,
  readOutboundGateways,
  type ServerPorts,
  type StopSignal,
} from './nats-cluster/server-process.ts'

export const DEFAULT_SERVER_COUNT = 3
export const DEFAULT_READY_TIMEOUT_MS = 30_000
export const DEFAULT_SERVERS_PER_REGION = 3
/**
 * One meta group spans every region, and it forms only after the gateways have carried every
 * server's JetStream announcement to every other region, which takes longer than inside one cluster.
 */
export const DEFAULT_SUPER_CLUSTER_READY_TIMEOUT_MS = 60_000
/** JetStream refuses more replicas than this. */
const STREAM_REPLICAS_MAX = 5
const CLUSTER_NAME = 'fabric-test'
const PROBE_STREAM = 'CLUSTER_READY_PROBE'
const PROBE_SUBJECT = 'cluster-ready-probe'
const REGION_PROBE_STREAM_PREFIX = 'SUPER_CLUSTER_READY_PROBE_'
const REGION_PROBE_SUBJECT_PREFIX = 'super-cluster-ready-probe'

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

/**
 * Starts `count` servers as one cluster and resolves once every server sees the same meta leader,
 * a client can connect and read its JetStream account, and a replicated stream can be made.
 */
export async function startNatsCluster(options: NatsClusterOptions = {}): Promise<NatsCluster> {
  const count = options.count ?? DEFAULT_SERVER_COUNT
  if (!Number.isInteger(count) || count < 1) {
    throw new RangeError(`count must be a positive integer: ${count}`)
  }
  const { maxConnections } = options
  if (maxConnections !== undefined && !(Number.isInteger(maxConnections) && maxConnections >= 1)) {
    throw new RangeError(`maxConnections must be a positive integer: ${maxConnections}`)
  }
  const readyTimeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS
  const group = await launchServers({
    dirPrefix: 'nats-cluster-',
    clusters: [{ name: CLUSTER_NAME, serverNames: Array.from({ length: count }, (_, i) => `n${i + 1}`) }],
    websocket: options.websocket ?? false,
    ...(maxConnections !== undefined ? { maxConnections } : {}),
    gateways: false,
    label: 'cluster',
    readyTimeoutMs,
    ready: clusterReady,
  })
  return clusterOf(group, readyTimeoutMs)
}

/** A client connects, JetStream answers it, and a stream replicated on every server can be made. */
async function clusterReady(group: ServerGroup, remaining: () => number): Promise<void> {
  const all = group.servers
  const urls = all.map((server) => server.url)
  const nc = await group.poll('a client connection', remaining(), all, () =>
    group.connect(urls, { timeout: PROBE_TIMEOUT_MS }),
  )
  try {
    const jsm = await jetstreamManager(nc, { timeout: PROBE_TIMEOUT_MS, checkAPI: false })
    await group.poll('JetStream account info', remaining(), all, () => jsm.getAccountInfo())
    // A meta leader alone does not mean it can place replicas yet; creating one proves it can.
    await group.poll('a replicated probe stream', remaining(), all, () => probeStream(jsm, all.length))
  } finally {
    await nc.close()
  }
}

async function probeStream(jsm: JetStreamManager, servers: number): Promise<true> {
  await jsm.streams.add({
    name: PROBE_STREAM,
    subjects: [PROBE_SUBJECT],
    storage: StorageType.Memory,
    num_replicas: Math.min(servers, STREAM_REPLICAS_MAX),
  })
  await jsm.streams.delete(PROBE_STREAM)
  return true
}

/** The cluster as its users see it: servers by index. */
function clusterOf(group: ServerGroup, readyTimeoutMs: number): NatsCluster {
  const all = group.servers
  const server = (index: number): ServerProcess => {
    const found = all[index]
    if (!found) throw new RangeError(`no server ${index}; the cluster has ${all.length}`)
    return found
  }
  return {
    dir: group.dir,
    get servers() {
      return all.map((each) => each.url)
    },
    get monitorUrls() {
      return all.map((each) => each.monitorUrl)
    },
    get websocketUrls() {
      return all.flatMap((each) => (each.websocketUrl === undefined ? [] : [each.websocketUrl]))
    },
    processes: all,
    connect(options = {}) {
      return group.connect(
        all.map((each) => each.url),
        options,
      )
    },
    async stopServer(index, signal = 'SIGTERM') {
      await server(index).stop(signal)
    },
    async startServer(index) {
      const restarted = server(index)
      await restarted.start()
      await group.poll(`${restarted.name} to rejoin JetStream`, readyTimeoutMs, [restarted], () =>
        restarted.metaLeader(),
      )
    },
    logs: group.logs,
    close: group.close,
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
  const readyTimeoutMs = options.readyTimeoutMs ?? DEFAULT_SUPER_CLUSTER_READY_TIMEOUT_MS
  const group = await launchServers({
    dirPrefix: 'nats-super-cluster-',
    // Names unique across regions: JetStream's one meta group tracks its peers by server name.
    clusters: regions.map((region) => ({
      name: region,
      serverNames: Array.from({ length: perRegion }, (_, i) => `${region}-n${i + 1}`),
    })),
    websocket: false,
    gateways: true,
    label: 'super-cluster',
    readyTimeoutMs,
    ready: async (group, remaining) => {
      await group.poll('a gateway from every server to every other region', remaining(), group.servers, () =>
        gatewaysJoined(group.servers, regions),
      )
      await Promise.all(regions.map((region) => probeRegion(group, region, remaining())))
    },
  })
  return superClusterOf(group, regions, readyTimeoutMs)
}

/** True once every server holds a gateway to every region but its own. */
async function gatewaysJoined(
  servers: readonly ServerProcess[],
  regions: readonly string[],
): Promise<true | undefined> {
  const joined = await Promise.all(
    servers.map(async (server) => {
      const reached = new Set(await server.gatewaysTo())
      return regions.every((region) => region === server.clusterName || reached.has(region))
    }),
  )
  return joined.every(Boolean) ? true : undefined
}

/** A meta leader alone does not prove a region can place replicas and store; a publish does. */
async function probeRegion(group: ServerGroup, region: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  const remaining = () => Math.max(0, deadline - Date.now())
  const members = group.servers.filter((server) => server.clusterName === region)
  const nc = await group.poll(`a client connection to ${region}`, remaining(), members, () =>
    group.connect(
      members.map((server) => server.url),
      { timeout: PROBE_TIMEOUT_MS },
    ),
  )
  try {
    const jsm = await jetstreamManager(nc, { timeout: PROBE_TIMEOUT_MS, checkAPI: false })
    const js = jetstream(nc, { timeout: PROBE_TIMEOUT_MS })
    const replicas = Math.min(members.length, STREAM_REPLICAS_MAX)
    await group.poll(
      `an R${replicas} stream placed in ${region} to accept a publish`,
      remaining(),
      members,
      () => probeRegionStream(jsm, js, region, replicas),
    )
  } finally {
    await nc.close()
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

/** The super-cluster as its users see it: regions, and servers by name. */
function superClusterOf(
  group: ServerGroup,
  regions: readonly string[],
  readyTimeoutMs: number,
): NatsSuperCluster {
  const all = group.servers
  const members = (region: string): ServerProcess[] => {
    if (!regions.includes(region)) {
      throw new RangeError(`no region ${JSON.stringify(region)}; the regions are ${regions.join(', ')}`)
    }
    return all.filter((server) => server.clusterName === region)
  }
  const server = (name: string): ServerProcess => {
    const found = all.find((candidate) => candidate.name === name)
    if (!found) throw new RangeError(`no server ${JSON.stringify(name)} in the super-cluster`)
    return found
  }
  return {
    dir: group.dir,
    regions,
    get processes() {
      return all.map(describe)
    },
    servers: (region) => members(region).map((each) => each.url),
    processesOf: (region) => members(region).map(describe),
    connect(region, options = {}) {
      return group.connect(
        members(region).map((each) => each.url),
        options,
      )
    },
    async stopServer(name, signal = 'SIGTERM') {
      await server(name).stop(signal)
    },
    async startServer(name) {
      const restarted = server(name)
      await restarted.start()
      await group.poll(`${name} to serve clients`, readyTimeoutMs, [restarted], () => restarted.answers())
    },
    pauseServer: (name) => server(name).pause(),
    resumeServer: (name) => server(name).resume(),
    logs: group.logs,
    close: group.close,
  }
}

/** What a super-cluster's user sees of one server: no means to start or stop it. */
function describe(server: ServerProcess): SuperClusterServerInfo {
  return Object.freeze({
    region: server.clusterName,
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
