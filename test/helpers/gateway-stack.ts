/**
 * The fabric with a gateway, in one test process on a real 3-server cluster: a manual trader of
 * `match-1` (and, on request, one more manual trader per extra game, each with its first point
 * started), an API node, a settlement node and a gateway; and a WebSocket client that checks every
 * frame it receives against the protocol.
 */

import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { type Socket, connect as tcpConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { NatsConnection } from '@nats-io/transport-node'
import pino from 'pino'
import { Registry } from 'prom-client'
import WebSocket from 'ws'
import { yjsBackend } from '../../crdt/index.ts'
import { createAuthenticator, signToken } from '../../gateway/auth.ts'
import { type GatewayNode, startGatewayNode } from '../../gateway/gateway-node.ts'
import { isServerFrame, type ServerFrame, WS_PATH } from '../../gateway/protocol.ts'
import { DEFAULT_GATEWAY_LIMITS, type GatewayLimits } from '../../gateway/server.ts'
import { type ApiNode, startApiNode } from '../../nodes/api/api-node.ts'
import type { BetLimits } from '../../nodes/api/bet-limits.ts'
import { type SettlementNode, startSettlementNode } from '../../nodes/settlement/settlement-node.ts'
import type { ManualFeed } from '../../nodes/trader/replay-feed.ts'
import { startManualTraderNode, type TraderNode } from '../../nodes/trader/trader-node.ts'
import { depositSubject } from '../../protocol/subjects.ts'
import { freePorts, type NatsCluster, startNatsCluster } from '../../scripts/nats-cluster.ts'
import { waitFor } from './wait.ts'

export const SECRET = 'a-test-secret-of-at-least-32-bytes!!'
export const GAME = 'match-1'
/** The region's ledger shards: the API and settlement nodes serve them all, the gateway routes by them. */
export const STACK_SHARDS = 4
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })

export interface GatewayStack {
  readonly cluster: NatsCluster
  readonly nc: NatsConnection
  readonly feed: ManualFeed
  readonly trader: TraderNode
  /** The feed of each extra game (`extraGames`), by game id; empty without them. */
  readonly extraFeeds: ReadonlyMap<string, ManualFeed>
  readonly api: ApiNode
  readonly settlement: SettlementNode
  readonly gateway: GatewayNode
  /** The gateway's metrics. */
  readonly registry: Registry
  /** The origin of the gateway's page as its configuration names it, if it does. */
  readonly publicOrigin: string | undefined
  /** ws://.../v1/ws */
  readonly wsUrl: string
  token(userId: string, ttlSeconds?: number): Promise<string>
  deposit(userId: string, amountCents: number): Promise<void>
  close(): Promise<void>
}

