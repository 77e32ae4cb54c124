/**
 * What every node process shares: the common options, the NATS connection, logs, the ops
 * endpoints (/healthz, /readyz, /metrics) and a graceful shutdown on SIGINT/SIGTERM that closes the
 * node, drains NATS and stops the ops server, bounded by a deadline.
 */

import { connect, type NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { Counter, Gauge, type Registry } from 'prom-client'
import { BACKENDS, type Backend, type BackendName } from '../../crdt/index.ts'
import { NODE_ID_SOURCE, REGION_SOURCE } from '../../protocol/ids.ts'
import { DEFAULT_SHARDS, parseShardSet, SHARD_SET_ITEM_SOURCE, SHARDS_MAX } from '../../protocol/shards.ts'
import type { ClockGuard } from './clock-guard.ts'
import { DEFAULT_PROBE_INTERVAL_MS, startClockProbe } from './clock-probe.ts'
import { defineOptions, loadConfigOrExit, type OptionsSchema, type OptionsValue } from './config.ts'
import { APPEND_TIMEOUT_MS, type LedgerSync } from './ledger-sync.ts'
import {
  createLogger,
  createMetricsRegistry,
  type Readiness,
  type StateOptions,
  startOpsServer,
} from './ops-server.ts'
import { watchQuorum } from './quorum-watch.ts'
import type { ReplicaSync } from './replica-sync.ts'
import { serverChoice } from './server-choice.ts'
import { names } from './streams.ts'
import type { AppendHedge } from './transport.ts'

export const SHUTDOWN_DEADLINE_MS = 10_000
/** With this set (launchers set it), a node stops when the process that started it is gone. */
export const EXIT_WITH_PARENT_ENV = 'FABRIC_EXIT_WITH_PARENT'
export const PARENT_CHECK_MS = 1_000
export const NATS_RECONNECT_WAIT_MS = 250
/**
 * The exit code of a node whose derived state was found not to be its streams' (a fold or replica
 * built from messages the stream does not hold under those sequences). Its supervisor starts it
 * again, and it rebuilds from the log: the chaos runner and `npm start` do, and docker compose's
 * restart policy does.
 */
export const DIVERGED_EXIT_CODE = 75
/** The longest a diverged node spends on RunningNode.beforeRebuild before it exits. */
const REBUILD_PREPARE_MS = 2_000
/** How many times a supervisor starts a diverged node again in one run before it gives up. */
export const REBUILDS_PER_NODE_MAX = 3
/** The wait before a diverged node's first restart; it doubles with each rebuild, up to the max. */
export const REBUILD_BACKOFF_MS_MIN = 1_000
export const REBUILD_BACKOFF_MS_MAX = 30_000
/**
 * How long a supervisor waits before starting a diverged node again for the `rebuilds`-th time (0
 * first): a burst of divergences backs off rather than looping, each restart refolding the log.
 */
export const rebuildBackoffMs = (rebuilds: number) =>
  Math.min(REBUILD_BACKOFF_MS_MAX, REBUILD_BACKOFF_MS_MIN * 2 ** rebuilds)
export const DIVERGENCE_CHECK_MS = 1_000

export const commonOptions = defineOptions({
  natsServers: {
    type: 'list',
    default: ['nats://127.0.0.1:4222'],
    env: 'FABRIC_NATS_SERVERS',
    flag: '--nats-servers',
    doc: 'NATS servers to connect to, comma-separated',
    pattern: /nats:\/\/[A-Za-z0-9.-]+:\d{1,5}/,
  },
  region: {
    type: 'string',
    default: 'eu',
    env: 'FABRIC_REGION',
    flag: '--region',
    doc: 'the region whose streams this node writes and reads',
    pattern: new RegExp(REGION_SOURCE),
  },
  regions: {
    type: 'list',
    default: [],
    env: 'FABRIC_REGIONS',
    flag: '--regions',
    doc: 'every region of a super-cluster, in the same order on every node (empty: this region alone)',
    pattern: new RegExp(REGION_SOURCE),
  },
  nodeId: {
    type: 'string',
    required: true,
    env: 'FABRIC_NODE_ID',
    flag: '--node-id',
    doc: 'this node’s id, unique in the cluster: it names the node in every stamp',
    pattern: new RegExp(NODE_ID_SOURCE),
  },
  backend: {
    type: 'enum',
    values: ['yjs', 'automerge'],
    default: 'yjs',
    env: 'FABRIC_BACKEND',
    flag: '--backend',
    doc: 'CRDT backend of the replicas (every node of a region must use the same)',
  },
  shards: {
    type: 'integer',
    default: DEFAULT_SHARDS,
    min: 1,
    max: SHARDS_MAX,
    env: 'FABRIC_LEDGER_SHARDS',
    flag: '--ledger-shards',
    doc: 'ledger shards per region, fixed when the region is created (every process of a region must use the same)',
  },
  servedShards: {
    type: 'list',
    default: [],
    env: 'FABRIC_SERVED_SHARDS',
    flag: '--served-shards',
    doc: 'the ledger shards an API or settlement node serves, as shards and ranges (`0-3,5`; empty: all)',
    pattern: new RegExp(SHARD_SET_ITEM_SOURCE),
  },
  opsHost: {
    type: 'string',
    default: '127.0.0.1',
    env: 'FABRIC_OPS_HOST',
    flag: '--ops-host',
    doc: 'address of /healthz, /readyz, /metrics',
  },
  opsPort: {
    type: 'integer',
    default: 0,
    min: 0,
    max: 65_535,
    env: 'FABRIC_OPS_PORT',
    flag: '--ops-port',
    doc: 'port of the ops endpoints (0: any free port)',
  },
  quorumCheckMs: {
    type: 'integer',
    default: 1_000,
    min: 0,
    max: 60_000,
    env: 'FABRIC_QUORUM_CHECK_MS',
    flag: '--quorum-check-ms',
    doc: 'how often to check that the connected server reaches JetStream (0: never; see quorum-watch.ts)',
  },
  appendHedgeMs: {
    type: 'integer',
    default: 250,
    min: 0,
    max: APPEND_TIMEOUT_MS - 1,
    env: 'FABRIC_APPEND_HEDGE_MS',
    flag: '--append-hedge-ms',
    doc: 'the most an API node waits for a ledger append, or a trader for an update, to be acknowledged before it sends it again, same id, through a second connection to another server (twice the p99 of recent acknowledgements, at least 20 ms; 0: no second connection; see transport.ts); a gateway sends its hedged placements through that connection',
  },
  quorumLostMs: {
    type: 'integer',
    default: 4_000,
    min: 100,
    max: 600_000,
    env: 'FABRIC_QUORUM_LOST_MS',
    flag: '--quorum-lost-ms',
    doc: 'how long the connected server may fail to reach JetStream before the node reconnects to another',
  },
  clockSkewMs: {
    type: 'integer',
    default: 0,
    min: -86_400_000,
    max: 86_400_000,
    env: 'FABRIC_CLOCK_SKEW_MS',
    flag: '--clock-skew-ms',
    doc: 'fault injection (chaos runs): this node’s clock source runs this many ms off the machine’s',
  },
  clockProbeMs: {
    type: 'integer',
    default: DEFAULT_PROBE_INTERVAL_MS,
    min: 0,
    max: 600_000,
    env: 'FABRIC_CLOCK_PROBE_MS',
    flag: '--clock-probe-ms',
    doc: 'how often to measure this node’s clock against the region’s other nodes (0: never; see clock-probe.ts)',
  },
  logLevel: {
    type: 'enum',
    values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
    default: 'info',
    env: 'LOG_LEVEL',
    flag: '--log-level',
    doc: 'log level',
  },
})

export type CommonConfig = OptionsValue<typeof commonOptions>

export interface NodeContext<C> {
  readonly config: C & CommonConfig
  readonly nc: NatsConnection
  readonly log: Logger
  readonly registry: Registry
  readonly backend: Backend
  /** The node's clock source, wall ms: the machine's, shifted by --clock-skew-ms. */
  readonly clock: () => number
  /**
   * Hedged appends (transport.ts), and a gateway's hedged placements (gateway/bet-relay-state.ts):
   * a second connection, to another server than `nc`'s, made at the first call, and a move of `nc`
   * off a server found stalled; undefined with one server, or with --append-hedge-ms 0.
   */
  appendHedge(): Promise<AppendHedge | undefined>
}

export interface RunningNode {
  readiness(): Readiness
  close(): Promise<void>
  /** What the node holds, served at /debug/state (see node-state.ts). */
  state?(options: StateOptions): unknown
  /** Why the node's derived state is not its streams' (see stream-follower.ts), or null. */
  diverged?(): string | null
  /**
   * What to do once diverged, before exiting to rebuild (at most REBUILD_PREPARE_MS): an API or
   * settlement node deletes the ledger checkpoints of the shards it found diverged.
   */
  beforeRebuild?(): Promise<unknown>
  /** The node's clock bound (clock-guard.ts): not ready while it is unsafe; offsets exported. */
  readonly clock?: ClockGuard
  /** The node's replicas: live and archived games are exported (archive.ts). */
  readonly replicas?: Pick<ReplicaSync, 'games' | 'archiveCounts' | 'beatWork'>
  /** The node's ledger folds: the bets each served shard holds and has retired are exported. */
  readonly ledger?: Pick<LedgerSync, 'served' | 'fold'>
}

/** Parse config (exit 1 on bad config), connect, start the node, serve ops, shut down cleanly. */
export async function runNode<S extends OptionsSchema>(
  name: string,
  schema: S,
  start: (context: NodeContext<OptionsValue<S>>) => Promise<RunningNode>,
): Promise<void> {
  const config = loadConfigOrExit({ ...commonOptions, ...schema }, name) as unknown as OptionsValue<S> &
    CommonConfig
  const log = createLogger(name, config.logLevel).child({ node: config.nodeId, region: config.region })
  // A promise nobody handled is a bug: say what it was, with its cause, before the process ends as
  // Node would end it (a chaos run saw a bare TimeoutError end a node at start, with no clue where).
  process.on('unhandledRejection', (reason) => {
    log.fatal({ err: reason, cause: (reason as Error | undefined)?.cause }, 'unhandled rejection; exiting')
    process.exit(1)
  })
  const registry = createMetricsRegistry(name.replaceAll('-', '_'))
  let second: NatsConnection | null = null
  // A server the node leaves is not the one it dials next; the second connection's is, if open.
  const choice = serverChoice({ preferred: () => second?.getServer() })
  const nc = await connect({
    servers: [...config.natsServers],
    name: `${name}:${config.nodeId}`,
    maxReconnectAttempts: -1,
    // Async stack traces build an Error for every request (every JetStream publish): measurable at load.
    noAsyncTraces: true,
    reconnectTimeWait: NATS_RECONNECT_WAIT_MS,
    reconnectToServer: choice.reconnectToServer,
  })
  const quorum =
    config.quorumCheckMs > 0
      ? watchQuorum({
          nc,
          stream: names.fabricStream(config.region),
          intervalMs: config.quorumCheckMs,
          lostAfterMs: config.quorumLostMs,
          log,
          leaving: (server) => choice.leave(server),
          elsewhere: () => second,
        })
      : null
  const appendHedge = async (): Promise<AppendHedge | undefined> => {
    if (config.appendHedgeMs === 0 || config.natsServers.length < 2) return undefined
    // The other servers first, in their order, so that it starts on another server than `nc`.
    const current = nc.getServer()
    const others = config.natsServers.filter((server) => !server.endsWith(current))
    second ??= await connect({
      servers: [...others, ...config.natsServers.filter((server) => !others.includes(server))],
      noRandomize: true,
      name: `${name}:${config.nodeId}:second`,
      maxReconnectAttempts: -1,
      noAsyncTraces: true,
      reconnectTimeWait: NATS_RECONNECT_WAIT_MS,
    })
    return {
      nc: second,
      maxMs: config.appendHedgeMs,
      onStalled() {
        log.warn(
          { server: nc.info?.server_name },
          'this server has answered nothing sent through it lately while another server answers; reconnecting to another',
        )
        choice.leave(nc.getServer())
        void nc.reconnect()
      },
    }
  }
  const skewMs = config.clockSkewMs
  if (skewMs !== 0) log.warn({ skewMs }, 'this node’s clock is skewed on purpose')
  const clock = skewMs === 0 ? Date.now : () => Date.now() + skewMs
  const startingAtMs = Date.now()
  // A node that cannot start says why in its log, as one line, rather than as a bare stack trace.
  const node = await start({
    config,
    nc,
    log,
    registry,
    backend: BACKENDS[config.backend as BackendName],
    clock,
    appendHedge,
  }).catch((error: unknown) => {
    log.fatal({ err: error, cause: (error as Error | undefined)?.cause }, `${name} could not start; exiting`)
    process.exit(1)
  })
  const prefix = name.replaceAll('-', '_')
  const clockWatch = watchClock(node.clock, { nc, config, clock, log, registry, prefix })
  const readiness = () => withClock(node.readiness(), node.clock)
  logWhenReady(readiness, log, { startingAtMs, startedAtMs: Date.now() })
  registerNodeGauges(prefix, registry, readiness, () => quorum?.moves() ?? 0)
  if (node.replicas) registerGameGauges(prefix, registry, node.replicas)
  if (node.ledger) registerLedgerGauges(prefix, registry, node.ledger)
  const ops = await startOpsServer({
    host: config.opsHost,
    port: config.opsPort,
    logger: log,
    registry,
    readiness,
    info: { name, node: config.nodeId, region: config.region },
    ...(node.state ? { state: (options: StateOptions) => node.state?.(options) } : {}),
  })
  log.info({ ops: ops.url }, `${name} ready for traffic once /readyz says so`)
  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'shutting down')
    const deadline = setTimeout(() => {
      log.error('shutdown passed its deadline; exiting')
      process.exit(1)
    }, SHUTDOWN_DEADLINE_MS)
    quorum?.stop()
    clockWatch?.stop()
    await node.close()
    await nc.drain()
    await second?.drain()
    await ops.close()
    clearTimeout(deadline)
    process.exit(0)
  }
  if (node.diverged) {
    const diverged = node.diverged.bind(node)
    setInterval(() => {
      const reason = diverged()
      if (reason === null || stopping) return
      stopping = true
      log.fatal({ reason }, 'derived state is not the stream’s; exiting to rebuild from the log')
      const prepared = node.beforeRebuild?.().catch((error: unknown) => {
        log.error({ err: error }, 'could not prepare the rebuild')
      })
      const waited = new Promise((resolve) => setTimeout(resolve, REBUILD_PREPARE_MS))
      void Promise.race([prepared ?? Promise.resolve(), waited]).finally(() =>
        process.exit(DIVERGED_EXIT_CODE),
      )
    }, DIVERGENCE_CHECK_MS).unref()
  }
  process.on('SIGINT', () => void stop('SIGINT'))
  process.on('SIGTERM', () => void stop('SIGTERM'))
  if (process.env[EXIT_WITH_PARENT_ENV] === '1') {
    // A launcher that dies without stopping its nodes (killed, or a closed pipe) must not leave
    // them running: an orphan is re-parented, so its parent pid changes.
    const parent = process.ppid
    setInterval(() => {
      if (process.ppid !== parent) void stop('the launcher exited')
    }, PARENT_CHECK_MS).unref()
  }
}

