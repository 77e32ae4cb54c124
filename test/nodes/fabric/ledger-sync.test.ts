// Proves, on a real 3-server cluster, that a listener registered on a ledger sync as soon as it is
// created hears every entry already in the ledger, on every shard. A settlement node registers its
// settler that way, and learns of the bets it must settle from these entries alone: with one
// ledger stream nothing was folded before the caller's turn, but each shard stream's follower
// delivers while the next shard's opens, and a settlement node restarted on a ledger holding bets
// on several shards never settled those of the shards opened first.

import pino from 'pino'
import t from 'tap'
import { requestStepDown } from '../../../nodes/fabric/leader-spread.ts'
import { createLedgerSync } from '../../../nodes/fabric/ledger-sync.ts'
import { natsFabricTransport } from '../../../nodes/fabric/regions.ts'
import { names } from '../../../nodes/fabric/streams.ts'
import { shardOf } from '../../../protocol/shards.ts'
import { startNatsCluster } from '../../../scripts/nats-cluster.ts'
import { waitFor } from '../../helpers/wait.ts'

const REGION = 'eu'
const SHARDS = 4
const ENTRIES = 40
const STEP_DOWNS = 2
const STEP_DOWN_EVERY_MS = 1_500
const log = pino({ level: 'silent' })

t.test('a listener registered at creation hears every entry of every shard', async (t) => {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const open = async () =>
    createLedgerSync({
      transport: await natsFabricTransport(await cluster.connect(), REGION, undefined, SHARDS),
      region: REGION,
      shards: SHARDS,
      log,
    })
  const writer = await open()
  t.teardown(() => writer.close())
  const users = Array.from({ length: ENTRIES }, (_, i) => `user-${i}`)
  for (const userId of users)
    await writer.append({ type: 'deposit', id: `deposit-${userId}`, userId, amountCents: 100 })
  t.same(
    new Set(users.map((userId) => shardOf(userId, SHARDS))).size,
    SHARDS,
    'the entries are on every shard',
  )

  const reader = await open()
  const heard = new Map<number, number>()
  reader.onEntry((shard) => heard.set(shard, (heard.get(shard) ?? 0) + 1))
  t.teardown(() => reader.close())
  await waitFor('the reader folded every shard', () =>
    writer.served.every((shard) => reader.lastSeq(shard) === writer.lastSeq(shard)),
  )
  const perShard = (shard: number) => users.filter((userId) => shardOf(userId, SHARDS) === shard).length
  t.same(
    [...heard.entries()].sort(([a], [b]) => a - b),
    writer.served.map((shard) => [shard, perShard(shard)]),
    'the listener heard each entry once, on every shard',
  )
})

// An append that finds its shard stream between leaders (here, a leader stepping down) is tried
// again, same id, within its deadline, instead of failing with the client's "no responders"
// (reported as "jetstream is not enabled"): without the retry, two step-downs failed thousands of
// appends in a row.
t.test('appends go on through stream leader step-downs', async (t) => {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const nc = await cluster.connect()
  t.teardown(() => nc.close())
  const ledger = await createLedgerSync({
    transport: await natsFabricTransport(nc, REGION, undefined, 1),
    region: REGION,
    shards: 1,
    log,
  })
  t.teardown(() => ledger.close())
  const failures: string[] = []
  let appended = 0
  let stopped = false
  const appending = (async () => {
    for (let i = 0; !stopped; i++)
      await ledger.append({ type: 'deposit', id: `deposit-${i}`, userId: 'steady', amountCents: 1 }).then(
        () => appended++,
        (error: Error) => failures.push(error.message),
      )
  })()
  for (let stepDowns = 0; stepDowns < STEP_DOWNS; stepDowns++) {
    await new Promise((resolve) => setTimeout(resolve, STEP_DOWN_EVERY_MS))
    await requestStepDown(nc, names.ledgerStream(REGION, 0))
  }
  await new Promise((resolve) => setTimeout(resolve, STEP_DOWN_EVERY_MS))
  stopped = true
  await appending
  t.ok(appended > 0, `${appended} appends went through`)
  t.same(
    failures.filter((message) => /no responders|not enabled/i.test(message)),
    [],
    'none failed for want of a leader',
  )
})
