/**
 * The client side of the gateway benchmark, a process of its own so that the sockets' CPU is
 * neither the driver's nor the gateway's: thousands of WebSocket clients following one game through
 * the gateway, or as many subscribed straight to a nats-server WebSocket listener (the baseline),
 * and bettors placing bets through the gateway on an open-loop schedule. bench/gateway.ts starts it
 * with an IPC channel, sends one command at a time and gets one reply per command.
 *
 * Times are `process.hrtime` microseconds: CLOCK_MONOTONIC, one clock for every process on a Linux
 * machine, so a receipt time here minus a publish time taken in the driver is a latency, with no
 * wall-clock step or slew in between.
 *
 * Clients do as little as they can per frame, so that their own CPU distorts the figures least: a
 * gateway delta or a NATS message is not parsed, only searched for the price that names the update
 * (`"tick":<price>`, see bench/gateway.ts); every other frame is parsed in full.
 */

import * as hdr from 'hdr-histogram-js'
import WebSocket from 'ws'
import { signToken } from '../gateway/auth.ts'
import { nowUs, openLoop } from './open-loop.ts'

/** Tokens outlive any run; a socket closes when its token expires. */
const TOKEN_TTL_S = 3_600
/** Upgrades in flight at once: enough to open 10,000 sockets in seconds, few enough for the accept backlog. */
const OPEN_CONCURRENCY = 200
/** One socket's upgrade and first frame; a socket slower than this counts as failed. */
const OPEN_TIMEOUT_MS = 30_000
const CLOSE_TIMEOUT_MS = 30_000
const POLL_MS = 20
/** Errors kept verbatim per command; the rest are only counted. */
const ERRORS_KEPT = 5
const LATENCY_US_MAX = 120_000_000
/** A NATS protocol line longer than this is not one (MSG lines are about 30 bytes here). */
const NATS_LINE_BYTES_MAX = 4_096
const TICK_NEEDLE = Buffer.from('"tick":')
const AT_MS_NEEDLE = Buffer.from('"atMs":')
const DELTA_PREFIX = Buffer.from('{"type":"delta"')
const CRLF = Buffer.from('\r\n')
const NATS_PONG = Buffer.from('PONG\r\n')

// ---- the commands and replies (bench/gateway.ts imports these types) --------------------------

export type FanoutTarget = 'gateway' | 'nats'

export interface OpenFanoutCommand {
  readonly type: 'open-fanout'
  readonly target: FanoutTarget
  /** ws://host:port/v1/ws of the gateway, or ws://host:port of a nats-server. */
  readonly url: string
  readonly count: number
  readonly userPrefix: string
  readonly gameId: string
  /** The core NATS subject the baseline clients subscribe to. */
  readonly subject: string
  /** Update k carries the price priceBase + k for selection `tick`. */
  readonly priceBase: number
  readonly updatesMax: number
}
export interface ReportFanoutCommand {
  readonly type: 'report-fanout'
  /** When update k was published (hrtime us), by k. */
  readonly publishedUs: readonly number[]
  /** The same instants in wall-clock ms, to compare with the gateway's `atMs`. */
  readonly publishedWallMs: readonly number[]
  /** How long to wait for receipts still on their way. */
  readonly waitMs: number
}
export interface CloseAllCommand {
  readonly type: 'close-all'
}
export interface BetsCommand {
  readonly type: 'bets'
  readonly url: string
  readonly sockets: number
  readonly userPrefix: string
  readonly rate: number
  readonly seconds: number
  readonly gameId: string
  readonly marketId: string
  readonly selectionId: string
  readonly stakeCents: number
  readonly betPrefix: string
  /** How long to wait after the last send for the last final verdicts. */
  readonly finalWaitMs: number
}
export type ClientsCommand = OpenFanoutCommand | ReportFanoutCommand | CloseAllCommand | BetsCommand
export type ClientsRequest = ClientsCommand & { readonly id: number }