/** The cluster clock probe feeding the node's clock guard, and the guard's gauges (clock-guard.ts). */
function watchClock(
  guard: ClockGuard | undefined,
  context: {
    nc: NatsConnection
    config: CommonConfig
    clock: () => number
    log: Logger
    registry: Registry
    prefix: string
  },
): { stop(): void } | null {
  if (guard === undefined) return null
  const { nc, config, clock, log, registry, prefix } = context
  registerClockGauges(prefix, registry, guard)
  if (config.clockProbeMs <= 0) return null
  return startClockProbe({
    nc,
    region: config.region,
    node: config.nodeId,
    now: clock,
    log,
    intervalMs: config.clockProbeMs,
    onOffset: (offsetMs) => guard.observeProbe(offsetMs),
  })
}

function registerNodeGauges(
  prefix: string,
  registry: Registry,
  readiness: () => Readiness,
  quorumMoves: () => number,
): void {
  new Gauge({
    name: `${prefix}_ready`,
    help: '1 when the node is ready',
    registers: [registry],
    collect() {
      this.set(readiness().ready ? 1 : 0)
    },
  })
  new Gauge({
    name: `${prefix}_quorum_reconnects`,
    help: 'times the node left a server that could not reach JetStream',
    registers: [registry],
    collect() {
      this.set(quorumMoves())
    },
  })
}

