// When a node leaves its first connection's server because of its appends: only once that server
// has answered nothing for STALL_SILENT_MS while the second connection answers, never while it is
// merely slow, and at most once per STALL_MOVE_MIN_MS.

import t from 'tap'
import {
  createStallDetector,
  STALL_MOVE_MIN_MS,
  STALL_SILENT_MS,
} from '../../../nodes/fabric/stall-detector.ts'

function clocked() {
  const clock = { nowMs: 10_000 }
  return { clock, stall: createStallDetector(() => clock.nowMs) }
}

t.test('a first connection that answers nothing is left once silent for STALL_SILENT_MS', async (t) => {
  const { clock, stall } = clocked()
  stall.sentThroughFirst()
  clock.nowMs += STALL_SILENT_MS - 1
  t.notOk(stall.answeredThroughSecond(), 'not before')
  stall.sentThroughFirst()
  clock.nowMs += 1
  t.ok(stall.answeredThroughSecond(), 'then, counted from the oldest append it left unanswered')
})

t.test('a slow first connection that still answers now and then is never left', async (t) => {
  const { clock, stall } = clocked()
  // The machine is saturated: every append through the first takes 300-700 ms, the second answers
  // most of them first, yet the first answers one every 400 ms.
  let left = 0
  for (let ms = 0; ms < 20_000; ms += 50) {
    clock.nowMs += 50
    stall.sentThroughFirst()
    if (ms % 400 === 0) stall.answeredThroughFirst()
    if (stall.answeredThroughSecond()) left++
  }
  t.equal(left, 0, 'no move in 20 s of hedged answers')
})

t.test('a stall moves the node at most once per STALL_MOVE_MIN_MS', async (t) => {
  const { clock, stall } = clocked()
  let moves = 0
  for (let ms = 0; ms < 3 * STALL_MOVE_MIN_MS; ms += 50) {
    clock.nowMs += 50
    stall.sentThroughFirst()
    if (stall.answeredThroughSecond()) moves++
  }
  t.ok(moves >= 2 && moves <= 3, `${moves} moves in ${3 * STALL_MOVE_MIN_MS} ms of silence`)
})

t.test('nothing sent through the first, nothing to blame it for', async (t) => {
  const { clock, stall } = clocked()
  clock.nowMs += 10 * STALL_SILENT_MS
  t.notOk(stall.answeredThroughSecond())
})
