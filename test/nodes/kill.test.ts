// Proves that killing node processes (SIGKILL, by PID) mid-stream loses nothing. An API node
// process is killed while a burst of bets is in flight, appended in groups (group commit); bettors retry every bet with the same id
// against its replacement, which restores the game from the trader's snapshot: every bet is
// stored exactly once. A settlement process is killed as the point's result arrives; its
// replacement, on the same SQLite file, settles every bet exactly once.

import type { ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import type { NatsConnection } from '@nats-io/transport-node'
import pino from 'pino'
import t from 'tap'
import { joinLedger } from '../../nodes/fabric/regions.ts'
import { marketIds } from '../../nodes/trader/trader.ts'
import type { PlaceBetReply } from '../../protocol/bets.ts'
import { depositSubject, placeSubject } from '../../protocol/subjects.ts'
import { spawnNodeProcess } from '../../scripts/node-process.ts'
import { STACK_REGION as REGION, startNodeStack } from '../helpers/node-stack.ts'
import { waitFor } from '../helpers/wait.ts'

const log = pino({ level: 'silent' })
const SHARDS = 4
const BETS = 400

interface NodeProcess {
  readonly child: ChildProcess
  output(): string
}

function startProcess(main: string, env: Record<string, string> & { FABRIC_NODE_ID: string }): NodeProcess {
  const child = spawnNodeProcess({
    main,
    nodeId: env.FABRIC_NODE_ID,
    region: REGION,
    shards: SHARDS,
    env: { LOG_LEVEL: 'info', ...env },
  })
  let output = ''
  child.stdout?.on('data', (chunk) => {
    output += chunk
  })
  child.stderr?.on('data', (chunk) => {
    output += chunk
  })
  return { child, output: () => output }
}

async function kill(node: NodeProcess): Promise<void> {
  if (node.child.exitCode !== null || node.child.signalCode !== null) return
  const exited = new Promise((resolve) => node.child.once('exit', resolve))
  node.child.kill('SIGKILL')
  await exited
}

async function request(nc: NatsConnection, subject: string, body: unknown): Promise<PlaceBetReply | null> {
  try {
    return (await nc.request(subject, JSON.stringify(body), { timeout: 2_000 })).json<PlaceBetReply>()
  } catch {
    return null
  }
}

t.test('SIGKILL an API node and a settlement node mid-stream', async (t) => {
  // The API and settlement nodes run as processes of their own, so the stack starts only the trader.
  const { cluster, trader, client, dir } = await startNodeStack(t, { apiNodes: [], snapshotIntervalMs: 200 })
  const processes: NodeProcess[] = []
  const audit = await joinLedger({ nc: await cluster.connect(), region: REGION, shards: SHARDS, log })
  /** The ledger messages that held dave's bets: fewer than the bets when they went in groups. */
  const betMessages = new Set<number>()
  audit.onEntry((_shard, seq, _result, entry) => {
    if (entry?.type === 'bet') betMessages.add(seq)
  })
  t.teardown(async () => {
    for (const node of processes) await kill(node)
    await audit.close()
  })
  const env = { FABRIC_NATS_SERVERS: cluster.servers.join(',') }
  const spawnApi = (id: string) => {
    const node = startProcess('nodes/api/main.ts', { ...env, FABRIC_NODE_ID: id })
    processes.push(node)
    return node
  }
  const spawnSettlement = (id: string) => {
    const node = startProcess('nodes/settlement/main.ts', {
      ...env,
      FABRIC_NODE_ID: id,
      SETTLEMENT_DATABASE: join(dir, 'settlement.db'),
    })
    processes.push(node)
    return node
  }
  const trade = trader.feed
  trade.emit({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  trade.emit({ type: 'point-start', point: 1, server: 'home' })

  const first = spawnApi('api-k1')
  await waitFor(
    'api-k1 answers',
    async () =>
      (
        await request(client, depositSubject('dave', SHARDS), {
          id: 'deposit-dave',
          userId: 'dave',
          amountCents: 1_000_000,
        })
      )?.ok === true,
    30_000,
  )

  const ids = marketIds(1)
  const bet = (i: number) => ({
    betId: `bet-dave-${String(i).padStart(4, '0')}`,
    userId: 'dave',
    gameId: 'match-1',
    marketId: ids.winner,
    selectionId: 'home',
    stakeCents: 100,
    odds: 1_001,
    policy: 'any',
  })
  const burst = Array.from({ length: BETS }, (_, i) => request(client, placeSubject('dave', SHARDS), bet(i)))
  // Bets go in groups (group commit), so count bets, not ledger messages.
  // Killed as soon as the first bets are stored: with group commit the node can answer the whole
  // burst within a few of the audit's folds.
  await waitFor('some bets reached the ledger', () => audit.foldFor('dave').totals().stakesCents > 0)
  await kill(first)
  const firstReplies = await Promise.all(burst)
  t.ok(
    firstReplies.some((r) => r === null),
    'the kill cut some requests off',
  )

  const second = spawnApi('api-k2')
  await waitFor(
    'api-k2 restored the game from the snapshot',
    () => second.output().includes('restored replicas from snapshots'),
    30_000,
  )
  const retries = await Promise.all(Array.from({ length: BETS }, (_, i) => waitForReply(client, bet(i))))
  t.same(
    [...new Set(retries.map((r) => (r.ok ? 'ok' : r.error.code)))],
    ['ok'],
    'every bet is placed once retried with its id',
  )
  await waitFor('the audit fold has every bet', () =>
    Array.from({ length: BETS }, (_, i) => audit.foldFor('dave').bet('dave', bet(i).betId)).every(Boolean),
  )
  t.equal(audit.foldFor('dave').totals().stakesCents, BETS * 100, 'each bet stored exactly once')
  t.ok(
    betMessages.size < BETS,
    `the bets went in groups: ${BETS} bets in ${betMessages.size} ledger messages`,
  )

  const settlement = spawnSettlement('settle-k1')
  await waitFor('settle-k1 is up', () => settlement.output().includes('settlement node running'), 30_000)
  trade.emit({ type: 'serve', point: 1, second: false })
  trade.emit({ type: 'point-end', point: 1, winner: 'home', ace: false })
  await kill(settlement)
  spawnSettlement('settle-k2')
  const settled = () =>
    Array.from({ length: BETS }, (_, i) => audit.foldFor('dave').bet('dave', bet(i).betId)).every(
      (b) => b?.status === 'settled',
    )
  await waitFor('every bet settled after the restart', settled, 30_000)
  const offered =
    trader.replicas.replica('match-1')?.game.markets.get(ids.winner)?.transitions[0]?.prices.home ?? 0
  t.equal(
    audit.foldFor('dave').totals().payoutsCents,
    BETS * Math.floor((100 * offered) / 1_000),
    'every winner paid exactly once',
  )
  t.ok(audit.foldFor('dave').invariantHolds(), 'the ledger sums')
})

/** Codes that tell a client to retry the same bet id later (docs/protocol.md). */
const TRANSIENT = new Set(['UNKNOWN_GAME', 'REPLICA_STALE', 'LEDGER_UNAVAILABLE', 'OVERLOADED'])

/** Retry a placement with the same id until a node answers it for good. */
async function waitForReply(nc: NatsConnection, body: Record<string, unknown>): Promise<PlaceBetReply> {
  const deadline = Date.now() + 30_000
  for (;;) {
    const reply = await request(nc, placeSubject(String(body.userId), SHARDS), body)
    if (reply !== null && (reply.ok || !TRANSIENT.has(reply.error.code))) return reply
    if (Date.now() > deadline) throw new Error(`no answer for ${String(body.betId)}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}