/** How often a starting node looks whether it is ready yet, to log when it is (once). */
const READY_POLL_MS = 100

/**
 * Log once, when the node first reports ready, how its start went: the process's age, the time its
 * start took (restoring replicas from their snapshots, opening its streams), the time from then
 * until it had caught up with its streams, and, within that, when each readiness check that was
 * not met at first came to be (`metAfterMs`, to READY_POLL_MS). A restart under load shows here
 * where its time went.
 */
function logWhenReady(
  readiness: () => Readiness,
  log: Logger,
  times: { readonly startingAtMs: number; readonly startedAtMs: number },
): void {
  const unmet = new Set(readiness().reasons)
  const metAfterMs: Record<string, number> = {}
  const poll = setInterval(() => {
    const { ready, reasons } = readiness()
    const nowMs = Date.now()
    for (const reason of unmet)
      if (!reasons.includes(reason)) {
        unmet.delete(reason)
        metAfterMs[reason.replace(/^not yet: /, '')] = nowMs - times.startedAtMs
      }
    if (!ready) return
    clearInterval(poll)
    log.info(
      {
        processMs: Math.round(process.uptime() * 1_000),
        startMs: times.startedAtMs - times.startingAtMs,
        catchUpMs: nowMs - times.startedAtMs,
        metAfterMs,
      },
      'ready: caught up with its streams',
    )
  }, READY_POLL_MS)
  poll.unref()
}

