/**
 * Spread the Raft leaders of a set of replicated streams evenly over the servers that can lead them.
 * A stream's leader stores every append to it and answers for it, so leaders piled on one server pile
 * the append load there too; and a lost server stops only the streams it led, until their replicas
 * elect new leaders, so an even spread stops the fewest at once. Nothing keeps the spread even by
 * itself: elections put leaders wherever they land, and a server restarted after a crash leads nothing
 * until leadership is moved back to it.
 *
 * A check reads each stream's leader (its info's `cluster.leader`), plans which leaders should give
 * up leadership (planStepDowns) and asks them to, through the JetStream API's stream leader step-down
 * (`$JS.API.STREAM.LEADER.STEPDOWN.<stream>`; nats.js v3 has no call for it, so it is a plain request
 * on the connection). nats-server 2.9 lets nobody say where leadership goes: its step-down request
 * must be empty, and the leader hands over to whichever live replica it picks. So one pass need not
 * reach an even spread, and checks repeat: every `intervalMs`, and whenever the caller asks (at start,
 * after a fault). From 2.11 on, nats-server accepts a preferred server in the request
 * (`placement.preferred`), with which one pass would do; this module sends only what 2.9 accepts.
 *
 * A step-down pauses its stream's appends while the next leader takes over, so they are bounded:
 * each stream at most once per check and once per STEP_DOWN_SPACING_MS, checks never overlap, and
 * every request has a deadline. The module knows nothing of the streams' naming: it takes a list.
 */

import type { JetStreamManager, StreamInfo } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import type { Logger } from 'pino'
import { within } from './deadline.ts'
import { realTimers, type Timers } from './timers.ts'

/**
 * The least time between two step-downs of one stream, answered or not. On nats-server 2.9 an election
 * that a leader transfer does not settle takes up to 9 s; a stream is not asked again while the
 * election its last step-down started may still run.
 */
export const STEP_DOWN_SPACING_MS = 10_000
/** Deadline of every stream info and step-down request (a 2.9 leader waits 250 ms before it steps down). */
export const LEADER_REQUEST_TIMEOUT_MS = 2_000
/**
 * A replica not heard from for this long is not counted as a server that can lead (serversOf): a
 * 2.9 leader stepping down hands over only to a replica heard from within three heartbeats (3 s).
 */
export const REPLICA_SEEN_WITHIN_MS = 3_000
const NANOS_PER_MS = 1_000_000
/** The JetStream API prefix when the JetStreamManager names none. */
const DEFAULT_API_PREFIX = '$JS.API'
/** Stream names are one subject token: no dots, wildcards or whitespace. */
const INVALID_STREAM_NAME = /[.*>\s]/

/** Stream → the server leading it, or null when it has no leader or could not be read. */
export type Leaders = ReadonlyMap<string, string | null>

/** What a check needs of a JetStreamManager. */
export interface LeaderReader {
  readonly streams: Pick<JetStreamManager['streams'], 'info'>
}

/**
 * Streams led by each of `servers` (every one listed, 0 included). Streams without a leader, and
 * streams led by a server not listed, are not counted.
 */
export function leaderCounts(leaders: Leaders, servers: readonly string[]): Map<string, number> {
  const counts = new Map([...new Set(servers)].sort(compare).map((server) => [server, 0]))
  for (const leader of leaders.values()) {
    if (leader === null) continue
    const count = counts.get(leader)
    if (count !== undefined) counts.set(leader, count + 1)
  }
  return counts
}

/** Max minus min of the counts; 0 when there are none. Even means at most 1. */
export function leaderSpread(counts: ReadonlyMap<string, number>): number {
  const values = [...counts.values()]
  return values.length === 0 ? 0 : Math.max(...values) - Math.min(...values)
}

/**
 * The streams whose leaders should step down so that the streams led per server move toward even
 * (max - min <= 1). Even gives each server ⌊n/k⌋ or ⌈n/k⌉ of the n led streams; the ⌈n/k⌉ go to the
 * most loaded servers, so the fewest streams move. Each server above its share gives up the excess,
 * most loaded server first, its streams taken in name order: the same leaders give the same plan.
 * Streams in `resting` (stepped down lately) count toward their leader's load but are not chosen.
 * Leaderless streams, and streams led by a server not in `servers`, are left alone and not counted.
 *
 * A step-down lets Raft elect any other live replica, not necessarily one on a server below its
 * share, so one pass may not reach even, or may overshoot; the caller reads the leaders again and
 * repeats. With more servers than replicas, a stream can move only among its replicas' servers.
 */
