/**
 * The stack most node tests need, on a real 3-server cluster: a trader driven by a manual feed
 * (writer `trader-1`, game `match-1`), API nodes and, when asked, settlement nodes with SQLite files
 * in a temporary folder. Everything is closed, and the folder removed, when the test ends.
 */

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { NatsConnection } from '@nats-io/transport-node'
import pino from 'pino'
import type { Test } from 'tap'
import { yjsBackend } from '../../crdt/index.ts'
import { type ApiNode, startApiNode } from '../../nodes/api/api-node.ts'
import type { BetLimits } from '../../nodes/api/bet-service.ts'
import { type SettlementNode, startSettlementNode } from '../../nodes/settlement/settlement-node.ts'
import { startManualTraderNode } from '../../nodes/trader/trader-node.ts'
import type { PlaceBetReply } from '../../protocol/bets.ts'
import { PLACE_SUBJECT } from '../../protocol/subjects.ts'
import { type NatsCluster, startNatsCluster } from '../../scripts/nats-cluster.ts'
import { waitFor } from './wait.ts'

export const STACK_REGION = 'eu'
export const STACK_GAME = 'match-1'
const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })

export interface NodeStackOptions {
  readonly shards?: number
  readonly apiNodes?: readonly string[]
  readonly settlementNodes?: readonly string[]
  /** The trader's clock; the machine's by default. */
  readonly traderClock?: () => number
  /** Each API node's clock, by node id; the machine's by default. */
  readonly apiClocks?: Readonly<Record<string, () => number>>
  /** Every API node's bet limits, over the defaults. */
  readonly apiLimits?: Partial<BetLimits>
}

export interface NodeStack {
  readonly cluster: NatsCluster
  readonly trader: Awaited<ReturnType<typeof startManualTraderNode>>
  readonly apis: readonly ApiNode[]
  readonly settlements: readonly SettlementNode[]
  /** A connection for the test's own requests. */
  readonly client: NatsConnection
}

export async function startNodeStack(t: Test, options: NodeStackOptions = {}): Promise<NodeStack> {
  const shards = options.shards ?? 4
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const trader = await startManualTraderNode({
    nc: await cluster.connect(),
    region: STACK_REGION,
    backend: yjsBackend,
    log,
    snapshotIntervalMs: 0,
    ...(options.traderClock ? { now: options.traderClock } : {}),
  })
  const apis: ApiNode[] = []
  for (const node of options.apiNodes ?? ['api-1']) {
    const clock = options.apiClocks?.[node]
    apis.push(
      await startApiNode({
        nc: await cluster.connect(),
        region: STACK_REGION,
        node,
        backend: yjsBackend,
        shards,
        log,
        ...(clock ? { clock } : {}),
        ...(options.apiLimits ? { limits: options.apiLimits } : {}),
      }),
    )
  }
  const dir = mkdtempSync(join(tmpdir(), 'node-stack-'))
  const settlements: SettlementNode[] = []
  for (const node of options.settlementNodes ?? []) {
    settlements.push(
      await startSettlementNode({
        nc: await cluster.connect(),
        region: STACK_REGION,
        node,
        backend: yjsBackend,
        shards,
        databasePath: join(dir, `${node}.db`),
        log,
      }),
    )
  }
  t.teardown(async () => {
    for (const settlement of settlements) await settlement.close()
    for (const api of apis) await api.close()
    await trader.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return { cluster, trader, apis, settlements, client: await cluster.connect() }
}

/** Credit a user through the first API node's ledger and wait until every API node folded it. */
export async function deposit(stack: NodeStack, userId: string, amountCents: number): Promise<void> {
  const [first] = stack.apis as [ApiNode]
  const before = first.ledger.foldFor(userId).balance(userId)
  await first.ledger.append({ type: 'deposit', id: `deposit-${userId}-${before}`, userId, amountCents })
  await waitFor(`${userId}'s deposit folded`, () =>
    stack.apis.every((api) => api.ledger.foldFor(userId).balance(userId) === before + amountCents),
  )
}

export async function placeBet(nc: NatsConnection, request: Record<string, unknown>): Promise<PlaceBetReply> {
  const reply = await nc.request(PLACE_SUBJECT, JSON.stringify(request), { timeout: 10_000 })
  return reply.json<PlaceBetReply>()
}
