// Proves that a node restored from a snapshot does not decide again the updates the snapshot
// holds: it follows the stream from the lowest sequence its snapshots stand for, and read against
// the fences the snapshot restored, a takeover read again "fenced a writer already fenced", marked
// its writer as the loser of a fence race, and dropped every later update of that writer (the
// product simulator found a restarted API node missing a new trader's whole match this way).

import pino from 'pino'
import t from 'tap'
import { createHlc, fenceOf, yjsBackend } from '../../../crdt/index.ts'
import { ARCHIVE_HEADER, createArchiveShelf } from '../../../nodes/fabric/archive.ts'
import { createClockGuard } from '../../../nodes/fabric/clock-guard.ts'
import { createGameReplicas, GAMES_PER_NODE_MAX } from '../../../nodes/fabric/game-replicas.ts'
import type { StreamMessage } from '../../../nodes/fabric/stream-follower.ts'
import { authorHeaders, type UpdateAuthor } from '../../../nodes/fabric/update-author.ts'
import {
  type BeatWriter,
  createBeatWriter,
  encodeWriterBeat,
  type WriterBeat,
} from '../../../nodes/fabric/writer-beats.ts'
import { createTestWriter, NEXT_POINT, transition } from '../../helpers/game-writer.ts'

/** A snapshot bucket with nothing in it: no game here is archived. */
const emptyStore = {
  get: async () => null,
  put: async () => {},
  create: async () => true,
  delete: async () => {},
  entry: async () => null,
  update: async () => 1,
}

const SUBJECT = 'fabric.eu.game.match-1'

/** A node's replicas, with nothing archived; `ownWriter` when the node is a writer. */
function apiNode(ownWriter?: string) {
  return createGameReplicas({
    ...(ownWriter ? { ownWriter } : {}),
    backend: yjsBackend,
    clock: createClockGuard({ hlc: createHlc({ node: 'api-1' }), now: Date.now }),
    log: pino({ level: 'silent' }),
    archives: createArchiveShelf({
      snapshots: emptyStore,
      backend: yjsBackend,
      log: pino({ level: 'silent' }),
    }),
  })
}

function message(seq: number, data: Uint8Array, author: UpdateAuthor): StreamMessage {
  const headers = authorHeaders(author)
  return {
    subject: SUBJECT,
    seq,
    data,
    headers: { get: (name: string) => headers[name] ?? '' },
    json: () => JSON.parse(new TextDecoder().decode(data)),
    string: () => new TextDecoder().decode(data),
  }
}

t.test('updates a restored snapshot holds are not decided again', async (t) => {
  const one = createTestWriter(yjsBackend, 'trader-1', 1_000)
  const two = createTestWriter(yjsBackend, 'trader-2', 1_000)
  const genesis = one.write(
    { kind: 'game', gameId: 'match-1', writers: ['trader-1', 'trader-2'] },
    NEXT_POINT,
  )
  two.replica.apply(genesis)
  const takeover = two.at(2_000).write({ kind: 'fence', writer: 'trader-1' })
  const fenceStamp = two.lastStamp()
  const later = two.at(3_000).write({ kind: 'clock', period: 1, running: true, clockMs: 0 })
  const log = [
    message(1, genesis, { writer: 'trader-1' }),
    message(2, takeover, { writer: 'trader-2', fences: [{ target: 'trader-1', stamp: fenceStamp }] }),
    message(3, later, { writer: 'trader-2' }),
  ]

  // The snapshot: a replica that read the log up to sequence 2.
  const snapshot = yjsBackend.create()
  snapshot.apply(genesis)
  snapshot.apply(takeover)

  const fromStart = apiNode()
  for (const each of log) fromStart.applyUpdate(each)
  const restored = apiNode()
  restored.restore('match-1', yjsBackend.restore(snapshot.snapshot()), 2)
  // It follows from sequence 1 (another game's snapshot was older, say): all three come again.
  for (const each of log) restored.applyUpdate(each)

  t.equal(fenceOf(restored.replicas.get('match-1')!.game, 'trader-1') !== null, true, 'trader-1 is fenced')
  t.equal(restored.fencedBy('match-1', 'trader-1'), 'trader-2', 'by trader-2, by the log’s account')
  t.equal(restored.droppedUpdates(), 0, 'nothing it read again was dropped')
  t.equal(
    restored.replicas.get('match-1')!.stateHash(),
    fromStart.replicas.get('match-1')!.stateHash(),
    'it holds what a node that read the log from the start holds, trader-2’s later update included',
  )
})

