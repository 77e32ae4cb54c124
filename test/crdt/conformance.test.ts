// The conformance suite every CRDT backend runs. It proves the replica contract with a generated
// tennis match: updates applied in order, shuffled, duplicated, or interleaved with snapshots all
// give the writer's state hash; snapshots restore and merge; both backends reach the same hash for
// the same ops; bad bytes and hostile entries are refused or skipped without changing the state;
// and a writer's own bad commits fail with coded errors.

import * as Automerge from '@automerge/automerge'
import t from 'tap'
import * as Y from 'yjs'
import {
  automergeBackend,
  BACKENDS,
  type Backend,
  type BackendName,
  createHlc,
  judge,
  type Replica,
  stampOps,
  yjsBackend,
} from '../../crdt/index.ts'
import { createPrng } from '../../nodes/fabric/prng.ts'
import { createTestWriter, NEXT_POINT, stampAt } from '../helpers/game-writer.ts'
import { scriptedMatch } from '../helpers/scripted-updates.ts'

const BET = { marketId: 'point-1', selectionId: 'home', odds: 1_800, policy: 'any' as const }

/** Updates that a hostile or buggy peer could produce with the raw library, by backend. */
const hostileUpdates: Record<BackendName, () => Uint8Array[]> = {
  yjs() {
    const doc = new Y.Doc()
    doc.getMap('entries').set('transition/garbage', { kind: 'transition' })
    doc.getMap('entries').set('market/0000000000001.000000.x+++++++++++++++++++++++', 42)
    doc.getMap('watermarks').set('ghost', 'not a stamp')
    return [Y.encodeStateAsUpdate(doc)]
  },
  automerge() {
    let doc = Automerge.init<Record<string, unknown>>()
    doc = Automerge.change(doc, (root) => {
      root['e/transition/garbage'] = new Automerge.ImmutableString('{')
      root['e/market/x'] = 42
      root['w/ghost'] = new Automerge.ImmutableString('"not a stamp"')
    })
    return [Automerge.save(doc)]
  },
}

function applyAll(replica: Replica, updates: readonly Uint8Array[]): Replica {
  for (const update of updates) replica.apply(update)
  return replica
}

