// Proves the refusal window's arithmetic with an injected clock: a user is abusing once the cap is
// reached within one minute, a new minute starts afresh, and the table never tracks more users than
// its bound (the oldest window goes first).

import t from 'tap'
import { createRefusalWindow, REFUSAL_WINDOW_MS } from '../../../nodes/api/refusal-window.ts'

t.test('the cap holds within a minute and resets with the next', async (t) => {
  let nowMs = 1_000_000
  const window = createRefusalWindow({ perMinuteMax: 3, usersMax: 2, now: () => nowMs })
  for (let i = 0; i < 2; i++) window.record('u1')
  t.notOk(window.abusing('u1'), 'two refusals are under the cap')
  window.record('u1')
  t.ok(window.abusing('u1'), 'the third reaches it')
  t.notOk(window.abusing('u2'), 'another user is not touched')
  nowMs += REFUSAL_WINDOW_MS - 1
  t.ok(window.abusing('u1'), 'still within the minute')
  nowMs += 1
  t.notOk(window.abusing('u1'), 'a new minute starts afresh')
  window.record('a')
  nowMs += 1
  window.record('b')
  window.record('c')
  t.equal(window.tracked(), 2, 'no more users than the bound')
  for (let i = 0; i < 3; i++) window.record('c')
  t.ok(window.abusing('c'))
  t.notOk(window.abusing('a'), 'the oldest window was forgotten first')
})
