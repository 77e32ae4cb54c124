// Proves ledger checkpoints (nodes/fabric/ledger-checkpoints.ts): stored in chunks and read back
// whole, a replaced one's chunks deleted, anything damaged refused; and, on a real 3-server cluster,
// that a node started after a checkpoint restores each shard from it, folds only what came after,
// ends with the very fold of a node that folded everything, and tells its listeners of the bets
// still open at the checkpoint; and that a checkpoint not matching the stream at its sequence is
// refused for a fold from the first entry.

import pino from 'pino'
import t, { type Test } from 'tap'
import {
  CHECKPOINT_CHUNK_BYTES,
  decodeCheckpoint,
  encodeCheckpoint,
  getCheckpoint,
  messageDigest,
  putCheckpoint,
} from '../../../nodes/fabric/ledger-checkpoints.ts'
import {
  createLedgerSync,
  type LedgerSync,
  type LedgerSyncOptions,
} from '../../../nodes/fabric/ledger-sync.ts'
import { natsFabricTransport } from '../../../nodes/fabric/regions.ts'
import { names } from '../../../nodes/fabric/streams.ts'
import type { SnapshotStore } from '../../../nodes/fabric/transport.ts'
import { settlementIdOf } from '../../../protocol/ids.ts'
import { shardOf } from '../../../protocol/shards.ts'
import { type NatsCluster, startNatsCluster } from '../../../scripts/nats-cluster.ts'
import { betEntry } from '../../helpers/ledger-entries.ts'
import { waitFor } from '../../helpers/wait.ts'

const REGION = 'eu'
const SHARDS = 2
const log = pino({ level: 'silent' })

/** A snapshot store in a map, as the bucket keeps values, with a revision per write. */
function mapStore(): SnapshotStore & { readonly values: Map<string, Uint8Array> } {
  const values = new Map<string, Uint8Array>()
  const revisions = new Map<string, number>()
  let writes = 0
  const bytes = (value: Uint8Array | string) =>
    typeof value === 'string' ? new TextEncoder().encode(value) : new Uint8Array(value)
  const write = (key: string, value: Uint8Array | string) => {
    values.set(key, bytes(value))
    revisions.set(key, ++writes)
    return writes
  }
  return {
    values,
    get: async (key) => values.get(key) ?? null,
    async put(key, value) {
      write(key, value)
    },
    async create(key, value) {
      if (values.has(key)) return false
      write(key, value)
      return true
    },
    async delete(key) {
      values.delete(key)
      revisions.set(key, ++writes)
    },
    async entry(key) {
      const value = values.get(key)
      return value === undefined ? null : { value, revision: revisions.get(key) ?? 0 }
    },
    async update(key, value, revision) {
      const now = values.has(key) ? (revisions.get(key) ?? 0) : 0
      return now === revision ? write(key, value) : null
    },
  }
}

/** A ledger sync of the region over its own connection, closed with the test. */
async function openLedger(
  t: Test,
  cluster: NatsCluster,
  shards: number,
  extra: Partial<LedgerSyncOptions>,
): Promise<LedgerSync> {
  const ledger = await createLedgerSync({
    transport: await natsFabricTransport(await cluster.connect(), REGION, undefined, shards),
    region: REGION,
    shards,
    log,
    ...extra,
  })
  t.teardown(() => ledger.close())
  return ledger
}

t.test('a checkpoint is stored in chunks and read back whole; damage is refused', async (t) => {
  const store = mapStore()
  t.equal(await getCheckpoint(store, 3), null, 'none yet')
  const big = new Uint8Array(CHECKPOINT_CHUNK_BYTES * 2 + 17).map((_, i) => (i * 7919) % 251)
  await putCheckpoint(store, 3, 10, big)
  t.same(await getCheckpoint(store, 3), Buffer.from(big), 'three chunks, read back whole')
  t.equal(store.values.size, 4, 'three chunks and the head')
  t.same(await putCheckpoint(store, 3, 20, new Uint8Array([1, 2, 3])), { written: true, previousSeq: 10 })
  t.same(await getCheckpoint(store, 3), Buffer.from([1, 2, 3]), 'a newer one replaces it')
  t.equal(store.values.size, 2, 'the replaced chunks are deleted')
  t.same(
    await putCheckpoint(store, 3, 15, new Uint8Array([4])),
    { written: false, previousSeq: 20 },
    'an older checkpoint does not replace a newer one',
  )
  t.same(await getCheckpoint(store, 3), Buffer.from([1, 2, 3]))
  t.equal(await getCheckpoint(store, 4), null, 'another shard has none')
  const chunk = [...store.values.keys()].find((key) => key !== 'ledger.3') as string
  store.values.set(chunk, new Uint8Array([9, 9, 9]))
  t.equal(await getCheckpoint(store, 3), null, 'a chunk that does not match the head’s digest')
  store.values.set('ledger.3', new TextEncoder().encode('{"id":"nope"}'))
  t.equal(await getCheckpoint(store, 3), null, 'a head that is not one')
})