export function planStepDowns(
  leaders: Leaders,
  servers: readonly string[],
  resting: ReadonlySet<string> = new Set(),
): string[] {
  const led = new Map([...new Set(servers)].map((server): [string, string[]] => [server, []]))
  if (led.size === 0) return []
  let total = 0
  for (const [stream, leader] of leaders) {
    if (leader === null) continue
    const streams = led.get(leader)
    if (streams === undefined) continue
    streams.push(stream)
    total++
  }
  const base = Math.floor(total / led.size)
  const larger = total % led.size
  const byLoad = [...led].sort(([a, aStreams], [b, bStreams]) =>
    aStreams.length === bStreams.length ? compare(a, b) : bStreams.length - aStreams.length,
  )
  return byLoad.flatMap(([, streams], index) => {
    const share = base + (index < larger ? 1 : 0)
    const excess = streams.length - share
    if (excess <= 0) return []
    return streams
      .filter((stream) => !resting.has(stream))
      .sort(compare)
      .slice(0, excess)
  })
}

/**
 * Whether a stream may be stepped down now: it has a leader, and every replica that could take over
 * (not offline and heard from within REPLICA_SEEN_WITHIN_MS; 2.9 hands leadership to no other) is
 * current and without lag. Leadership handed to a replica that is behind is where nats-server
 * 2.9.10 was seen to rewrite a stream's history (chaos runs of a partitioned server: a ledger
 * sequence held one entry, then another), so a stream whose group is not settled is left where it
 * is, as is one whose leader changed since the last check (an election nobody asked for).
 */
export function settled(info: StreamInfo | null | undefined): boolean {
  const cluster = info?.cluster
  if (!cluster?.leader) return false
  return (cluster.replicas ?? [])
    .filter((peer) => !peer.offline && peer.active / NANOS_PER_MS < REPLICA_SEEN_WITHIN_MS)
    .every((peer) => peer.current && (peer.lag ?? 0) === 0)
}

/**
 * The servers that can lead the streams, by name and sorted: each stream's leader, and its replicas
 * that are current, not offline, and heard from within REPLICA_SEEN_WITHIN_MS. nats-server 2.9 does
 * not mark a crashed server's replicas offline, and keeps them current for 10 s: without the last
 * test, a crashed server would stay listed that long, and leaders be moved back and forth for it. A
 * restarted server is listed once it caught up on some stream. Infos that could not be read (null)
 * add nothing.
 */
export function serversOf(infos: Iterable<StreamInfo | null | undefined>): string[] {
  const servers = new Set<string>()
  for (const info of infos) {
    const cluster = info?.cluster
    if (!cluster) continue
    if (cluster.leader) servers.add(cluster.leader)
    for (const peer of cluster.replicas ?? []) {
      const seenMs = peer.active / NANOS_PER_MS
      if (peer.current && !peer.offline && seenMs < REPLICA_SEEN_WITHIN_MS) servers.add(peer.name)
    }
  }
  return [...servers].sort(compare)
}

/** Each stream's info, or null for a stream whose info failed or did not come within `timeoutMs`. */
export async function readStreamInfos(
  jsm: LeaderReader,
  streams: readonly string[],
  timeoutMs: number = LEADER_REQUEST_TIMEOUT_MS,
): Promise<Map<string, StreamInfo | null>> {
  const infos = await Promise.all(
    streams.map((stream) =>
      within(jsm.streams.info(stream), timeoutMs, `the info of stream ${stream}`).then(
        (info): [string, StreamInfo | null] => [stream, info],
        (): [string, StreamInfo | null] => [stream, null],
      ),
    ),
  )
  return new Map(infos)
}

/** Each stream's leader, from its info's `cluster.leader`; null when it has none or its info failed. */
export async function readLeaders(
  jsm: LeaderReader,
  streams: readonly string[],
  timeoutMs: number = LEADER_REQUEST_TIMEOUT_MS,
): Promise<Map<string, string | null>> {
  return leadersOf(await readStreamInfos(jsm, streams, timeoutMs))
}

function leadersOf(infos: ReadonlyMap<string, StreamInfo | null>): Map<string, string | null> {
  return new Map([...infos].map(([stream, info]) => [stream, info?.cluster?.leader || null]))
}

