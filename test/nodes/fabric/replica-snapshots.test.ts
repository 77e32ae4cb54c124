// Proves that a snapshot round writes again only the games the stream changed since this node's
// last snapshot of them, and that a restore still follows the stream from a sequence where nothing
// is missed: an unchanged game's older snapshot stands for the round's sequence, but only while
// the stored snapshot is the one the checkpoint names; another writer's older snapshot put in its
// place sends the restore back to that snapshot's own sequence.

import pino from 'pino'
import t from 'tap'
import { type Replica, yjsBackend } from '../../../crdt/index.ts'
import { createArchiveShelf } from '../../../nodes/fabric/archive.ts'
import { restoreSnapshots, writeSnapshots } from '../../../nodes/fabric/replica-snapshots.ts'
import type { SnapshotStore } from '../../../nodes/fabric/transport.ts'
import { createTestWriter, NEXT_POINT } from '../../helpers/game-writer.ts'

const log = pino({ level: 'silent' })

function memoryStore(): SnapshotStore & { puts: string[] } {
  const values = new Map<string, Uint8Array>()
  const puts: string[] = []
  return {
    puts,
    async get(key) {
      return values.get(key) ?? null
    },
    async put(key, value) {
      puts.push(key)
      values.set(key, typeof value === 'string' ? new TextEncoder().encode(value) : value)
    },
    async create(key, value) {
      if (values.has(key)) return false
      values.set(key, value)
      return true
    },
    async delete(key) {
      values.delete(key)
    },
    // Not used by snapshot rounds or restores.
    entry: async () => {
      throw new Error('not used')
    },
    update: async () => {
      throw new Error('not used')
    },
  }
}

const shelf = (snapshots: SnapshotStore) => createArchiveShelf({ snapshots, backend: yjsBackend, log })

t.test('unchanged games are not written again, and a restore misses nothing', async (t) => {
  const a = createTestWriter(yjsBackend, 'trader-1')
  const b = createTestWriter(yjsBackend, 'trader-1')
  a.write(NEXT_POINT)
  b.write(NEXT_POINT)
  const replicas = new Map<string, Replica>([
    ['match-a', a.replica],
    ['match-b', b.replica],
  ])
  /** The stream sequence of each game's last update. */
  const lastSeq = new Map([
    ['match-a', 5],
    ['match-b', 7],
  ])
  const store = memoryStore()
  const written = new Map<string, number>()
  const round = (seq: number) =>
    writeSnapshots({
      snapshots: store,
      archives: shelf(store),
      log,
      seq,
      replicas,
      written,
      changedSince: (gameId, since) => (lastSeq.get(gameId) ?? 0) > since,
    })
  const restore = () =>
    restoreSnapshots({ snapshots: store, archives: shelf(store), backend: yjsBackend, log, into: () => {} })

  await round(10)
  t.same(store.puts.sort(), ['checkpoint', 'game.match-a', 'game.match-b'], 'the first round writes both')
  t.equal(await restore(), 11, 'and a restore follows from the round on')

  store.puts.length = 0
  lastSeq.set('match-b', 12)
  await round(20)
  t.same(store.puts.sort(), ['checkpoint', 'game.match-b'], 'the next writes only the game that changed')
  t.equal(await restore(), 21, 'match-a’s snapshot of sequence 10 still stands for 20')

  // Another writer puts an older snapshot of match-a (taken at 8) in place of the one named.
  const other = memoryStore()
  const otherWritten = new Map<string, number>()
  await writeSnapshots({
    snapshots: other,
    archives: shelf(other),
    log,
    seq: 8,
    replicas: new Map([['match-a', a.replica]]),
    written: otherWritten,
    changedSince: () => true,
  })
  await store.put('game.match-a', (await other.get('game.match-a')) as Uint8Array)
  t.equal(await restore(), 9, 'a snapshot the checkpoint does not name counts from its own sequence')

  store.puts.length = 0
  await round(30)
  t.same(store.puts, ['checkpoint'], 'nothing changed: only the checkpoint')
  lastSeq.set('match-a', 31)
  await writeSnapshots({
    snapshots: store,
    archives: shelf(store),
    log,
    seq: 40,
    replicas,
    written,
    changedSince: (gameId, since) => (lastSeq.get(gameId) ?? 0) > since,
    keep: (gameId) => gameId === 'match-a',
  })
  t.equal(await restore(), 9, 'a changed game left out of a round keeps its older snapshot’s sequence')
})