export async function startGatewayStack(
  options: {
    limits?: Partial<GatewayLimits>
    origins?: string[]
    allowMissingOrigin?: boolean
    /**
     * Whether the gateway is configured with the origin it serves its page from (default): a free
     * port is found first, so that the origin can name it, as `npm start` does. Without it, only
     * `origins` admit a browser's socket.
     */
    publicOrigin?: boolean
    /** The gateway's clock of rate limits and lag checks. */
    now?: () => number
    /** The API node's bet limits, over its defaults. */
    apiLimits?: Partial<BetLimits>
    /**
     * Games beside `match-1`, each run by its own manual trader and started up to its first point,
     * so their markets are open (default none).
     */
    extraGames?: readonly string[]
  } = {},
): Promise<GatewayStack> {
  const cluster = await startNatsCluster()
  const dir = mkdtempSync(join(tmpdir(), 'gateway-stack-'))
  const trader = await startManualTraderNode({
    nc: await cluster.connect(),
    region: 'eu',
    backend: yjsBackend,
    log,
    limits: { staleFeedMs: 3_600_000 },
  })
  const extraTraders: TraderNode[] = []
  const extraFeeds = new Map<string, ManualFeed>()
  for (const gameId of options.extraGames ?? []) {
    const extra = await startManualTraderNode({
      nc: await cluster.connect(),
      region: 'eu',
      node: `trader-${gameId}`,
      gameId,
      backend: yjsBackend,
      log,
      limits: { staleFeedMs: 3_600_000 },
    })
    extraTraders.push(extra)
    extraFeeds.set(gameId, extra.feed)
    extra.feed.emit({ type: 'match-start', home: 'Home', away: 'Away', server: 'home' })
    extra.feed.emit({ type: 'point-start', point: 1, server: 'home' })
  }
  const api = await startApiNode({
    nc: await cluster.connect(),
    region: 'eu',
    node: 'api-1',
    backend: yjsBackend,
    shards: STACK_SHARDS,
    log,
    ...(options.apiLimits ? { limits: options.apiLimits } : {}),
  })
  const settlement = await startSettlementNode({
    nc: await cluster.connect(),
    region: 'eu',
    node: 'settle-1',
    backend: yjsBackend,
    shards: STACK_SHARDS,
    databasePath: join(dir, 'settle-1.db'),
    log,
  })
  trader.feed.emit({ type: 'match-start', home: 'Home', away: 'Away', server: 'home' })
  const registry = new Registry()
  const [port = 0] = options.publicOrigin === false ? [] : await freePorts(1)
  const publicOrigin = port === 0 ? undefined : `http://127.0.0.1:${port}`
  const gateway = await startGatewayNode({
    nc: await cluster.connect(),
    region: 'eu',
    node: 'gw-1',
    backend: yjsBackend,
    shards: STACK_SHARDS,
    log,
    registry,
    auth: createAuthenticator({ hs256Secret: SECRET }),
    origins: options.origins ?? ['https://bet.example'],
    allowMissingOrigin: options.allowMissingOrigin ?? true,
    limits: { ...DEFAULT_GATEWAY_LIMITS, ...options.limits },
    ...(publicOrigin ? { publicOrigin } : {}),
    host: '127.0.0.1',
    port,
    demoLogin: { secret: SECRET, ttlSeconds: 600 },
    ...(options.now ? { now: options.now } : {}),
  })
  for (const gameId of [GAME, ...extraFeeds.keys()])
    await waitFor(`the gateway replica holds ${gameId}`, () => gateway.replicas.replica(gameId) !== undefined)
  const nc = await cluster.connect()
  return {
    cluster,
    nc,
    feed: trader.feed,
    trader,
    extraFeeds,
    api,
    settlement,
    gateway,
    registry,
    publicOrigin,
    wsUrl: `${gateway.url.replace('http', 'ws')}${WS_PATH}`,
    token: (userId, ttlSeconds = 600) => signToken(SECRET, userId, ttlSeconds),
    async deposit(userId, amountCents) {
      const reply = await nc.request(
        depositSubject(userId, STACK_SHARDS),
        JSON.stringify({ id: `deposit-${userId}-${amountCents}-${Date.now()}`, userId, amountCents }),
        { timeout: 5_000 },
      )
      if (!reply.json<{ ok: boolean }>().ok) throw new Error(`deposit for ${userId} refused`)
    },
    async close() {
      await gateway.close()
      await settlement.close()
      await api.close()
      await trader.close()
      for (const extra of extraTraders) await extra.close()
      await nc.close()
      await cluster.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export interface TestClient {
  readonly ws: WebSocket
  /** Every frame received, in order. */
  readonly frames: ServerFrame[]
  /** When each frame arrived (wall ms), by index into frames. */
  readonly receivedAtMs: number[]
  /** Frames that broke the protocol (a test asserts this stays empty). */
  readonly invalid: unknown[]
  send(frame: unknown): void
  /** The first frame after `from` (an index into frames) that matches; waits for it. */
  next<F extends ServerFrame>(match: (frame: ServerFrame) => frame is F, timeoutMs?: number): Promise<F>
  next(match: (frame: ServerFrame) => boolean, timeoutMs?: number): Promise<ServerFrame>
  readonly closed: Promise<{ code: number; reason: string }>
  close(): Promise<void>
}

/** Open a socket; resolves once the upgrade is answered (the server may still close it at once). */
export async function openClient(
  url: string,
  options: { token?: string; origin?: string; headers?: Record<string, string> } = {},
): Promise<TestClient> {
  const target = options.token ? `${url}?access_token=${encodeURIComponent(options.token)}` : url
  const ws = new WebSocket(target, {
    headers: { ...(options.origin ? { origin: options.origin } : {}), ...options.headers },
  })
  const frames: ServerFrame[] = []
  const receivedAtMs: number[] = []
  const invalid: unknown[] = []
  let cursor = 0
  const waiters = new Set<() => void>()
  ws.on('message', (data: Buffer) => {
    const value: unknown = JSON.parse(data.toString('utf8'))
    if (isServerFrame(value)) {
      frames.push(value)
      receivedAtMs.push(Date.now())
    } else invalid.push(value)
    for (const wake of waiters) wake()
  })
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    ws.once('close', (code, reason) => {
      resolve({ code, reason: reason.toString() })
      for (const wake of waiters) wake()
    }),
  )
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('error', reject)
  })
  const client: TestClient = {
    ws,
    frames,
    receivedAtMs,
    invalid,
    send: (frame) => ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame)),
    next(match: (frame: ServerFrame) => boolean, timeoutMs = 10_000): Promise<ServerFrame> {
      return new Promise((resolve, reject) => {
        const check = () => {
          while (cursor < frames.length) {
            const frame = frames[cursor++] as ServerFrame
            if (match(frame)) {
              cleanup()
              return resolve(frame)
            }
          }
          if (ws.readyState === WebSocket.CLOSED) {
            cleanup()
            reject(new Error('the socket closed while waiting for a frame'))
          }
        }
        const timer = setTimeout(() => {
          cleanup()
          reject(
            new Error(`no matching frame within ${timeoutMs} ms; last: ${JSON.stringify(frames.slice(-3))}`),
          )
        }, timeoutMs)
        const cleanup = () => {
          clearTimeout(timer)
          waiters.delete(check)
        }
        waiters.add(check)
        check()
      })
    },
    closed,
    async close() {
      if (ws.readyState !== WebSocket.CLOSED) {
        ws.close()
        await closed
      }
    },
  }
  return client
}

