/**
 * The fabric with a gateway, in one test process on a real 3-server cluster: a manual trader of
 * `match-1`, an API node, a settlement node and a gateway; and a WebSocket client that checks
 * every frame it receives against the protocol.
 */

import { mkdtempSync, rmSync } from 'node:fs'
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
import { type ApiNode, DEPOSIT_SUBJECT, startApiNode } from '../../nodes/api/api-node.ts'
import { type SettlementNode, startSettlementNode } from '../../nodes/settlement/settlement-node.ts'
import type { ManualFeed } from '../../nodes/trader/replay-feed.ts'
import { startManualTraderNode, type TraderNode } from '../../nodes/trader/trader-node.ts'
import { type NatsCluster, startNatsCluster } from '../../scripts/nats-cluster.ts'
import { waitFor } from './wait.ts'

export const SECRET = 'a-test-secret-of-at-least-32-bytes!!'
export const GAME = 'match-1'
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })

export interface GatewayStack {
  readonly cluster: NatsCluster
  readonly nc: NatsConnection
  readonly feed: ManualFeed
  readonly trader: TraderNode
  readonly api: ApiNode
  readonly settlement: SettlementNode
  readonly gateway: GatewayNode
  /** ws://.../v1/ws */
  readonly wsUrl: string
  token(userId: string, ttlSeconds?: number): Promise<string>
  deposit(userId: string, amountCents: number): Promise<void>
  close(): Promise<void>
}

export async function startGatewayStack(
  options: { limits?: Partial<GatewayLimits>; origins?: string[]; allowMissingOrigin?: boolean } = {},
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
  const api = await startApiNode({
    nc: await cluster.connect(),
    region: 'eu',
    node: 'api-1',
    backend: yjsBackend,
    shards: 4,
    log,
  })
  const settlement = await startSettlementNode({
    nc: await cluster.connect(),
    region: 'eu',
    node: 'settle-1',
    backend: yjsBackend,
    shards: 4,
    databasePath: join(dir, 'settle-1.db'),
    log,
  })
  trader.feed.emit({ type: 'match-start', home: 'Home', away: 'Away', server: 'home' })
  const gateway = await startGatewayNode({
    nc: await cluster.connect(),
    region: 'eu',
    node: 'gw-1',
    backend: yjsBackend,
    log,
    registry: new Registry(),
    auth: createAuthenticator({ hs256Secret: SECRET }),
    origins: options.origins ?? ['https://bet.example'],
    allowMissingOrigin: options.allowMissingOrigin ?? true,
    limits: { ...DEFAULT_GATEWAY_LIMITS, ...options.limits },
    host: '127.0.0.1',
    port: 0,
    demoLogin: { secret: SECRET, ttlSeconds: 600 },
  })
  await waitFor('the gateway replica holds the game', () => gateway.replicas.replica(GAME) !== undefined)
  const nc = await cluster.connect()
  return {
    cluster,
    nc,
    feed: trader.feed,
    trader,
    api,
    settlement,
    gateway,
    wsUrl: `${gateway.url.replace('http', 'ws')}${WS_PATH}`,
    token: (userId, ttlSeconds = 600) => signToken(SECRET, userId, ttlSeconds),
    async deposit(userId, amountCents) {
      const reply = await nc.request(
        DEPOSIT_SUBJECT,
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
  const invalid: unknown[] = []
  let cursor = 0
  const waiters = new Set<() => void>()
  ws.on('message', (data: Buffer) => {
    const value: unknown = JSON.parse(data.toString('utf8'))
    if (isServerFrame(value)) frames.push(value)
    else invalid.push(value)
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

export const ofType =
  <T extends ServerFrame['type']>(
    type: T,
    extra: (frame: Extract<ServerFrame, { type: T }>) => boolean = () => true,
  ) =>
  (frame: ServerFrame): frame is Extract<ServerFrame, { type: T }> =>
    frame.type === type && extra(frame as Extract<ServerFrame, { type: T }>)
