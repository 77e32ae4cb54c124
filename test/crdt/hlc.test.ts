// Proves the hybrid logical clock's contract: stamps only move forward (even when the wall clock
// steps back), merging a remote stamp orders later local stamps after it, remote stamps beyond the
// maximum drift are refused without touching the clock, and the fixed-width encoding sorts exactly
// like the stamps it encodes (checked with generated stamps).

import fc from 'fast-check'
import t from 'tap'
import {
  type ClockDriftError,
  compareStamps,
  createHlc,
  decodeStamp,
  encodeStamp,
  isStampKey,
  STAMP_KEY_LENGTH,
  STAMP_LOGICAL_MAX,
  type Stamp,
  stampNode,
  stampWall,
} from '../../crdt/index.ts'

t.test('local stamps strictly increase, even when the wall clock steps back', async (t) => {
  let wall = 5_000
  const hlc = createHlc({ node: 'api-1', clock: () => wall })
  const first = hlc.now()
  wall = 4_000
  const second = hlc.now()
  const third = hlc.now()
  wall = 6_000
  const fourth = hlc.now()
  t.same(first, { wall: 5_000, logical: 0, node: 'api-1' })
  t.same(second, { wall: 5_000, logical: 1, node: 'api-1' })
  t.same(third, { wall: 5_000, logical: 2, node: 'api-1' })
  t.same(fourth, { wall: 6_000, logical: 0, node: 'api-1' })
})

t.test('a merged remote stamp orders every later local stamp after it', async (t) => {
  const hlc = createHlc({ node: 'api-1', clock: () => 1_000, maxDriftMs: 500 })
  const remote: Stamp = { wall: 1_400, logical: 7, node: 'trader-1' }
  const merged = hlc.receive(remote)
  t.ok(compareStamps(merged, remote) > 0, 'the merge itself is after the remote stamp')
  t.ok(compareStamps(hlc.now(), remote) > 0, 'the next local stamp is after the remote stamp')
  t.equal(hlc.now().wall, 1_400, 'the clock carries the remote wall time until its own catches up')
})

t.test('a remote stamp at an equal wall time merges logical counters', async (t) => {
  const hlc = createHlc({ node: 'b', clock: () => 1_000 })
  hlc.now()
  hlc.now()
  const merged = hlc.receive({ wall: 1_000, logical: 9, node: 'a' })
  t.same(merged, { wall: 1_000, logical: 10, node: 'b' })
})

t.test('a remote stamp beyond the maximum drift is refused and leaves the clock as it was', async (t) => {
  const hlc = createHlc({ node: 'api-1', clock: () => 1_000, maxDriftMs: 500 })
  const before = hlc.now()
  const error = t.throws(() => hlc.receive({ wall: 1_501, logical: 0, node: 'trader-1' })) as ClockDriftError
  t.equal(error.code, 'CLOCK_DRIFT')
  t.equal(error.driftMs, 501)
  t.match(error.message, /501 ms ahead.*500 ms/)
  t.same(hlc.last(), before, 'the clock did not move')
  t.doesNotThrow(
    () => hlc.receive({ wall: 1_500, logical: 0, node: 'trader-1' }),
    'exactly at the bound is fine',
  )
})

t.test('the logical counter refuses to overflow', async (t) => {
  const hlc = createHlc({ node: 'a', clock: () => 10 })
  hlc.receive({ wall: 10, logical: STAMP_LOGICAL_MAX - 1, node: 'b' })
  t.throws(() => hlc.now(), { code: 'CLOCK_OVERFLOW' })
})

t.test('bad options and bad clock readings are refused with clear errors', async (t) => {
  t.throws(() => createHlc({ node: 'Bad Node' }), { code: 'INVALID_NODE_ID' })
  t.throws(() => createHlc({ node: 'x'.repeat(25) }), { code: 'INVALID_NODE_ID' })
  t.throws(() => createHlc({ node: 'a', maxDriftMs: -1 }), RangeError)
  t.throws(() => createHlc({ node: 'a', clock: () => Number.NaN }).now(), RangeError)
})