/** Milliseconds. */
export interface LatencySummary {
  readonly count: number
  readonly p50: number
  readonly p99: number
  readonly p999: number
  readonly max: number
}
export interface OpenResult {
  readonly ready: number
  readonly failed: number
  readonly firstErrors: string[]
  readonly ms: number
}
export interface FanoutReport {
  /** Every (client, update) receipt. */
  readonly deliveries: LatencySummary
  /** Per update, the latest receipt over all clients. */
  readonly lastClient: LatencySummary
  /**
   * Until each client holds the update's price or a newer one: the same as `deliveries` unless
   * updates were conflated (the gateway sends the newest state, not every step, when it falls behind).
   */
  readonly newest: LatencySummary
  readonly newestLastClient: LatencySummary
  /**
   * Per update, publish to the gateway's `atMs` (wall ms), when it serialized the delta: the fabric
   * and the gateway's own queue, before any socket write.
   */
  readonly fabricLeg: LatencySummary
  /**
   * The median over updates of the latest receipt, in the first and in the last tenth of the run:
   * a second much above the first means a queue was building (the path could not keep up).
   */
  readonly lastClientTrendMs: readonly [number, number]
  readonly updates: number
  /** Updates times ready clients. */
  readonly expected: number
  /** Receipts that never came (conflated, dropped or the socket closed). */
  readonly missing: number
  /** Snapshots received after the first: the gateway resyncing a lagging client. */
  readonly resyncSnapshots: number
  /** Sockets the server closed while the updates ran, by close code. */
  readonly closedByServer: Record<string, number>
  readonly errors: Record<string, number>
  /** The smallest latency seen: a negative one would mean the clocks do not compare. */
  readonly minLatencyMs: number
}
export interface BetsReport {
  readonly connectMs: number
  readonly sent: number
  readonly provisional: LatencySummary
  readonly final: LatencySummary
  readonly rejected: number
  /** Bets refused or answered with an error frame, by code, and finals that never came. */
  readonly errors: Record<string, number>
  readonly firstErrors: string[]
}
export type ClientsReply =
  | { readonly id: number; readonly ok: true; readonly result: unknown }
  | { readonly id: number; readonly ok: false; readonly error: string }

// ---- shared pieces --------------------------------------------------------------------------------

const histogram = () =>
  hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: LATENCY_US_MAX,
    numberOfSignificantValueDigits: 3,
  })
type Histogram = ReturnType<typeof histogram>

function summary(h: Histogram): LatencySummary {
  const at = (p: number) => (h.totalCount === 0 ? 0 : h.getValueAtPercentile(p) / 1000)
  return { count: h.totalCount, p50: at(50), p99: at(99), p999: at(99.9), max: at(100) }
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const count = (counts: Record<string, number>, key: string) => {
  counts[key] = (counts[key] ?? 0) + 1
}
const describe = (error: unknown) => (error instanceof Error ? error.message : String(error))

/** The integer after `"tick":` in a frame, or -1. */
const tickPrice = (data: Buffer) => integerAt(data, data.indexOf(TICK_NEEDLE), TICK_NEEDLE.length)

/** The integer `skip` bytes after `at`, or -1. */
function integerAt(data: Buffer, from: number, skip: number): number {
  if (from === -1) return -1
  let at = from + skip
  let value = 0
  let digits = 0
  for (; at < data.length; at++, digits++) {
    const byte = data[at] as number
    if (byte < 48 || byte > 57) break
    value = value * 10 + (byte - 48)
  }
  return digits === 0 ? -1 : value
}

function asBuffer(data: WebSocket.RawData): Buffer {
  if (Buffer.isBuffer(data)) return data
  return Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data)
}