/** Not ready while the clock bound is broken (clock-guard.ts), whatever else the node says. */
function withClock(readiness: Readiness, guard: ClockGuard | undefined): Readiness {
  const unsafe = guard?.unsafe() ?? null
  if (unsafe === null) return readiness
  return { ready: false, reasons: [...readiness.reasons, `clock: ${unsafe}`] }
}

/** What the folds hold: bets leave them once settled and retained long enough (LEDGER_BET_RETENTION_MS). */
function registerLedgerGauges(
  prefix: string,
  registry: Registry,
  ledger: Pick<LedgerSync, 'served' | 'fold'>,
): void {
  const gauges = [
    [
      'ledger_bets_held',
      'bets the shard’s fold holds: open ones, and settled or refused ones not yet retired',
      (shard: number) => ledger.fold(shard).betsHeld(),
    ],
    [
      'ledger_bets_retired',
      'settled or refused bets the shard’s fold has let go since it began',
      (shard: number) => ledger.fold(shard).retired().bets,
    ],
  ] as const
  for (const [suffix, help, value] of gauges)
    new Gauge({
      name: `${prefix}_${suffix}`,
      help,
      labelNames: ['shard'],
      registers: [registry],
      collect() {
        for (const shard of ledger.served) this.set({ shard: String(shard) }, value(shard))
      },
    })
}