t.test('a checkpoint decodes only as what it says it is', async (t) => {
  const snapshot = { lastSeq: 5 } as never
  const digest = messageDigest(new Uint8Array([1]))
  const data = await encodeCheckpoint({ shard: 1, digest, snapshot })
  t.match(decodeCheckpoint(data, 1), { shard: 1, seq: 5, digest })
  t.throws(() => decodeCheckpoint(data, 0), /shard 1 under shard 0/)
  t.throws(() => decodeCheckpoint(new Uint8Array([1, 2, 3]), 1), /not gzipped JSON/)
  const skewed = await encodeCheckpoint({ shard: 1, digest: 'x', snapshot })
  t.throws(() => decodeCheckpoint(skewed, 1), /digest/)
})

t.test('a node started after a checkpoint restores from it and ends with the same folds', async (t) => {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const open = (onRead?: (shard: number) => void) =>
    openLedger(t, cluster, SHARDS, { checkpoints: true, ...(onRead ? { onRead } : {}) })
  const writer = await open()
  const users = Array.from({ length: 8 }, (_, i) => `user-${i}`)
  for (const userId of users)
    await writer.append({ type: 'deposit', id: `d-${userId}`, userId, amountCents: 1_000 })
  // Per user: one bet settled, one left open; then a checkpoint of each shard.
  for (const userId of users) {
    await writer.append(betEntry(`settled-${userId}`, userId, 100))
    await writer.append(betEntry(`open-${userId}`, userId, 200))
    await writer.appendSettlements(shardOf(userId, SHARDS), [
      {
        type: 'settlement',
        id: settlementIdOf(`settled-${userId}`),
        betId: `settled-${userId}`,
        userId,
        outcome: 'lost',
      },
    ])
  }
  await waitFor('the writer folded it all', () =>
    users.every((userId) => writer.foldFor(userId).bet(userId, `settled-${userId}`)?.status === 'settled'),
  )
  const atCheckpoint = new Map<number, number>()
  for (const shard of writer.served) atCheckpoint.set(shard, (await writer.writeCheckpoint(shard)) as number)
  t.ok(
    [...atCheckpoint.values()].every((seq) => seq > 0),
    'each shard checkpointed',
  )
  t.equal(await writer.writeCheckpoint(0), null, 'nothing new: no second checkpoint')
  // After the checkpoints: one more deposit per user.
  for (const userId of users)
    await writer.append({ type: 'deposit', id: `d2-${userId}`, userId, amountCents: 5 })

  const read = new Map<number, number>()
  const restored = await open((shard) => read.set(shard, (read.get(shard) ?? 0) + 1))
  const heard: string[] = []
  restored.onEntry((_shard, _seq, result, entry) => {
    if (entry?.type === 'bet' && result.status === 'applied') heard.push(entry.id)
  })
  await waitFor('the restored node caught up', () =>
    writer.served.every((shard) => restored.lastSeq(shard) === writer.lastSeq(shard)),
  )
  for (const shard of writer.served) {
    t.equal(
      restored.restoredFrom.get(shard),
      atCheckpoint.get(shard),
      `shard ${shard} restored from its checkpoint`,
    )
    t.equal(restored.fold(shard).stateHash(), writer.fold(shard).stateHash(), `shard ${shard}: the same fold`)
    t.equal(
      read.get(shard),
      users.filter((userId) => shardOf(userId, SHARDS) === shard).length,
      `shard ${shard}: it read only the deposits after the checkpoint`,
    )
  }
  t.same(heard.sort(), users.map((userId) => `open-${userId}`).sort(), 'its listener heard of the open bets')

  // A node that finds a shard's fold is not the stream's deletes that shard's checkpoint before it
  // exits to fold again, so that nobody starts from what it may have got wrong.
  restored.markDiverged(0, 'found wrong, in this test')
  t.equal(await restored.dropDivergedCheckpoints(), 1)
  const store = (await natsFabricTransport(await cluster.connect(), REGION, undefined, SHARDS)).snapshots
  t.equal(await getCheckpoint(store, 0), null, 'the diverged shard’s checkpoint is gone')
  t.not(await getCheckpoint(store, 1), null, 'the other shard’s stays')
})