/** Run `open(i)` for i < count, `concurrency` at a time; failures are counted, not thrown. */
async function openAll(
  total: number,
  open: (i: number) => Promise<void>,
): Promise<{ failed: number; firstErrors: string[] }> {
  let next = 0
  let failed = 0
  const firstErrors: string[] = []
  const worker = async () => {
    while (next < total) {
      const i = next++
      try {
        await open(i)
      } catch (error) {
        failed++
        if (firstErrors.length < ERRORS_KEPT) firstErrors.push(describe(error))
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(OPEN_CONCURRENCY, total) }, worker))
  return { failed, firstErrors }
}

interface SocketHandlers {
  onOpen?(ws: WebSocket): void
  /** Every frame; call `ready()` once the socket is set up (the promise resolves then). */
  onFrame(ws: WebSocket, data: Buffer, ready: () => void): void
}

/** A socket, once its handlers say it is ready; rejects when it closes, fails or times out first. */
function openSocket(url: string, handlers: SocketHandlers): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false, skipUTF8Validation: true })
    let settled = false
    const settle = (error?: Error) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      if (error === undefined) return resolve(ws)
      ws.terminate()
      reject(error)
    }
    const timer = setTimeout(
      () => settle(new Error(`not ready within ${OPEN_TIMEOUT_MS} ms`)),
      OPEN_TIMEOUT_MS,
    )
    ws.once('open', () => handlers.onOpen?.(ws))
    ws.on('message', (data) => handlers.onFrame(ws, asBuffer(data), () => settle()))
    // `on`, not `once`: a second error event without a listener would throw.
    ws.on('error', (error) => settle(error))
    ws.once('close', (code, reason) => settle(new Error(`closed ${code} ${reason.toString()}`)))
  })
}

async function closeSockets(sockets: readonly WebSocket[]): Promise<void> {
  const open = sockets.filter((ws) => ws.readyState !== WebSocket.CLOSED)
  await Promise.all(
    open.map(
      (ws) =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(() => {
            ws.terminate()
            resolve()
          }, CLOSE_TIMEOUT_MS)
          ws.once('close', () => {
            clearTimeout(timer)
            resolve()
          })
          if (ws.readyState === WebSocket.CONNECTING) ws.terminate()
          else ws.close(1000)
        }),
    ),
  )
}

// ---- fan-out ----------------------------------------------------------------------------------------

interface FanoutPhase {
  readonly command: OpenFanoutCommand
  readonly sockets: WebSocket[]
  /** Receipt time (hrtime us) of update k at ready client c: receipts[c * updatesMax + k]; 0 = none. */
  readonly receipts: Float64Array
  /** The `atMs` of the gateway's delta carrying update k (wall ms); 0 = none seen. */
  readonly gatewayAtMs: Float64Array
  readonly ready: Uint8Array
  readonly closedByServer: Record<string, number>
  readonly errors: Record<string, number>
  resyncSnapshots: number
  closing: boolean
}

let fanout: FanoutPhase | null = null

/** Record a receipt of the update with this price; returns the update's index, or -1. */
function record(phase: FanoutPhase, client: number, price: number, atUs: number): number {
  const k = price - phase.command.priceBase
  if (k < 0 || k >= phase.command.updatesMax) return -1
  const slot = client * phase.command.updatesMax + k
  if (phase.receipts[slot] === 0) phase.receipts[slot] = atUs
  return k
}

/** A gateway frame: deltas are searched for the price; hello, snapshots and errors are parsed. */
function onGatewayFrame(phase: FanoutPhase, client: number, data: Buffer, ready: () => void): void {
  const atUs = nowUs()
  if (data.subarray(0, DELTA_PREFIX.length).equals(DELTA_PREFIX)) {
    const k = record(phase, client, tickPrice(data), atUs)
    // The delta's own `atMs` is its last key (a changed clock has one too, earlier in the frame).
    if (k >= 0 && phase.gatewayAtMs[k] === 0)
      phase.gatewayAtMs[k] = integerAt(data, data.lastIndexOf(AT_MS_NEEDLE), AT_MS_NEEDLE.length)
    return
  }
  const frame = JSON.parse(data.toString('utf8')) as { type?: string; code?: string }
  if (frame.type === 'snapshot') {
    if (phase.ready[client] === 1) phase.resyncSnapshots++
    record(phase, client, tickPrice(data), atUs)
    phase.ready[client] = 1
    ready()
  } else if (frame.type === 'error') count(phase.errors, frame.code ?? 'error')
}