function registerGameGauges(
  prefix: string,
  registry: Registry,
  replicas: Pick<ReplicaSync, 'games' | 'archiveCounts' | 'beatWork'>,
): void {
  const gauges = [
    ['games_live', 'games whose replica this node holds', () => replicas.games().length],
    [
      'games_beats_read',
      'writers’ beats read since start (repeats and its own passed over)',
      () => replicas.beatWork().beats,
    ],
    [
      'games_beat_heartbeats',
      'games’ heartbeats taken from writers’ beats since start: one per game held and beat',
      () => replicas.beatWork().heartbeats,
    ],
    [
      'games_beat_seconds',
      'time spent on writers’ beats since start, the listeners they woke included (s)',
      () => replicas.beatWork().seconds,
    ],
    ['games_archived', 'archived games this node knows of', () => replicas.archiveCounts().known],
    [
      'archive_loads',
      'archived replicas loaded since start (lookups, late settlements)',
      () => replicas.archiveCounts().loads,
    ],
  ] as const
  for (const [suffix, help, value] of gauges)
    new Gauge({
      name: `${prefix}_${suffix}`,
      help,
      registers: [registry],
      collect() {
        this.set(value())
      },
    })
}

function registerClockGauges(prefix: string, registry: Registry, guard: ClockGuard): void {
  const gauges = [
    ['writer_offset_ms', 'largest offset of a writer’s fresh heartbeat from this node’s clock', 'writersMs'],
    ['probe_offset_ms', 'this node’s clock offset from its region’s median, by the last probe', 'probeMs'],
    ['held_stamp_lead_ms', 'how far a stamp the clock could not merge leads it (0: none)', 'heldLeadMs'],
  ] as const
  for (const [suffix, help, key] of gauges) {
    new Gauge({
      name: `${prefix}_clock_${suffix}`,
      help,
      registers: [registry],
      collect() {
        this.set(guard.offsets()[key] ?? 0)
      },
    })
  }
  new Gauge({
    name: `${prefix}_clock_unsafe`,
    help: '1 while the node refuses to judge because its clock is beyond the drift bound',
    registers: [registry],
    collect() {
      this.set(guard.unsafe() === null ? 0 : 1)
    },
  })
}