for (const backend of Object.values(BACKENDS) as Backend[]) {
  t.test(`${backend.name}: conformance`, async (t) => {
    const { writer, updates } = scriptedMatch(backend, 7)
    const expected = writer.stateHash()

    t.test('in order, shuffled, duplicated: same hash as the writer', async (t) => {
      const prng = createPrng(11)
      t.equal(applyAll(backend.create(), updates).stateHash(), expected, 'in order')
      t.equal(applyAll(backend.create(), prng.shuffle(updates)).stateHash(), expected, 'shuffled')
      const doubled = prng.shuffle([...updates, ...updates, ...updates.slice(0, 10)])
      t.equal(applyAll(backend.create(), doubled).stateHash(), expected, 'duplicated and shuffled')
      t.equal(applyAll(backend.create(), [...updates].reverse()).stateHash(), expected, 'reversed')
    })

    t.test('snapshots restore, merge, and interleave with updates', async (t) => {
      const prng = createPrng(12)
      const order = prng.shuffle(updates)
      const half = Math.floor(order.length / 2)
      const partial = applyAll(backend.create(), order.slice(0, half))
      const restored = backend.restore(partial.snapshot())
      t.equal(restored.stateHash(), partial.stateHash(), 'a restored replica has the snapshot’s state')
      t.equal(applyAll(restored, order.slice(half)).stateHash(), expected, 'then the rest of the updates')
      const merged = applyAll(backend.create(), order.slice(half))
      merged.apply(partial.snapshot())
      t.equal(merged.stateHash(), expected, 'a snapshot applies as an update')
      const again = backend.restore(restored.snapshot())
      again.apply(writer.snapshot())
      t.equal(again.stateHash(), expected, 'a snapshot of a restored replica, merged with the writer’s')
    })

    t.test('a duplicate update adds nothing and reports nothing new', async (t) => {
      const replica = backend.create()
      const first = replica.apply(updates[0] as Uint8Array)
      t.ok(first.added > 0)
      t.ok(first.maxStamp, 'the update raised the writer’s watermark')
      t.same(replica.apply(updates[0] as Uint8Array), { added: 0, skipped: 0, maxStamp: null })
    })

    t.test('a verdict is the same on every replica with the same ops', async (t) => {
      const prng = createPrng(13)
      const a = applyAll(backend.create(), prng.shuffle(updates))
      const b = backend.restore(applyAll(backend.create(), prng.shuffle(updates)).snapshot())
      for (let i = 0; i < 200; i++) {
        const bet = {
          stamp: stampAt(1_000_000 + prng.int(0, 40_000), 'api-1', prng.int(0, 3)),
          marketId: `point-${prng.int(1, 7)}`,
          selectionId: prng.pick(['home', 'away', 'draw']),
          odds: prng.int(1_100, 3_000),
          policy: prng.pick(['exact', 'better', 'any'] as const),
        }
        t.same(judge(b.game, bet), judge(a.game, bet))
      }
    })

    t.test('bad bytes are refused and change nothing', async (t) => {
      const replica = applyAll(backend.create(), updates)
      for (const bytes of [new Uint8Array([0xff, 0xff, 0xff, 0x01, 0x02]), new Uint8Array(0)]) {
        try {
          const result = replica.apply(bytes)
          t.equal(result.added, 0, 'accepted as an empty update')
        } catch (error) {
          t.match(error, { code: 'INVALID_UPDATE' })
        }
        t.equal(replica.stateHash(), expected)
      }
      t.throws(() => backend.restore(new Uint8Array([1, 2, 3])), { code: 'INVALID_SNAPSHOT' })
    })

    t.test('hostile entries are skipped by every replica alike', async (t) => {
      const replica = applyAll(backend.create(), updates)
      let skipped = 0
      for (const update of hostileUpdates[backend.name]()) skipped += replica.apply(update).skipped
      t.equal(skipped, 3, 'the malformed entries and the malformed watermark')
      t.equal(replica.stateHash(), expected, 'the state is what it was')
    })

    t.test('a heartbeat is held until the replica has the version it names', async (t) => {
      const trader = createTestWriter(backend, 'trader-1', 1_000)
      const first = trader.write({ kind: 'game', gameId: 'g', writers: ['trader-1'] }, NEXT_POINT)
      const second = trader.at(2_000).write({ kind: 'clock', period: 1, running: true, clockMs: 0 })
      const heartbeat = trader.at(3_000).heartbeat()
      const reader = backend.create()
      t.same(
        reader.applyHeartbeat(heartbeat),
        { added: 0, skipped: 0, maxStamp: null },
        'held: nothing arrived yet',
      )
      reader.apply(second)
      t.equal(
        judge(reader.game, { ...BET, stamp: stampAt(2_500) }).final,
        false,
        'still held without the first update',
      )
      const result = reader.apply(first)
      t.equal(result.maxStamp, heartbeat.stamp, 'admitted with the update that completed its version')
      t.equal(judge(reader.game, { ...BET, stamp: stampAt(2_500) }).final, true)
      t.same(
        reader.applyHeartbeat(heartbeat),
        { added: 0, skipped: 0, maxStamp: null },
        'a repeat changes nothing',
      )
      t.equal(reader.stateHash(), trader.replica.stateHash(), 'heartbeats are not part of the document')
    })

    t.test('an older heartbeat admitted out of order keeps a later one held', async (t) => {
      const trader = createTestWriter(backend, 'trader-1', 1_000)
      const first = trader.write({ kind: 'game', gameId: 'g', writers: ['trader-1'] }, NEXT_POINT)
      const early = trader.at(2_000).heartbeat()
      const second = trader.at(3_000).write({ kind: 'clock', period: 1, running: true, clockMs: 0 })
      const late = trader.at(4_000).heartbeat()
      const reader = backend.create()
      reader.apply(first)
      reader.applyHeartbeat(late)
      t.equal(reader.applyHeartbeat(early).maxStamp, early.stamp, 'the early one is covered already')
      t.equal(reader.apply(second).maxStamp, late.stamp, 'the late one is admitted with its version')
      t.equal(judge(reader.game, { ...BET, stamp: stampAt(3_500) }).final, true)
    })

    t.test('a standby’s heartbeat names the updates it applied since its last one', async (t) => {
      const trader = createTestWriter(backend, 'trader-1', 1_000)
      const first = trader.write({ kind: 'game', gameId: 'g', writers: ['trader-1', 'trader-2'] }, NEXT_POINT)
      const second = trader.at(2_000).write({ kind: 'clock', period: 1, running: true, clockMs: 0 })
      const standby = createTestWriter(backend, 'trader-2', 1_000)
      standby.replica.apply(first)
      const before = standby.at(1_500).heartbeat()
      standby.replica.apply(second)
      const after = standby.at(2_500).heartbeat()
      t.not(after.version, before.version, 'the version moved with the applied update')
      const reader = backend.create()
      reader.apply(first)
      t.equal(reader.applyHeartbeat(after).maxStamp, null, 'held by a reader without the second update')
      t.equal(reader.apply(second).maxStamp, after.stamp, 'and admitted with it')
    })

    t.test('malformed heartbeats are skipped; a writer cannot heartbeat backwards', async (t) => {
      const reader = backend.create()
      const bad = [
        null,
        'x',
        { writer: 'trader-1', stamp: stampAt(1, 'other'), version: '' },
        { writer: 'trader-1', stamp: stampAt(1, 'trader-1'), version: 'not a version' },
        { writer: 'trader-1', stamp: stampAt(1, 'trader-1'), version: 'x'.repeat(5_000) },
      ]
      for (const value of bad)
        t.equal(reader.applyHeartbeat(value).skipped, 1, JSON.stringify(value)?.slice(0, 60))
      const trader = createTestWriter(backend, 'trader-1', 5_000)
      trader.heartbeat()
      t.throws(() => trader.replica.heartbeat(stampAt(4_000, 'trader-1')), { code: 'WATERMARK_REGRESSION' })
      t.throws(() => trader.replica.heartbeat('yesterday'), { code: 'INVALID_STAMP' })
    })

    t.test('a writer’s bad commits fail with coded errors', async (t) => {
      const trader = createTestWriter(backend, 'trader-1')
      trader.write({ kind: 'game', gameId: 'g', writers: ['trader-1'] })
      t.throws(() => trader.replica.commit([]), { code: 'INVALID_OP' })
      t.throws(() => trader.replica.commit([{ kind: 'retire', stamp: stampAt(500, 'trader-1') }]), {
        code: 'WATERMARK_REGRESSION',
      })
      t.throws(
        () =>
          trader.replica.commit([
            { kind: 'retire', stamp: stampAt(9_000, 'other') },
            { kind: 'retire', stamp: stampAt(9_001, 'trader-1') },
          ]),
        {
          code: 'INVALID_OP',
        },
      )
      t.throws(() => trader.write({ ...NEXT_POINT, selections: [] }), { code: 'INVALID_OP' })
      t.throws(
        () =>
          trader.write({
            kind: 'transition',
            marketId: 'point-1',
            status: 'open',
            prices: { home: 999 },
            reason: '',
          }),
        {
          code: 'INVALID_OP',
        },
      )
    })
  })
}