/** A reader of the NATS text protocol off a WebSocket: MSG, PING, PONG, INFO, +OK, -ERR. */
function natsReader(
  onMessage: (payload: Buffer) => void,
  onPong: () => void,
  onError: (line: string) => void,
) {
  let pending: Buffer = Buffer.alloc(0)
  return (ws: WebSocket, chunk: Buffer) => {
    const data = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    let at = 0
    for (;;) {
      const end = data.indexOf(CRLF, at)
      if (end === -1) break
      const op = data.toString('latin1', at, Math.min(end, at + 8))
      if (op.startsWith('MSG ')) {
        const line = data.toString('latin1', at, end)
        const size = Number(line.slice(line.lastIndexOf(' ') + 1))
        if (end + 2 + size + 2 > data.length) break
        onMessage(data.subarray(end + 2, end + 2 + size))
        at = end + 2 + size + 2
        continue
      }
      if (op.startsWith('PING')) ws.send(NATS_PONG)
      else if (op.startsWith('PONG')) onPong()
      else if (op.startsWith('-ERR')) onError(data.toString('latin1', at, end))
      at = end + 2
    }
    pending = data.subarray(at)
    if (pending.length > NATS_LINE_BYTES_MAX && pending.indexOf(CRLF) === -1) {
      onError('a protocol line longer than the bound')
      pending = Buffer.alloc(0)
    }
  }
}

function watchClose(phase: FanoutPhase, ws: WebSocket): void {
  ws.once('close', (code) => {
    if (!phase.closing) count(phase.closedByServer, String(code))
  })
}

/** A gateway client: on the hello it subscribes; it is ready once the game's snapshot arrives. */
async function openGatewayClient(phase: FanoutPhase, client: number, secret: string): Promise<void> {
  const { command } = phase
  const token = await signToken(secret, `${command.userPrefix}${client}`, TOKEN_TTL_S)
  let hello = false
  const ws = await openSocket(`${command.url}?access_token=${encodeURIComponent(token)}`, {
    onFrame(socket, data, ready) {
      if (hello) return onGatewayFrame(phase, client, data, ready)
      hello = true
      socket.send(JSON.stringify({ type: 'subscribe', gameId: command.gameId }))
    },
  })
  phase.sockets.push(ws)
  watchClose(phase, ws)
}

/** A baseline client: NATS over WebSocket; ready once the PONG after its SUB arrives. */
async function openNatsClient(phase: FanoutPhase, client: number): Promise<void> {
  const { command } = phase
  let ready = () => {}
  const read = natsReader(
    (payload) => record(phase, client, tickPrice(payload), nowUs()),
    () => {
      phase.ready[client] = 1
      ready()
    },
    (line) => count(phase.errors, line.slice(0, 60)),
  )
  const ws = await openSocket(command.url, {
    onOpen(socket) {
      // The PONG to this PING says the server has registered the subscription.
      socket.send(
        Buffer.from(`CONNECT {"verbose":false,"pedantic":false}\r\nSUB ${command.subject} 1\r\nPING\r\n`),
      )
    },
    onFrame(socket, data, settle) {
      ready = settle
      read(socket, data)
    },
  })
  phase.sockets.push(ws)
  watchClose(phase, ws)
}