export interface StepDownOptions {
  /** The JetStream API prefix (a JetStreamManager's `getOptions().apiPrefix`); `$JS.API` if absent. */
  readonly apiPrefix?: string
  readonly timeoutMs?: number
}

interface StepDownResponse {
  readonly success?: boolean
  readonly error?: { readonly code?: number; readonly err_code?: number; readonly description?: string }
}

/**
 * Ask the leader of `stream` to step down, and resolve once it says it did. The request is empty, as
 * nats-server 2.9 requires; it rejects when refused (e.g. the stream has no leader) or not answered
 * within the deadline. Only the stream's leader answers, after it stepped down.
 */
export async function requestStepDown(
  nc: Pick<NatsConnection, 'request'>,
  stream: string,
  options: StepDownOptions = {},
): Promise<void> {
  assertStreamName(stream)
  const timeoutMs = options.timeoutMs ?? LEADER_REQUEST_TIMEOUT_MS
  const subject = `${options.apiPrefix ?? DEFAULT_API_PREFIX}.STREAM.LEADER.STEPDOWN.${stream}`
  const reply = await within(
    nc.request(subject, undefined, { timeout: timeoutMs }),
    timeoutMs,
    `the leader step-down of stream ${stream}`,
  )
  const response = reply.json<StepDownResponse>()
  if (response.error || response.success !== true) {
    const error = response.error
    throw new Error(
      `the leader step-down of stream ${stream} was refused: ${error?.description ?? 'no success'}` +
        (error?.err_code === undefined ? '' : ` (err_code ${error.err_code})`),
    )
  }
}

export interface SpreadReport {
  /** The leaders as this check read them, before its step-downs. */
  readonly leaders: Leaders
  /** The servers that can lead, sorted. */
  readonly servers: readonly string[]
  /** Streams led per server, as read. */
  readonly counts: ReadonlyMap<string, number>
  /** Max minus min of `counts`, as read. */
  readonly spread: number
  /** `spread` is at most 1. */
  readonly even: boolean
  /** Streams without a leader, or whose info could not be read. */
  readonly leaderless: readonly string[]
  /** Streams whose leaders this check asked to step down and which said they did. */
  readonly steppedDown: readonly string[]
  /** Streams whose step-down was refused or not answered in time. */
  readonly failed: readonly string[]
}

export interface LeaderSpreaderOptions {
  readonly jsm: LeaderReader & Pick<JetStreamManager, 'getOptions'>
  /** The connection `jsm` uses: nats.js v3's JetStreamManager type does not expose it. */
  readonly nc: Pick<NatsConnection, 'request'>
  /** The streams whose leaders are spread. */
  readonly streams: readonly string[]
  /**
   * The servers (names) that can lead the streams now: configured, or derived from the infos the
   * check just read, e.g. `(infos) => serversOf(infos.values())`. It must answer within the request
   * deadline. A server listed but down (or unable to lead the streams) keeps the spread uneven, and
   * each check steps down the leaders its share would take, at most once per spacing per stream.
   */
  readonly servers: (
    infos: ReadonlyMap<string, StreamInfo | null>,
  ) => readonly string[] | Promise<readonly string[]>
  /** How often a check runs by itself; the first runs at once. */
  readonly intervalMs: number
  readonly log: Logger
  readonly timers?: Timers
  /** The clock of the spacing; Date.now unless given. */
  readonly now?: () => number
  /** STEP_DOWN_SPACING_MS unless given. */
  readonly stepDownSpacingMs?: number
  /** LEADER_REQUEST_TIMEOUT_MS unless given. */
  readonly requestTimeoutMs?: number
}

export interface LeaderSpreader {
  /** Read, plan and step down once; joins the check in flight if there is one. Rejects once stopped. */
  check(): Promise<SpreadReport>
  /** The leaders the last check read (empty before the first). */
  leaders(): Leaders
  /** Step-downs the servers said they made, over all checks. */
  stepDowns(): number
  /** No more checks by themselves, and none asked for; a check in flight sends no more step-downs. */
  stop(): void
}