t.test('encoding: fixed width, round trips, rejects garbage, exposes node and wall', async (t) => {
  const stamp = { wall: 1_732_368_000_123, logical: 42, node: 'trader-1' }
  const key = encodeStamp(stamp)
  t.equal(key.length, STAMP_KEY_LENGTH)
  t.same(decodeStamp(key), stamp)
  t.equal(stampNode(key), 'trader-1')
  t.equal(stampWall(key), 1_732_368_000_123)
  for (const bad of ['', 'x', key.slice(1), `${key}+`, key.replace('trader-1', 'Trader-1')]) {
    t.throws(() => decodeStamp(bad), { code: 'INVALID_STAMP' }, JSON.stringify(bad))
  }
})

const stampArbitrary = fc.record({
  wall: fc.integer({ min: 0, max: 9_999_999_999_999 }),
  logical: fc.integer({ min: 0, max: STAMP_LOGICAL_MAX }),
  node: fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,23}$/),
})

t.test('property: string order of encoded stamps is stamp order', async (t) => {
  fc.assert(
    fc.property(stampArbitrary, stampArbitrary, (a, b) => {
      const byStamp = Math.sign(compareStamps(a, b))
      const ka = encodeStamp(a)
      const kb = encodeStamp(b)
      const byKey = ka === kb ? 0 : ka < kb ? -1 : 1
      return byStamp === byKey && ka.length === STAMP_KEY_LENGTH
    }),
    { numRuns: 2_000 },
  )
  t.pass('2,000 pairs agree')
})

t.test('property: any interleaving of sends and receives yields strictly increasing stamps', async (t) => {
  const event = fc.oneof(
    fc.record({ kind: fc.constant('tick' as const), stepMs: fc.integer({ min: -50, max: 50 }) }),
    fc.record({ kind: fc.constant('receive' as const), aheadMs: fc.integer({ min: -100, max: 100 }) }),
  )
  fc.assert(
    fc.property(fc.array(event, { maxLength: 200 }), (events) => {
      let wall = 10_000
      const hlc = createHlc({ node: 'n', clock: () => wall, maxDriftMs: 100 })
      let previous = hlc.now()
      for (const e of events) {
        if (e.kind === 'tick') wall = Math.max(0, wall + e.stepMs)
        const next =
          e.kind === 'tick' ? hlc.now() : hlc.receive({ wall: wall + e.aheadMs, logical: 3, node: 'm' })
        if (compareStamps(next, previous) <= 0) return false
        previous = next
      }
      return true
    }),
  )
  t.pass()
})

t.test(
  'property: encoding, checking and decoding the same stamp again and again agree with doing it once',
  async () => {
    // The codec remembers the last stamp it encoded, checked and decoded (a beat brings one stamp to
    // hundreds of games); any sequence of calls must answer as a codec without memory would.
    const stamp = fc.record({
      wall: fc.integer({ min: 0, max: 9_999_999_999_999 }),
      logical: fc.integer({ min: 0, max: STAMP_LOGICAL_MAX }),
      node: fc.constantFrom('a', 'api-1', 'trader-2'),
    })
    const call = fc.oneof(
      stamp.map((value) => ({ kind: 'stamp' as const, value })),
      fc.constantFrom('', 'x', '0000000000001.000000.a').map((value) => ({ kind: 'text' as const, value })),
    )
    fc.assert(
      fc.property(fc.array(call, { maxLength: 30 }), (calls) => {
        const seen: Stamp[] = []
        for (const each of calls) {
          if (each.kind === 'text') {
            if (isStampKey(each.value)) return false
            continue
          }
          const value = seen.length > 0 && each.value.wall % 2 === 0 ? (seen.at(-1) as Stamp) : each.value
          seen.push(value)
          const key = encodeStamp(value)
          const expected = `${String(value.wall).padStart(13, '0')}.${String(value.logical).padStart(6, '0')}.`
          if (!key.startsWith(expected) || key.length !== STAMP_KEY_LENGTH) return false
          if (!isStampKey(key) || !isStampKey(key)) return false
          const decoded = decodeStamp(key)
          if (compareStamps(decoded, value) !== 0 || decoded.node !== value.node) return false
          if (!Object.isFrozen(decoded)) return false
        }
        return true
      }),
    )
  },
)
