// Proves the finality queue drains exactly the items at or below a final frontier, in stamp
// order, whatever order they were added in (checked with generated stamps), and keeps the rest.

import fc from 'fast-check'
import t from 'tap'
import { createFinalityQueue } from '../../../nodes/fabric/finality-queue.ts'

t.test('drains the final prefix in stamp order', async (t) => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 0, max: 5_000 }), { maxLength: 3_000 }),
      fc.array(fc.integer({ min: 0, max: 5_000 }), { maxLength: 5 }),
      (stamps, frontiers) => {
        const queue = createFinalityQueue<{ stamp: string }>()
        for (const s of stamps) queue.add({ stamp: String(s).padStart(5, '0') })
        const drained: string[] = []
        for (const frontier of [...frontiers].sort((a, b) => a - b)) {
          const key = String(frontier).padStart(5, '0')
          drained.push(...queue.drain((stamp) => stamp <= key).map((item) => item.stamp))
        }
        const expected = stamps.map((s) => String(s).padStart(5, '0')).sort()
        const cut = drained.length
        return (
          JSON.stringify(drained) === JSON.stringify(expected.slice(0, cut)) &&
          queue.size() === stamps.length - cut
        )
      },
    ),
    { numRuns: 200 },
  )
  t.pass()
})
