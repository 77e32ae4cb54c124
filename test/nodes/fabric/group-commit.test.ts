// Proves the group commit's rules with appends the test resolves by hand: the first item after an
// idle moment goes at once and alone; items arriving while the shard's append is in flight go next
// as one message, cut by count and by bytes; each learns its message's sequence and its place; a
// failed append fails every item it held and the next group still goes; shards do not wait for
// each other; and a full queue refuses at once.

import t from 'tap'
import { createGroupCommit, GroupCommitFullError, type Placed } from '../../../nodes/fabric/group-commit.ts'

interface Item {
  readonly shard: number
  readonly name: string
  readonly bytes?: number
}

function setup(limits: { countMax?: number; bytesMax?: number; queuedMax?: number } = {}) {
  const sent: { shard: number; names: string[]; settle: (seq: number | Error) => void }[] = []
  const track = (shard: number, names: string[]) =>
    new Promise<number>((resolve, reject) => {
      sent.push({ shard, names, settle: (seq) => (seq instanceof Error ? reject(seq) : resolve(seq)) })
    })
  const commit = createGroupCommit<Item>({
    shardOf: (item) => item.shard,
    bytesOf: (item) => item.bytes ?? 10,
    countMax: limits.countMax ?? 100,
    bytesMax: limits.bytesMax ?? 1_000,
    queuedMax: limits.queuedMax ?? 100,
    appendOne: (item) => track(item.shard, [item.name]),
    appendMany: (shard, items) =>
      track(
        shard,
        items.map((item) => item.name),
      ),
  })
  return { commit, sent }
}

const tick = () => new Promise((resolve) => setImmediate(resolve))

t.test('alone when idle, then together, each with its place', async (t) => {
  const { commit, sent } = setup()
  const first = commit.append({ shard: 0, name: 'a' })
  t.same(
    sent.map((s) => s.names),
    [['a']],
    'the first goes at once, alone',
  )
  const waiting = ['b', 'c', 'd'].map((name) => commit.append({ shard: 0, name }))
  const other = commit.append({ shard: 1, name: 'x' })
  t.same(
    sent.map((s) => s.names),
    [['a'], ['x']],
    'the others wait for the shard; another shard does not',
  )
  t.equal(commit.queued(), 3)
  sent[0]?.settle(7)
  t.same(await first, { seq: 7, index: 0 })
  await tick()
  t.same(sent[2]?.names, ['b', 'c', 'd'], 'the waiting ones go as one message')
  sent[2]?.settle(9)
  const placed: Placed[] = await Promise.all(waiting)
  t.same(placed, [
    { seq: 9, index: 0 },
    { seq: 9, index: 1 },
    { seq: 9, index: 2 },
  ])
  sent[1]?.settle(8)
  t.same(await other, { seq: 8, index: 0 })
  t.same(commit.stats(), { messages: 3, items: 5 })
})

t.test('groups are cut by count and by bytes', async (t) => {
  const { commit, sent } = setup({ countMax: 2, bytesMax: 25 })
  void commit.append({ shard: 0, name: 'a' })
  for (const name of ['b', 'c', 'd']) void commit.append({ shard: 0, name })
  void commit.append({ shard: 0, name: 'big', bytes: 20 })
  sent[0]?.settle(1)
  await tick()
  t.same(sent[1]?.names, ['b', 'c'], 'two at most')
  sent[1]?.settle(2)
  await tick()
  t.same(sent[2]?.names, ['d'], 'd and big would pass the bytes')
  sent[2]?.settle(3)
  await tick()
  t.same(sent[3]?.names, ['big'], 'an item larger than the rest still goes, alone')
})

t.test('a failed append fails its whole group, and the next group goes', async (t) => {
  const { commit, sent } = setup()
  const first = commit.append({ shard: 0, name: 'a' })
  const grouped = ['b', 'c'].map((name) => commit.append({ shard: 0, name }))
  sent[0]?.settle(1)
  await first
  await tick()
  const later = commit.append({ shard: 0, name: 'd' })
  sent[1]?.settle(new Error('no ack'))
  for (const each of grouped) await t.rejects(each, /no ack/)
  await tick()
  t.same(sent[2]?.names, ['d'], 'the next one still goes')
  sent[2]?.settle(4)
  t.same(await later, { seq: 4, index: 0 })
})

t.test('a full queue refuses at once', async (t) => {
  const { commit } = setup({ queuedMax: 2 })
  void commit.append({ shard: 0, name: 'a' })
  void commit.append({ shard: 0, name: 'b' })
  void commit.append({ shard: 0, name: 'c' })
  await t.rejects(commit.append({ shard: 0, name: 'd' }), GroupCommitFullError)
})
