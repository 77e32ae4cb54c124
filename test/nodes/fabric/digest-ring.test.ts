// Proves the ring of message digests a follower audits with (nodes/fabric/digest-ring.ts): it
// answers like a map of the last `max` sequences recorded, whatever the gaps between sequences and
// however often it grew or wrapped; it tells the message recorded from another; and a sequence at
// or before the newest is not recorded again.

import fc from 'fast-check'
import t from 'tap'
import { DigestRing } from '../../../nodes/fabric/digest-ring.ts'

const message = (seq: number, salt = '') => new TextEncoder().encode(`message ${seq}${salt}`)

t.test('it answers like a map of the last max sequences', async () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 3_000 }),
      // Lengths up to the largest, past the first allocation (1,024) and the capacity.
      fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 0, maxLength: 5_000, size: 'max' }),
      (max, gaps) => {
        const ring = new DigestRing(max)
        const model = new Map<number, Uint8Array>()
        let seq = 0
        for (const gap of gaps) {
          seq += gap
          ring.record(seq, message(seq))
          model.set(seq, message(seq))
          if (model.size > max) model.delete(model.keys().next().value as number)
        }
        if (ring.size !== model.size) return false
        if (ring.oldest() !== model.keys().next().value) return false
        for (let probe = 0; probe <= seq + 1; probe++) {
          const kept = model.has(probe)
          if (ring.has(probe) !== kept) return false
          const matches = ring.matches(probe, message(probe))
          if (matches !== (kept ? true : undefined)) return false
          if (kept && ring.matches(probe, message(probe, 'another')) !== false) return false
        }
        return true
      },
    ),
    { numRuns: 60 },
  )
})

t.test('a sequence at or before the newest is not recorded again', async (t) => {
  const ring = new DigestRing(10)
  ring.record(5, message(5))
  ring.record(5, message(5, 'another'))
  ring.record(3, message(3))
  t.equal(ring.size, 1)
  t.equal(ring.matches(5, message(5)), true, 'the first message stands')
  t.equal(ring.has(3), false)
  t.throws(() => new DigestRing(0), RangeError)
})
