// Proves the clock guard's rules with an injected clock: a stamp beyond the drift bound is held, not
// lost, and the node is unsafe until its clock can merge it, after which every stamp it issues is
// after the held one; a writer's heartbeat offset or the probe's estimate beyond the bound, either
// way, makes the node unsafe, and old heartbeat offsets expire; a second of heartbeats delivered
// late after a partition, or carrying a merged stamp, does not decide a writer's offset. The probe's
// median blames a node only when most of the region disagrees with it.

import t from 'tap'
import { compareStamps, createHlc } from '../../../crdt/index.ts'
import {
  createClockGuard,
  WRITER_OFFSET_BUCKET_MS,
  WRITER_OFFSET_TTL_MS,
} from '../../../nodes/fabric/clock-guard.ts'
import { offsetFromSamples } from '../../../nodes/fabric/clock-probe.ts'

function setup() {
  let nowMs = 1_000_000
  const clock = () => nowMs
  const hlc = createHlc({ node: 'api-1', clock, maxDriftMs: 5_000 })
  const guard = createClockGuard({ hlc, now: clock })
  return { hlc, guard, advance: (ms: number) => (nowMs += ms), now: clock }
}

t.test('a stamp beyond the bound is held until the clock can merge it', async (t) => {
  const { hlc, guard, advance, now } = setup()
  const ahead = { wall: now() + 5_600, logical: 3, node: 'trader-1' }
  guard.merge(ahead)
  t.match(guard.unsafe(), /5600 ms ahead/, 'unsafe while held')
  t.equal(guard.offsets().heldLeadMs, 5_600)
  guard.merge({ wall: now() + 100, logical: 0, node: 'trader-1' })
  t.ok(guard.unsafe(), 'a lower stamp does not release the held one')
  advance(599)
  t.ok(guard.unsafe(), 'still 5001 ms ahead')
  advance(1)
  t.equal(guard.unsafe(), null, 'merged once within the bound')
  t.ok(compareStamps(hlc.now(), ahead) > 0, 'the next stamp is after the held one')
  t.equal(guard.offsets().heldLeadMs, 0)
})

t.test('writer offsets beyond the bound either way are unsafe, and expire', async (t) => {
  const { guard, advance, now } = setup()
  guard.observeWriter('trader-1', now() - 4_000)
  t.equal(guard.unsafe(), null, 'within the bound')
  guard.observeWriter('trader-1', now() - 5_600)
  t.match(guard.unsafe(), /-5600 ms off/, 'a writer far behind (this node far ahead)')
  const ahead = setup()
  ahead.guard.observeWriter('trader-1', ahead.now() + 5_600)
  t.match(ahead.guard.unsafe(), /is 5600 ms off/, 'a writer far ahead')
  advance(WRITER_OFFSET_TTL_MS + 1)
  t.equal(guard.unsafe(), null, 'an old observation says nothing')
  t.equal(guard.offsets().writersMs, null)
})

t.test(
  'a writer that merged stamps from a clock ahead does not hide this node running ahead of it',
  async (t) => {
    const { guard, advance, now } = setup()
    // The writer's own clock is 6 s behind this node; later its heartbeats carry a merged stamp 2 s
    // behind. Each observation bounds its offset from above: the least one counts.
    guard.observeWriter('trader-2', now() - 6_000)
    t.match(guard.unsafe(), /-6000 ms off/)
    advance(500)
    guard.observeWriter('trader-2', now() - 2_000)
    t.match(guard.unsafe(), /-6000 ms off/, 'the merged stamp does not clear it')
    // Observations are kept per bucket, so an old one may outlive the TTL by up to one bucket.
    advance(WRITER_OFFSET_TTL_MS + WRITER_OFFSET_BUCKET_MS)
    guard.observeWriter('trader-2', now() - 2_000)
    t.equal(guard.unsafe(), null, 'once the old observation expires, the newer ones count')
    t.equal(guard.offsets().writersMs, -2_000)
  },
)

t.test('the probe estimate beyond the bound is unsafe', async (t) => {
  const { guard } = setup()
  guard.observeProbe(-6_000)
  t.match(guard.unsafe(), /-6000 ms off the cluster/)
  guard.observeProbe(200)
  t.equal(guard.unsafe(), null)
  guard.observeProbe(null)
  t.equal(guard.unsafe(), null, 'no estimate, no verdict')
})

t.test('the probe median blames a node only when the region disagrees with it', async (t) => {
  const sample = (peerOffsetMs: number, rttMs = 2) => ({
    peerMs: 10_000 + rttMs / 2 + peerOffsetMs,
    sentMs: 10_000,
    receivedMs: 10_000 + rttMs,
  })
  t.equal(offsetFromSamples([]), null, 'no answers')
  t.equal(offsetFromSamples([sample(8_000)]), 0, 'one peer against one node: nobody is blamed')
  t.equal(offsetFromSamples([sample(8_000), sample(0)]), 0, 'one peer off: not this node')
  t.equal(offsetFromSamples([sample(8_000), sample(8_000)]), -8_000, 'both peers ahead: this node is behind')
  t.equal(
    offsetFromSamples([sample(-7_000), sample(-7_000), sample(-7_000), sample(0)]),
    7_000,
    'most peers behind: this node is ahead',
  )
})

t.test('a burst of heartbeats a healed partition delivered late is not the writer’s clock', async (t) => {
  const { guard, advance, now } = setup()
  // Heartbeats every 20 ms with transit of a few ms, for five seconds...
  for (let i = 0; i < 250; i++) {
    guard.observeWriter('trader-1', now() - 3)
    advance(20)
  }
  // ...then, in one second, the ones the partition held, up to 5.3 s late.
  for (let late = 5_300; late > 0; late -= 100) guard.observeWriter('trader-1', now() - late)
  t.equal(guard.unsafe(), null, 'one second of late heartbeats among five of timely ones')
  t.equal(guard.offsets().writersMs, -3)
})

t.test('a writer behind by more than the bound in every second is unsafe, whatever it merged', async (t) => {
  const { guard, advance, now } = setup()
  for (let second = 0; second < 6; second++) {
    // Now and then the writer's heartbeat carries a stamp it merged from a clock ahead.
    guard.observeWriter('trader-2', now() - (second === 2 ? 100 : 6_000))
    advance(WRITER_OFFSET_BUCKET_MS)
  }
  t.match(guard.unsafe(), /-6000 ms off/)
})
