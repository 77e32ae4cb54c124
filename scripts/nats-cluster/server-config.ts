/**
 * What each server of a test launch is: its name, its free loopback ports, its store dir and its
 * config file. Every config includes the project's nats.conf, so tests run against the same limits
 * as deployments; only the cluster block is added here, a gateway block when the clusters are
 * regions of a super-cluster, and, when asked for, a WebSocket listener and a connection limit.
 */

import { mkdir, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const LOOPBACK_HOST = '127.0.0.1'
/** Client, cluster and monitor port; a WebSocket port and a gateway port are one more each. */
const PORTS_PER_SERVER = 3

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SHARED_CONFIG_FILE = path.join(REPO_ROOT, 'nats.conf')

/** One cluster of a launch: its name (in a super-cluster, the region) and its servers' names. */
export interface ClusterLayout {
  readonly name: string
  readonly serverNames: readonly string[]
}

export interface LaunchExtras {
  /** Give each server a plain (no TLS) WebSocket listener. */
  readonly websocket: boolean
  /** In place of nats.conf's `max_connections`. */
  readonly maxConnections?: number
  /** Join the clusters by gateways into one super-cluster. */
  readonly gateways: boolean
}

export interface ServerPlan {
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

/** One region's gateway, as every server of the super-cluster lists it. */
interface GatewayRoute {
  readonly region: string
  readonly urls: readonly string[]
}

/** Plan every server of `clusters` in `dir`, and write their store dirs and config files. */
export async function prepareServers(
  dir: string,
  clusters: readonly ClusterLayout[],
  extras: LaunchExtras,
): Promise<ServerPlan[][]> {
  const portsPerServer = PORTS_PER_SERVER + (extras.websocket ? 1 : 0) + (extras.gateways ? 1 : 0)
  const count = clusters.reduce((sum, cluster) => sum + cluster.serverNames.length, 0)
  const ports = await freePorts(count * portsPerServer)
  let slot = 0
  const plans = clusters.map((cluster) =>
    cluster.serverNames.map((name) => {
      const own = ports.slice(slot * portsPerServer, (slot + 1) * portsPerServer)
      slot++
      return planServer(dir, cluster.name, name, own, extras)
    }),
  )
  const gateways = extras.gateways
    ? clusters.map((cluster, c) => ({
        region: cluster.name,
        urls: (plans[c] ?? []).map((plan) => `nats://${LOOPBACK_HOST}:${plan.gatewayPort}`),
      }))
    : []
  for (const clusterPlans of plans) {
    const routes = clusterPlans.map((plan) => `nats-route://${LOOPBACK_HOST}:${plan.clusterPort}`)
    for (const plan of clusterPlans) {
      await mkdir(plan.storeDir)
      await writeFile(plan.configFile, renderConfig(dir, plan, routes, extras, gateways))
    }
  }
  return plans
}

/** Server `name` of cluster `clusterName`, listening on the first of `ports`. */
function planServer(
  dir: string,
  clusterName: string,
  name: string,
  ports: readonly number[],
  extras: LaunchExtras,
): ServerPlan {
  let offset = 0
  const port = () => {
    const value = ports[offset++]
    if (value === undefined) throw new Error(`no free port allocated for ${name}`)
    return value
  }
  return {
    name,
    clusterName,
    clientPort: port(),
    clusterPort: port(),
    httpPort: port(),
    websocketPort: extras.websocket ? port() : undefined,
    gatewayPort: extras.gateways ? port() : undefined,
    storeDir: path.join(dir, name),
    configFile: path.join(dir, `${name}.conf`),
  }
}

function renderConfig(
  dir: string,
  plan: ServerPlan,
  routes: readonly string[],
  extras: LaunchExtras,
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
