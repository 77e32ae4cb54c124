// Proves that one beat per writer process stands for every game's heartbeat, and that a receiver
// never promises a stamp on a version the writer no longer had: beats lost, repeated and reordered,
// games changing, withdrawn and added, and the writer restarted (a new life), checked against what
// the writer really held at each beat's stamp. Also: a receiver holding the base finalizes every
// game from each beat, one that missed it only what a beat lists, and malformed beats are refused.

import t from 'tap'
import { encodeStamp, type StampKey } from '../../../crdt/index.ts'
import { createPrng } from '../../../nodes/fabric/prng.ts'
import {
  BEAT_FULL_EVERY,
  type BeatWriter,
  createBeatReader,
  createBeatWriter,
  createRepeatFilter,
  encodeWriterBeat,
  parseWriterBeat,
  WRITER_GAMES_MAX,
  type WriterBeat,
} from '../../../nodes/fabric/writer-beats.ts'

const WRITER = 'trader-1'
const stampAt = (wall: number): StampKey => encodeStamp({ wall, logical: 0, node: WRITER })
const bytes = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))
/** The round's beat, or null when there was none. */
function flushed(writer: BeatWriter): WriterBeat | null {
  let sent: WriterBeat | null = null
  writer.flush((beat) => {
    sent = beat
  })
  return sent
}

t.test('a receiver with the base hears every game from each beat; one without, what it lists', async (t) => {
  const writer = createBeatWriter(WRITER)
  const versions: Record<string, string> = { g1: 'a1', g2: 'b1', g3: 'c1' }
  const round = (wall: number, games = Object.keys(versions)) => {
    for (const gameId of games)
      writer.offer(gameId, { writer: WRITER, stamp: stampAt(wall), version: versions[gameId] as string })
    return flushed(writer) as WriterBeat
  }
  const full = round(1_000)
  t.equal(full.base, full.n, 'the first beat is full')
  t.same(full.games, versions, 'and lists every game')
  versions.g2 = 'b2'
  const delta = round(1_020, ['g1', 'g2'])
  t.same(delta.games, { g2: 'b2', g3: null }, 'a later one lists what changed, and withdraws g3')

  const holding = createBeatReader()
  holding.read(full)
  const heard = holding.read(delta)
  t.same(
    heard.map(({ gameId, heartbeat }) => [gameId, heartbeat.version, heartbeat.stamp]),
    [
      ['g1', 'a1', stampAt(1_020)],
      ['g2', 'b2', stampAt(1_020)],
    ],
    'with the base: g1 unchanged, g2 as listed, g3 withdrawn',
  )
  const missed = createBeatReader()
  t.same(
    missed.read(delta).map(({ gameId }) => gameId),
    ['g2'],
    'without the base: only what the beat lists',
  )
  t.equal(flushed(writer), null, 'a round with nothing offered sends no beat')
})

t.test('lost, repeated and reordered beats never promise a stamp on a stale version', async (t) => {
  for (let seed = 1; seed <= 40; seed++) {
    const prng = createPrng(seed)
    const reader = createBeatReader()
    /** What the writer held at each beat's stamp, by game: the truth to check the reader against. */
    const truth = new Map<StampKey, Map<string, string>>()
    const inFlight: WriterBeat[] = []
    const heard: { gameId: string; stamp: StampKey; version: string }[] = []
    let wall = 1_000
    for (let life = 0; life < 2; life++) {
      const writer = createBeatWriter(WRITER)
      const versions = new Map<string, number>()
      for (let round = 0; round < 120; round++) {
        wall += 20
        for (let g = 0; g < 6; g++)
          if (prng.chance(0.15)) versions.set(`g${g}`, (versions.get(`g${g}`) ?? 0) + 1)
        const stamp = stampAt(wall)
        const held = new Map<string, string>()
        for (const [gameId, version] of versions) {
          if (prng.chance(0.1)) continue // not promised this round (withdrawn)
          held.set(gameId, `${life}:${version}`)
          writer.offer(gameId, { writer: WRITER, stamp, version: `${life}:${version}` })
        }
        truth.set(stamp, held)
        const beat = flushed(writer)
        if (beat !== null && !prng.chance(0.2)) inFlight.push(beat)
        if (beat !== null && prng.chance(0.1)) inFlight.push(beat) // repeated
        // Deliver some of what is in flight, in any order.
        while (inFlight.length > 0 && prng.chance(0.6)) {
          const [next] = inFlight.splice(prng.int(0, inFlight.length - 1), 1)
          for (const { gameId, heartbeat } of reader.read(next as WriterBeat))
            heard.push({ gameId, stamp: heartbeat.stamp, version: heartbeat.version })
        }
      }
    }
    const stale = heard.filter(({ gameId, stamp, version }) => truth.get(stamp)?.get(gameId) !== version)
    t.same(stale.slice(0, 3), [], `seed ${seed}: ${heard.length} heartbeats, each on the version held then`)
    if (stale.length > 0) t.comment(`replay: seed ${seed} of this test`)
  }
})