export function createLeaderSpreader(options: LeaderSpreaderOptions): LeaderSpreader {
  const { jsm, nc, log, intervalMs } = options
  const streams = [...new Set(options.streams)]
  for (const stream of streams) assertStreamName(stream)
  if (!(Number.isFinite(intervalMs) && intervalMs > 0)) {
    throw new RangeError(`intervalMs must be a positive number: ${intervalMs}`)
  }
  const timers = options.timers ?? realTimers
  const now = options.now ?? Date.now
  const spacingMs = options.stepDownSpacingMs ?? STEP_DOWN_SPACING_MS
  const timeoutMs = options.requestTimeoutMs ?? LEADER_REQUEST_TIMEOUT_MS
  const apiPrefix = jsm.getOptions().apiPrefix ?? DEFAULT_API_PREFIX
  /** When each stream was last asked to step down, answered or not. */
  const lastStepDownAt = new Map<string, number>()
  let lastLeaders: Leaders = new Map()
  /** The leaders the check before this one read. */
  let previous: Leaders = new Map()
  let stepDowns = 0
  let wasEven: boolean | null = null
  let inFlight: Promise<SpreadReport> | null = null
  let stopped = false

  async function stepDown(stream: string, from: string | null, counts: ReadonlyMap<string, number>) {
    lastStepDownAt.set(stream, now())
    try {
      await requestStepDown(nc, stream, { apiPrefix, timeoutMs })
      stepDowns++
      log.info(
        { stream, from, counts: Object.fromEntries(counts) },
        'stream leader stepped down to spread leaders',
      )
      return true
    } catch (error) {
      log.warn({ err: error, stream, from }, 'stream leader step-down failed')
      return false
    }
  }

  async function run(): Promise<SpreadReport> {
    const infos = await readStreamInfos(jsm, streams, timeoutMs)
    const leaders = leadersOf(infos)
    lastLeaders = leaders
    const listed = await within(Promise.resolve(options.servers(infos)), timeoutMs, 'listing the servers')
    const servers = [...new Set(listed)].sort(compare)
    const counts = leaderCounts(leaders, servers)
    const spread = leaderSpread(counts)
    const even = spread <= 1
    const leaderless = streams.filter((stream) => leaders.get(stream) === null)
    const at = now()
    // A stream whose leader changed since the last check (an election this spreader did not ask
    // for) rests for a spacing too, as does one whose replicas are not all caught up (settled).
    for (const [stream, leader] of leaders)
      if (previous.has(stream) && previous.get(stream) !== leader) lastStepDownAt.set(stream, at)
    previous = leaders
    const resting = new Set(
      streams.filter(
        (stream) => at - (lastStepDownAt.get(stream) ?? -Infinity) < spacingMs || !settled(infos.get(stream)),
      ),
    )
    const planned = stopped ? [] : planStepDowns(leaders, servers, resting)
    const fields = { counts: Object.fromEntries(counts), spread, leaderless }
    if (even) {
      if (wasEven !== true) log.info(fields, 'stream leaders are spread evenly')
      else log.debug(fields, 'stream leaders are spread evenly')
    } else if (planned.length === 0) {
      log.debug({ ...fields, resting: [...resting] }, 'stream leaders uneven; none can step down now')
    }
    wasEven = even
    const answered = await Promise.all(
      planned.map((stream) => stepDown(stream, leaders.get(stream) ?? null, counts)),
    )
    return {
      leaders,
      servers,
      counts,
      spread,
      even,
      leaderless,
      steppedDown: planned.filter((_, index) => answered[index]),
      failed: planned.filter((_, index) => !answered[index]),
    }
  }

  function check(): Promise<SpreadReport> {
    if (stopped) return Promise.reject(new Error('the leader spreader is stopped'))
    if (inFlight === null) {
      const running = run().finally(() => {
        inFlight = null
      })
      inFlight = running
    }
    return inFlight
  }

  const tick = () => {
    if (stopped) return
    check().catch((error: unknown) => log.warn({ err: error }, 'leader spread check failed'))
  }
  const cancelFirst = timers.setTimeout(tick, 0)
  const cancelEvery = timers.setInterval(tick, intervalMs)

  return {
    check,
    leaders: () => lastLeaders,
    stepDowns: () => stepDowns,
    stop() {
      stopped = true
      cancelFirst()
      cancelEvery()
    },
  }
}

function assertStreamName(stream: string): void {
  if (stream.length === 0 || INVALID_STREAM_NAME.test(stream)) {
    throw new RangeError(`not a stream name: ${JSON.stringify(stream)}`)
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