async function openFanout(command: OpenFanoutCommand, secret: string): Promise<OpenResult> {
  if (fanout !== null) throw new Error('a fan-out phase is already open; close-all first')
  const phase: FanoutPhase = {
    command,
    sockets: [],
    receipts: new Float64Array(command.count * command.updatesMax),
    gatewayAtMs: new Float64Array(command.updatesMax),
    ready: new Uint8Array(command.count),
    closedByServer: {},
    errors: {},
    resyncSnapshots: 0,
    closing: false,
  }
  fanout = phase
  const startUs = nowUs()
  const { failed, firstErrors } = await openAll(command.count, (i) =>
    command.target === 'gateway' ? openGatewayClient(phase, i, secret) : openNatsClient(phase, i),
  )
  return { ready: command.count - failed, failed, firstErrors, ms: (nowUs() - startUs) / 1000 }
}

function receiptsComplete(phase: FanoutPhase, updates: number): boolean {
  const { count: clients, updatesMax } = phase.command
  for (let c = 0; c < clients; c++) {
    if (phase.ready[c] === 0) continue
    for (let k = 0; k < updates; k++) if (phase.receipts[c * updatesMax + k] === 0) return false
  }
  return true
}

/** Latencies of one kind: of every receipt, and per update of the latest receipt over clients. */
interface LatencyPair {
  readonly all: Histogram
  readonly last: Histogram
}
const latencyPair = (): LatencyPair => ({ all: histogram(), last: histogram() })

/** Recorded at 1 us at least: a latency below that only means the clocks tick apart. */
const recordUs = (h: Histogram, us: number) => h.recordValue(Math.max(1, Math.round(us)))

/**
 * Walk one client's receipts from the last update back, so that `newest` (the earliest receipt of
 * this update or a later one) is known at each step.
 */
function addClient(
  phase: FanoutPhase,
  client: number,
  publishedUs: readonly number[],
  latest: { exact: Float64Array; newest: Float64Array },
  exact: Histogram,
  newest: Histogram,
): number {
  const base = client * phase.command.updatesMax
  let missing = 0
  let newestUs = 0
  for (let k = publishedUs.length - 1; k >= 0; k--) {
    const atUs = phase.receipts[base + k] as number
    if (atUs !== 0) newestUs = newestUs === 0 ? atUs : Math.min(newestUs, atUs)
    const published = publishedUs[k] as number
    if (atUs === 0) missing++
    else {
      recordUs(exact, atUs - published)
      latest.exact[k] = Math.max(latest.exact[k] as number, atUs - published)
    }
    if (newestUs !== 0) {
      recordUs(newest, newestUs - published)
      latest.newest[k] = Math.max(latest.newest[k] as number, newestUs - published)
    }
  }
  return missing
}

async function reportFanout(command: ReportFanoutCommand): Promise<FanoutReport> {
  const phase = fanout
  if (phase === null) throw new Error('no fan-out phase is open')
  const updates = Math.min(command.publishedUs.length, phase.command.updatesMax)
  const publishedUs = command.publishedUs.slice(0, updates)
  const deadline = Date.now() + command.waitMs
  while (!receiptsComplete(phase, updates) && Date.now() < deadline) await delay(POLL_MS)
  const exact = latencyPair()
  const newest = latencyPair()
  const fabricLeg = histogram()
  const latest = { exact: new Float64Array(updates).fill(-1), newest: new Float64Array(updates).fill(-1) }
  let ready = 0
  let missing = 0
  for (let c = 0; c < phase.command.count; c++) {
    if (phase.ready[c] === 0) continue
    ready++
    missing += addClient(phase, c, publishedUs, latest, exact.all, newest.all)
  }
  for (let k = 0; k < updates; k++) {
    if ((latest.exact[k] as number) >= 0) recordUs(exact.last, latest.exact[k] as number)
    if ((latest.newest[k] as number) >= 0) recordUs(newest.last, latest.newest[k] as number)
    const atMs = phase.gatewayAtMs[k] as number
    if (atMs > 0) recordUs(fabricLeg, (atMs - (command.publishedWallMs[k] as number)) * 1000)
  }
  const report: FanoutReport = {
    deliveries: summary(exact.all),
    lastClient: summary(exact.last),
    newest: summary(newest.all),
    newestLastClient: summary(newest.last),
    fabricLeg: summary(fabricLeg),
    lastClientTrendMs: [medianMs(latest.exact, 0, 0.1), medianMs(latest.exact, 0.9, 1)],
    updates,
    expected: ready * updates,
    missing,
    resyncSnapshots: phase.resyncSnapshots,
    closedByServer: { ...phase.closedByServer },
    errors: { ...phase.errors },
    minLatencyMs: minimumLatencyMs(phase, publishedUs),
  }
  for (const h of [exact.all, exact.last, newest.all, newest.last, fabricLeg]) h.destroy()
  return report
}