export function readinessOf(checks: Record<string, boolean>): Readiness {
  const reasons = Object.entries(checks)
    .filter(([, ok]) => !ok)
    .map(([what]) => `not yet: ${what}`)
  return { ready: reasons.length === 0, reasons }
}

/** Why the node's replicas or ledger folds are not the streams', or null while they are. */
export function divergenceOf(node: {
  replicas: { follower: { diverged(): string | null } }
  ledger?: { diverged(): string | null }
}): string | null {
  return node.replicas.follower.diverged() ?? node.ledger?.diverged() ?? null
}

/** Ready once the node has caught up with what the streams held when it started. */
export function caughtUpReadiness(node: {
  replicas: { caughtUp(): boolean }
  ledger?: { caughtUp(): boolean }
}): Readiness {
  const checks: Record<string, boolean> = { 'caught up with the fabric stream': node.replicas.caughtUp() }
  if (node.ledger) checks['caught up with the ledger'] = node.ledger.caughtUp()
  return readinessOf(checks)
}

/**
 * The ledger shards a node serves (`--served-shards` within `--ledger-shards`; exit 1 when an item
 * is outside them), and the counter of ledger messages it reads per shard: a node reads only the
 * shards it serves, and this shows it.
 */
export function ledgerShardsOf(
  config: CommonConfig,
  registry: Registry,
  log: Logger,
): { served: readonly number[]; onLedgerRead: (shard: number) => void } {
  let served: readonly number[]
  try {
    served = parseShardSet(config.servedShards, config.shards)
  } catch (error) {
    log.fatal({ err: error }, 'bad --served-shards')
    process.exit(1)
  }
  const read = new Counter({
    name: 'ledger_shard_messages_read_total',
    help: 'ledger messages this node read, by shard (only the shards it serves)',
    labelNames: ['shard'],
    registers: [registry],
  })
  for (const shard of served) read.inc({ shard: String(shard) }, 0)
  return { served, onLedgerRead: (shard) => read.inc({ shard: String(shard) }) }
}