t.test('a receiver in step with the writer hears every promised game in every beat', async (t) => {
  const writer = createBeatWriter(WRITER)
  const reader = createBeatReader()
  let complete = 0
  for (let round = 0; round < 3 * BEAT_FULL_EVERY; round++) {
    const stamp = stampAt(2_000 + round)
    for (let g = 0; g < 4; g++) writer.offer(`g${g}`, { writer: WRITER, stamp, version: `v${round >> 3}` })
    if (reader.read(flushed(writer) as WriterBeat).length === 4) complete++
  }
  t.equal(complete, 3 * BEAT_FULL_EVERY, 'all four games in each of them')
})

t.test('malformed and oversized beats are refused', async (t) => {
  const good = {
    writer: WRITER,
    life: '0123456789abcdef',
    n: 3,
    base: 0,
    stamp: stampAt(5),
    games: { g1: 'v' },
  }
  t.ok(parseWriterBeat(bytes(good)), 'a well-formed beat parses')
  const bad: [string, unknown][] = [
    ['not JSON', '{'],
    ['another writer’s stamp', { ...good, stamp: encodeStamp({ wall: 5, logical: 0, node: 'other' }) }],
    ['a base after the beat', { ...good, base: 4 }],
    ['a negative number', { ...good, n: -1 }],
    ['a malformed life', { ...good, life: 'LIFE' }],
    ['a bad game id', { ...good, games: { 'a b': 'v' } }],
    ['a version that is not a string', { ...good, games: { g1: 7 } }],
    ['games as a list', { ...good, games: ['g1'] }],
    [
      'too many games',
      {
        ...good,
        games: Object.fromEntries(Array.from({ length: WRITER_GAMES_MAX + 1 }, (_, i) => [`g${i}`, 'v'])),
      },
    ],
  ]
  for (const [what, value] of bad)
    t.equal(
      parseWriterBeat(typeof value === 'string' ? new TextEncoder().encode(value) : bytes(value)),
      null,
      what,
    )
  const huge = { ...good, games: { g1: 'x'.repeat(4_000) } }
  const many = Object.fromEntries(
    Array.from({ length: WRITER_GAMES_MAX }, (_, i) => [`g${i}`, 'x'.repeat(1_100)]),
  )
  t.ok(encodeWriterBeat(huge), 'a beat within the byte limit encodes')
  t.throws(() => encodeWriterBeat({ ...good, games: many }), RangeError, 'one over it does not')
})

t.test(
  'a full beat that failed to go is not the base of the next; a stale life does not evict',
  async (t) => {
    const writer = createBeatWriter(WRITER, '00000000000000aa')
    const offer = (wall: number, version: string) =>
      writer.offer('g1', { writer: WRITER, stamp: stampAt(wall), version })
    offer(1_000, 'v1')
    t.throws(() =>
      writer.flush(() => {
        throw new Error('the publish failed')
      }),
    )
    offer(1_020, 'v1')
    const again = flushed(writer) as WriterBeat
    t.equal(again.base, again.n, 'the next round is full again')
    t.same(again.games, { g1: 'v1' }, 'and lists the game')

    const reader = createBeatReader((gameId) => gameId !== 'not-held')
    const newer = {
      writer: WRITER,
      life: '00000000000000bb',
      n: 0,
      base: 0,
      stamp: stampAt(5_000),
      games: { g1: 'v9', 'not-held': 'x' },
    }
    const older = {
      writer: WRITER,
      life: '00000000000000aa',
      n: 30,
      base: 30,
      stamp: stampAt(4_000),
      games: { g1: 'v1' },
    }
    reader.read(newer)
    reader.read(older)
    const delta = { ...newer, n: 1, base: 0, stamp: stampAt(5_020), games: {} }
    t.same(
      reader.read(delta).map(({ gameId, heartbeat }) => [gameId, heartbeat.version]),
      [['g1', 'v9']],
      'the newer life’s base still stands after the older life’s late full beat, and holds only the held game',
    )
  },
)

t.test('the repeat filter passes over a beat heard again, and only a byte-equal one', async (t) => {
  const isRepeat = createRepeatFilter(3)
  const beat = (n: number) => new TextEncoder().encode(`{"n":${n}}`)
  t.equal(isRepeat(beat(1)), false, 'first heard')
  t.equal(isRepeat(beat(1)), true, 'the same bytes again: the copy through the other connection')
  t.equal(isRepeat(beat(2)), false, 'other bytes of the same length are not a repeat')
  t.equal(isRepeat(new TextEncoder().encode('{"n":10}')), false, 'nor bytes of another length')
  t.equal(isRepeat(beat(1)), true, 'still remembered while within the last three')
  t.equal(isRepeat(beat(3)), false)
  t.equal(isRepeat(beat(4)), false)
  t.equal(isRepeat(beat(1)), false, 'forgotten past the last three: read again, which changes nothing')

  // The filter keeps a copy: a buffer reused by the client for the next message does not fool it.
  const shared = beat(7)
  t.equal(isRepeat(shared), false)
  shared.set(beat(8))
  t.equal(isRepeat(shared), false, 'the reused buffer now holds another beat')
  t.equal(isRepeat(beat(7)), true, 'the first beat is still known by its own bytes')
})