/** The median of the values (us) in a slice of the run given as fractions; negative ones are none. */
function medianMs(values: Float64Array, from: number, to: number): number {
  const part = values
    .slice(Math.floor(values.length * from), Math.ceil(values.length * to))
    .filter((value) => value >= 0)
    .sort()
  return part.length === 0 ? 0 : (part[Math.floor(part.length / 2)] as number) / 1000
}

/** The smallest receipt latency: a negative one would mean the two processes' clocks do not compare. */
function minimumLatencyMs(phase: FanoutPhase, publishedUs: readonly number[]): number {
  let minUs = Number.POSITIVE_INFINITY
  for (let c = 0; c < phase.command.count; c++)
    for (let k = 0; k < publishedUs.length; k++) {
      const atUs = phase.receipts[c * phase.command.updatesMax + k] as number
      if (atUs !== 0) minUs = Math.min(minUs, atUs - (publishedUs[k] as number))
    }
  return Number.isFinite(minUs) ? minUs / 1000 : 0
}

async function closeAll(): Promise<{ closed: number }> {
  const phase = fanout
  if (phase === null) return { closed: 0 }
  phase.closing = true
  await closeSockets(phase.sockets)
  fanout = null
  return { closed: phase.sockets.length }
}

// ---- bets -------------------------------------------------------------------------------------------

interface BetFrameSeen {
  readonly type?: string
  readonly status?: string
  readonly betId?: string
  readonly ref?: string
  readonly accepted?: boolean
  readonly code?: string
  readonly message?: string
}

/** What the bettors' sockets hear: latencies of each bet's statuses, and what went wrong. */
function createBetTracker() {
  const provisional = histogram()
  const final = histogram()
  const scheduled = new Map<string, number>()
  const awaitingFinal = new Set<string>()
  const errors: Record<string, number> = {}
  const firstErrors: string[] = []
  let rejected = 0
  const fail = (betId: string | undefined, code: string, message: string) => {
    count(errors, code)
    if (firstErrors.length < ERRORS_KEPT) firstErrors.push(`${code}: ${message}`.slice(0, 200))
    if (betId !== undefined) awaitingFinal.delete(betId)
  }
  return {
    awaitingFinal,
    sent(betId: string, scheduledUs: number) {
      scheduled.set(betId, scheduledUs)
      awaitingFinal.add(betId)
    },
    onFrame(data: Buffer) {
      const atUs = nowUs()
      const frame = JSON.parse(data.toString('utf8')) as BetFrameSeen
      const betId = frame.betId ?? frame.ref
      const at = betId === undefined ? undefined : scheduled.get(betId)
      if (frame.type === 'error') return fail(betId, frame.code ?? 'error', frame.message ?? '')
      if (frame.type !== 'bet' || betId === undefined || at === undefined) return
      if (frame.status === 'provisional') {
        provisional.recordValue(Math.max(1, atUs - at))
        if (frame.accepted === false) rejected++
      } else if (frame.status === 'final' && awaitingFinal.delete(betId)) {
        final.recordValue(Math.max(1, atUs - at))
      } else if (frame.status === 'refused') fail(betId, frame.code ?? 'refused', frame.message ?? '')
    },
    report(connectMs: number): BetsReport {
      if (awaitingFinal.size > 0) errors['no final'] = awaitingFinal.size
      return {
        connectMs,
        sent: scheduled.size,
        provisional: summary(provisional),
        final: summary(final),
        rejected,
        errors,
        firstErrors,
      }
    },
    destroy() {
      provisional.destroy()
      final.destroy()
    },
  }
}

