/**
 * The launcher's core, shared by a cluster and a super-cluster (which is clusters joined by
 * gateways): a fresh temp dir, a server process per planned server, the client connections handed
 * out, waits that give up as soon as a server that must run has died, and a close that leaves
 * nothing behind. A launch resolves once every server sees the same JetStream meta leader and the
 * caller's own readiness checks pass; a launch that fails cleans up after itself.
 */

import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { connect, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node'
import { liveDirs, removeDir } from './exit-cleanup.ts'
import { pollUntil } from './poll.ts'
import { type ClusterLayout, type LaunchExtras, prepareServers } from './server-config.ts'
import { createServerProcess, type NatsServerInfo, type ServerProcess } from './server-process.ts'

export interface ServerGroup {
  /** The temp dir holding configs and store dirs; removed by close(). */
  readonly dir: string
  /** Every server, cluster by cluster in the order of the layout. */
  readonly servers: readonly ServerProcess[]
  /** A connection to `urls`; closed by close() if still open. */
  connect(urls: string[], options?: Omit<NodeConnectionOptions, 'servers'>): Promise<NatsConnection>
  /** Polls like pollUntil, but gives up at once (with every log) if one of `mustRun` has died. */
  poll<T>(
    what: string,
    timeoutMs: number,
    mustRun: readonly ServerProcess[],
    attempt: () => Promise<T | undefined>,
  ): Promise<T>
  /** The last log lines of every server, for failure messages. */
  logs(): string
  close(): Promise<void>
}

export interface LaunchOptions extends LaunchExtras {
  /** The temp dir's name starts with this. */
  readonly dirPrefix: string
  readonly clusters: readonly ClusterLayout[]
  /** Names the launch in errors: "the <label> is closed". */
  readonly label: string
  /** How long the launch waits, from the moment every process has started, until it is ready. */
  readonly readyTimeoutMs: number
  /** Further readiness checks, within the same deadline; `remaining()` is what is left of it. */
  readonly ready: (group: ServerGroup, remaining: () => number) => Promise<void>
}

export async function launchServers(options: LaunchOptions): Promise<ServerGroup> {
  const dir = await mkdtemp(path.join(tmpdir(), options.dirPrefix))
  liveDirs.add(dir)
  let group: ServerGroup | undefined
  try {
    const plans = await prepareServers(dir, options.clusters, options)
    group = createServerGroup(dir, plans.flat().map(createServerProcess), options.label)
    await Promise.all(group.servers.map((server) => server.start()))
    const deadline = Date.now() + options.readyTimeoutMs
    const remaining = () => Math.max(0, deadline - Date.now())
    const all = group.servers
    await group.poll('every server to see the same JetStream meta leader', remaining(), all, () =>
      agreedMetaLeader(all),
    )
    await options.ready(group, remaining)
    return group
  } catch (err) {
    // The caller never gets a handle to close, so clean up here.
    if (group) await group.close().catch(() => undefined)
    else await removeDir(dir)
    throw err
  }
}

function createServerGroup(dir: string, servers: readonly ServerProcess[], label: string): ServerGroup {
  const connections = new Set<NatsConnection>()
  let closing: Promise<void> | undefined
  const logs = () => servers.map(formatLogs).join('\n')
  return {
    dir,
    servers,
    async connect(urls, options = {}) {
      if (closing) throw new Error(`the ${label} is closed`)
      const nc = await connect({ ...options, servers: urls })
      connections.add(nc)
      void nc.closed().then(() => connections.delete(nc))
      return nc
    },
    poll(what, timeoutMs, mustRun, attempt) {
      const check = () => {
        // A dead server will not become ready; fail now with its logs instead of at the deadline.
        const dead = mustRun.find((server) => !server.running)
        if (dead) throw new Error(`${dead.name} is not running while waiting for ${what}\n${logs()}`)
      }
      return pollUntil(what, attempt, { timeoutMs, check, context: logs })
    },
    logs,
    close() {
      closing ??= shutdown(connections, servers, dir)
      return closing
    },
  }
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
async function shutdown(
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