/** How the gateway closed a socket; fails, rather than hangs, if it stays open. */
export async function closeOf(client: TestClient): Promise<{ code: number; reason: string }> {
  await waitFor('the gateway to close the socket', () => client.ws.readyState === WebSocket.CLOSED)
  return client.closed
}

export const ofType =
  <T extends ServerFrame['type']>(
    type: T,
    extra: (frame: Extract<ServerFrame, { type: T }>) => boolean = () => true,
  ) =>
  (frame: ServerFrame): frame is Extract<ServerFrame, { type: T }> =>
    frame.type === type && extra(frame as Extract<ServerFrame, { type: T }>)

/**
 * A client that completes the WebSocket handshake, sends one frame, and then never reads again:
 * a raw TCP socket, since the ws client resumes a paused socket by itself.
 */
export async function openStalledClient(url: string, token: string, frame: unknown): Promise<Socket> {
  const target = new URL(`${url}?access_token=${encodeURIComponent(token)}`)
  const socket = tcpConnect(Number(target.port), target.hostname)
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  socket.write(
    [
      `GET ${target.pathname}${target.search} HTTP/1.1`,
      `Host: ${target.host}`,
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
      'Sec-WebSocket-Version: 13',
      '',
      '',
    ].join('\r\n'),
  )
  await new Promise<void>((resolve, reject) => {
    let head = ''
    const onData = (chunk: Buffer) => {
      head += chunk.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      socket.off('data', onData)
      socket.pause()
      if (head.startsWith('HTTP/1.1 101')) resolve()
      else reject(new Error(`upgrade refused: ${head.split('\r\n')[0]}`))
    }
    socket.on('data', onData)
  })
  // One masked text frame (clients must mask), payload under 126 bytes.
  const payload = Buffer.from(JSON.stringify(frame))
  if (payload.length >= 126) throw new RangeError("keep the stalled client's frame under 126 bytes")
  const mask = randomBytes(4)
  const masked = Buffer.from(payload.map((byte, i) => byte ^ (mask[i % 4] as number)))
  socket.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]))
  return socket
}

/**
 * Resume reading a stalled client: decode the server's frames (unmasked; text frames, close)
 * into `frames`, parsed as JSON. Resolves `closed` with the close code when one arrives.
 */
export function readStalledClient(socket: Socket): { frames: unknown[]; closed: Promise<number> } {
  const frames: unknown[] = []
  let buffer = Buffer.alloc(0)
  let fragments: Buffer[] = []
  let onClose: (code: number) => void = () => {}
  const closed = new Promise<number>((resolve) => {
    onClose = resolve
  })
  socket.on('data', (chunk: Buffer) => {
    buffer = Buffer.concat([buffer, chunk])
    for (;;) {
      if (buffer.length < 2) return
      const opcode = (buffer[0] as number) & 0x0f
      const fin = ((buffer[0] as number) & 0x80) !== 0
      let length = (buffer[1] as number) & 0x7f
      let offset = 2
      if (length === 126) {
        if (buffer.length < 4) return
        length = buffer.readUInt16BE(2)
        offset = 4
      } else if (length === 127) {
        if (buffer.length < 10) return
        length = Number(buffer.readBigUInt64BE(2))
        offset = 10
      }
      if (buffer.length < offset + length) return
      const payload = buffer.subarray(offset, offset + length)
      buffer = buffer.subarray(offset + length)
      if (opcode === 0x8) onClose(payload.length >= 2 ? payload.readUInt16BE(0) : 1005)
      else if (opcode === 0x1 || opcode === 0x0) {
        fragments.push(Buffer.from(payload))
        if (fin) {
          frames.push(JSON.parse(Buffer.concat(fragments).toString('utf8')))
          fragments = []
        }
      }
    }
  })
  socket.once('close', () => onClose(1006))
  socket.resume()
  return { frames, closed }
}