async function openBettors(command: BetsCommand, secret: string, onFrame: (data: Buffer) => void) {
  const sockets: WebSocket[] = []
  const opened = await openAll(command.sockets, async (i) => {
    const token = await signToken(secret, `${command.userPrefix}${i}`, TOKEN_TTL_S)
    const ws = await openSocket(`${command.url}?access_token=${encodeURIComponent(token)}`, {
      // The first frame is the hello: the socket is admitted and may place bets.
      onFrame(_socket, data, ready) {
        ready()
        onFrame(data)
      },
    })
    sockets.push(ws)
  })
  return { sockets, opened }
}

async function placeBets(command: BetsCommand, secret: string): Promise<BetsReport> {
  const tracker = createBetTracker()
  const startUs = nowUs()
  const { sockets, opened } = await openBettors(command, secret, tracker.onFrame)
  try {
    if (opened.failed > 0)
      throw new Error(`${opened.failed} bettor sockets did not open: ${opened.firstErrors.join('; ')}`)
    const connectMs = (nowUs() - startUs) / 1000
    await openLoop(command.rate, command.seconds, (scheduledUs, i) => {
      const betId = `${command.betPrefix}-${i}`
      tracker.sent(betId, scheduledUs)
      const frame = {
        type: 'place',
        ref: betId,
        betId,
        gameId: command.gameId,
        marketId: command.marketId,
        selectionId: command.selectionId,
        stakeCents: command.stakeCents,
        odds: 1_001,
        policy: 'any',
      }
      ;(sockets[i % sockets.length] as WebSocket).send(JSON.stringify(frame))
    })
    const deadline = Date.now() + command.finalWaitMs
    while (tracker.awaitingFinal.size > 0 && Date.now() < deadline) await delay(POLL_MS)
    return tracker.report(connectMs)
  } finally {
    await closeSockets(sockets)
    tracker.destroy()
  }
}

// ---- the IPC loop -----------------------------------------------------------------------------------

function run(command: ClientsCommand, secret: string): Promise<unknown> {
  switch (command.type) {
    case 'open-fanout':
      return openFanout(command, secret)
    case 'report-fanout':
      return reportFanout(command)
    case 'close-all':
      return closeAll()
    case 'bets':
      return placeBets(command, secret)
  }
}

function main(): void {
  const secret = process.env.BENCH_JWT_SECRET ?? ''
  const reply = process.send?.bind(process)
  if (reply === undefined || secret === '') {
    console.error(
      'bench/gateway-clients.ts is started by bench/gateway.ts (an IPC channel and BENCH_JWT_SECRET)',
    )
    process.exit(1)
  }
  // Commands run one at a time, in order: the driver waits for each reply anyway.
  let queue: Promise<void> = Promise.resolve()
  process.on('message', (request: ClientsRequest) => {
    if (typeof request?.id !== 'number' || typeof request.type !== 'string') return
    queue = queue.then(() =>
      run(request, secret).then(
        (result) => void reply({ id: request.id, ok: true, result } satisfies ClientsReply),
        (error: unknown) =>
          void reply({ id: request.id, ok: false, error: describe(error) } satisfies ClientsReply),
      ),
    )
  })
  // The driver is gone (it crashed or was killed): nobody will close these sockets but us.
  process.on('disconnect', () => process.exit(1))
  // Exit rather than die on the driver's SIGTERM, so that --cpu-prof can write its profile.
  process.once('SIGTERM', () => process.exit(0))
}

main()