t.test('both backends reach the same state hash for the same ops', async (t) => {
  for (const seed of [1, 2, 3]) {
    const yjs = scriptedMatch(yjsBackend, seed)
    const automerge = scriptedMatch(automergeBackend, seed)
    t.equal(automerge.writer.stateHash(), yjs.writer.stateHash(), `seed ${seed}`)
  }
})

t.test('two writers interleaving converge on every replica', async (t) => {
  for (const backend of Object.values(BACKENDS) as Backend[]) {
    let wallMs = 1_000
    const feeds = ['feed-a', 'feed-b'].map((node) => ({
      hlc: createHlc({ node, clock: () => wallMs }),
      replica: backend.create(),
    }))
    const prng = createPrng(5)
    const updates: Uint8Array[] = []
    const genesis = feeds[0]!
    updates.push(
      genesis.replica.commit(
        stampOps(genesis.hlc, [{ kind: 'game', gameId: 'g', writers: ['feed-a', 'feed-b'] }, NEXT_POINT]),
      ),
    )
    for (let i = 0; i < 100; i++) {
      wallMs += prng.int(0, 20)
      const feed = prng.pick(feeds)
      const status = prng.pick(['open', 'suspended'] as const)
      updates.push(
        feed.replica.commit(
          stampOps(feed.hlc, [
            {
              kind: 'transition',
              marketId: 'point-1',
              status,
              prices: { home: prng.int(1_500, 2_500) },
              reason: 'x',
            },
          ]),
        ),
      )
      if (prng.chance(0.3)) feed.replica.apply(prng.pick(updates))
    }
    const hashes = new Set([1, 2, 3].map(() => applyAll(backend.create(), prng.shuffle(updates)).stateHash()))
    t.equal(hashes.size, 1, `${backend.name}: one hash across three shuffled replicas`)
  }
})