t.test('a checkpoint that does not match the stream at its sequence is refused', async (t) => {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const transport = await natsFabricTransport(await cluster.connect(), REGION, undefined, 1)
  const open = (onRead?: () => void) =>
    openLedger(t, cluster, 1, { checkpoints: true, ...(onRead ? { onRead } : {}) })
  const writer = await open()
  for (let i = 0; i < 5; i++)
    await writer.append({ type: 'deposit', id: `d-${i}`, userId: `u${i}`, amountCents: 10 })
  await waitFor('folded', () => writer.lastSeq(0) === 5)
  // A checkpoint as if folded from another copy of the log: its last message is not the stream's.
  const forged = await encodeCheckpoint({
    shard: 0,
    digest: messageDigest(new TextEncoder().encode('another message')),
    snapshot: writer.fold(0).toJSON(),
  })
  await putCheckpoint(transport.snapshots, 0, 5, forged)
  let read = 0
  const restarted = await open(() => read++)
  await waitFor('caught up', () => restarted.lastSeq(0) === 5)
  t.equal(restarted.restoredFrom.get(0), 0, 'not restored from it')
  t.equal(read, 5, 'every entry folded from the first')
  t.equal(restarted.fold(0).stateHash(), writer.fold(0).stateHash())
})

t.test('the writer purges below its own replaced checkpoint, and a node left behind rebuilds', async (t) => {
  // Five deposits, a checkpoint at 5, five more, a checkpoint at 10: the second replaces the
  // writer's own first, so the stream loses what came before 5 and keeps one round behind the
  // newest checkpoint. A node starting after it restores at 10; a node that would fold from the
  // first entry finds 1-4 gone and says its fold is not the stream's (then exits to rebuild).
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const stream = names.ledgerStream(REGION, 0)
  const open = (checkpoints: boolean, purge = false) => openLedger(t, cluster, 1, { checkpoints, purge })
  const transport = await natsFabricTransport(await cluster.connect(), REGION, undefined, 1)
  const writer = await open(true, true)
  const deposit = (i: number) =>
    writer.append({ type: 'deposit', id: `d-${i}`, userId: `u${i % 3}`, amountCents: 10 })
  for (let i = 1; i <= 5; i++) await deposit(i)
  await waitFor('folded to 5', () => writer.lastSeq(0) === 5)
  t.equal(await writer.writeCheckpoint(0), 5)
  t.not(await transport.messageAt(stream, 1), null, 'nothing purged by the first checkpoint')
  for (let i = 6; i <= 10; i++) await deposit(i)
  await waitFor('folded to 10', () => writer.lastSeq(0) === 10)
  t.equal(await writer.writeCheckpoint(0), 10)
  for (const seq of [1, 4]) t.equal(await transport.messageAt(stream, seq), null, `${seq} purged`)
  t.not(await transport.messageAt(stream, 5), null, 'kept from the replaced checkpoint on')

  const restored = await open(true)
  t.equal(restored.restoredFrom.get(0), 10)
  t.equal(restored.fold(0).stateHash(), writer.fold(0).stateHash(), 'the same fold')
  t.equal(restored.diverged(), null)
  // Once the stream is purged below it, the checkpoint is the only start there is: a diverged node
  // keeps it (and starts again from it).
  restored.markDiverged(0, 'found wrong, in this test')
  t.equal(await restored.dropDivergedCheckpoints(), 0, 'not deleted')
  t.not(await getCheckpoint(transport.snapshots, 0), null, 'still there')

  const behind = await open(false)
  await waitFor('the node folding from 1 finds the gap', () => behind.diverged() !== null)
  t.match(behind.diverged(), /delivered 5 after 0/)
  t.equal(behind.fold(0).lastSeq(), 0, 'and folds nothing past it')
})
