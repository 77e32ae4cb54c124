// Proves that a supervisor backs off between restarts of a node that keeps finding its state
// diverged: the wait doubles from REBUILD_BACKOFF_MS_MIN and stops growing at REBUILD_BACKOFF_MS_MAX,
// so a burst of divergences never restarts (and refolds the log) in a tight loop.

import t from 'tap'
import {
  REBUILD_BACKOFF_MS_MAX,
  REBUILD_BACKOFF_MS_MIN,
  REBUILDS_PER_NODE_MAX,
  rebuildBackoffMs,
} from '../../../nodes/fabric/node-main.ts'

t.test('the wait before each rebuild doubles, up to its maximum', async (t) => {
  const waits = Array.from({ length: 10 }, (_, rebuilds) => rebuildBackoffMs(rebuilds))
  t.equal(waits[0], REBUILD_BACKOFF_MS_MIN, 'the first restart waits the minimum')
  for (let i = 1; i < waits.length; i++)
    t.equal(waits[i], Math.min(2 * (waits[i - 1] as number), REBUILD_BACKOFF_MS_MAX), `restart ${i + 1}`)
  t.equal(waits.at(-1), REBUILD_BACKOFF_MS_MAX, 'and stops growing')
  const total = Array.from({ length: REBUILDS_PER_NODE_MAX }, (_, i) => rebuildBackoffMs(i)).reduce(
    (a, b) => a + b,
  )
  t.ok(total >= REBUILDS_PER_NODE_MAX * REBUILD_BACKOFF_MS_MIN, `a run's rebuilds wait ${total} ms in all`)
})