t.test('an archive marker drops the game for good and frees its place', async (t) => {
  const node = apiNode()
  const archived: string[] = []
  node.onArchive((gameId, seq, subject, replica) => {
    archived.push(`${gameId}@${seq}`)
    t.equal(subject, SUBJECT)
    t.ok(replica, 'the listener gets the replica that left')
  })
  const trader = createTestWriter(yjsBackend, 'trader-1', 1_000)
  const genesis = trader.write({ kind: 'game', gameId: 'match-1', writers: ['trader-1'] }, NEXT_POINT)
  node.applyUpdate(message(1, genesis, { writer: 'trader-1' }))
  for (let i = 1; i < GAMES_PER_NODE_MAX; i++) node.replicaFor(`other-${i}`)
  t.throws(() => node.replicaFor('one-more'), RangeError, 'a node at its game limit takes no new game')

  const marker = message(2, new Uint8Array(0), { writer: 'trader-1' })
  const withHeader = {
    ...marker,
    headers: { get: (name: string) => (name === ARCHIVE_HEADER ? '1' : (marker.headers?.get(name) ?? '')) },
  }
  node.applyUpdate(withHeader)
  t.same(archived, ['match-1@2'], 'the marker archives the game where it is read')
  t.notOk(node.replicas.has('match-1'), 'its replica is gone')
  t.doesNotThrow(() => node.replicaFor('one-more'), 'and its place is free')
  t.throws(() => node.replicaFor('match-1'), /archived/, 'an archived game is not created again')
  node.applyUpdate(message(3, trader.write(transition('open')), { writer: 'trader-1' }))
  t.notOk(node.replicas.has('match-1'), 'nor revived by a later update')
  node.applyUpdate({ ...withHeader, seq: 4 })
  t.same(archived, ['match-1@2'], 'a marker sent again changes nothing')
})

/** The bytes of the writer's next beat: a heartbeat of `match-1` from `trader`. */
function beatBytes(writer: BeatWriter, trader: ReturnType<typeof createTestWriter>): Uint8Array {
  writer.offer('match-1', trader.heartbeat())
  let sent: WriterBeat | undefined
  writer.flush((beat) => {
    sent = beat
  })
  if (sent === undefined) throw new Error('the writer sent no beat')
  return new TextEncoder().encode(encodeWriterBeat(sent))
}

t.test('a beat heard through both of its writer connections is applied once', async (t) => {
  const node = apiNode()
  const trader = createTestWriter(yjsBackend, 'trader-1', 1_000)
  node.applyUpdate(
    message(1, trader.write({ kind: 'game', gameId: 'match-1', writers: ['trader-1'] }, NEXT_POINT), {
      writer: 'trader-1',
    }),
  )
  const heard: string[] = []
  node.onChange(({ gameId, source }) => heard.push(`${gameId} ${source}`))
  const writer = createBeatWriter('trader-1')
  const nextBeat = () => beatBytes(writer, trader)
  const first = nextBeat()
  node.applyBeat(first)
  node.applyBeat(Uint8Array.from(first))
  t.same(
    heard,
    ['match-1 heartbeat'],
    'the copy through the second connection changes nothing and is not told',
  )
  node.applyBeat(nextBeat())
  t.same(heard, ['match-1 heartbeat', 'match-1 heartbeat'], 'the next beat is heard')
  const work = node.beatWork()
  t.match(
    work,
    { beats: 2, heartbeats: 2 },
    'the work counts the two beats read and their heartbeats, not the copy',
  )
  t.ok(work.seconds > 0, 'and the time they took')
})

t.test('a beat counts a heartbeat for each game the node holds, and none for the others', async (t) => {
  const node = apiNode()
  const trader = createTestWriter(yjsBackend, 'trader-1', 1_000)
  for (const [seq, gameId] of [
    [1, 'match-1'],
    [2, 'match-2'],
  ] as const)
    node.applyUpdate({
      ...message(seq, trader.write({ kind: 'game', gameId, writers: ['trader-1'] }, NEXT_POINT), {
        writer: 'trader-1',
      }),
      subject: `fabric.eu.game.${gameId}`,
    })
  const writer = createBeatWriter('trader-1')
  const heartbeat = trader.heartbeat()
  for (const gameId of ['match-1', 'match-2', 'match-3']) writer.offer(gameId, heartbeat)
  let sent: WriterBeat | undefined
  writer.flush((beat) => {
    sent = beat
  })
  node.applyBeat(new TextEncoder().encode(encodeWriterBeat(sent as WriterBeat)))
  t.match(node.beatWork(), { beats: 1, heartbeats: 2 }, 'match-3 is not held here')
})

t.test("a writer's own beats, heard back, are passed over", async (t) => {
  const trader = createTestWriter(yjsBackend, 'trader-1', 1_000)
  const genesis = trader.write({ kind: 'game', gameId: 'match-1', writers: ['trader-1'] }, NEXT_POINT)
  const beat = beatBytes(createBeatWriter('trader-1'), trader)
  const heardBy = (node: ReturnType<typeof apiNode>) => {
    node.applyUpdate(message(1, genesis, { writer: 'trader-1' }))
    const heard: string[] = []
    node.onChange(({ source }) => heard.push(source))
    node.applyBeat(beat)
    return heard
  }
  t.same(heardBy(apiNode()), ['heartbeat'], "another node's replica takes the beat")
  t.same(heardBy(apiNode('trader-1')), [], 'the writer itself passes over it')
  t.same(heardBy(apiNode('trader-2')), ['heartbeat'], 'another writer takes it')
})
