// Proves that a follower's check finds a node that handled a message the stream never kept: once
// the stream's last sequence has stayed below the last one the node handled for AHEAD_CONFIRM_MS,
// the node is diverged (a deposed leader's message, read after a partition); a stream that is
// behind for less (a leader just elected) is not. Likewise for a stream that stays below a sequence
// it acknowledged an append of the node's at: it lost that append. And once the follower has caught
// up, everything it read is audited, which finds a message read from a leader deposed since.

import type { JetStreamClient } from '@nats-io/jetstream'
import pino from 'pino'
import t from 'tap'
import { AHEAD_CONFIRM_MS, createStreamCheck } from '../../../nodes/fabric/stream-check.ts'

/** A stream as the check sees it through the client: its last sequence, and no message bodies. */
function fakeStream(lastSeq: () => number): JetStreamClient {
  return clientOf({
    info: async () => ({ cluster: { leader: 'n1' }, state: { last_seq: lastSeq() } }),
    getMessage: async () => null,
  })
}

/** A client whose stream API (what the check asks through) answers as `api` does, for any stream. */
function clientOf(api: {
  info: () => Promise<unknown>
  getMessage: (stream: string, query: { seq: number }) => Promise<unknown>
}): JetStreamClient {
  return { jetstreamManager: async () => ({ streams: api }) } as unknown as JetStreamClient
}

t.test('a node past the stream’s last sequence on two checks is diverged', async (t) => {
  let streamLast = 17
  let nowMs = 0
  const checkOf = () =>
    createStreamCheck({
      js: fakeStream(() => streamLast),
      stream: 'LEDGER_EU_7',
      log: pino({ level: 'silent' }),
      lastSeq: () => 18,
      now: () => nowMs,
    })
  const check = checkOf()
  check.record(18, new TextEncoder().encode('a bet the stream never kept'))
  await check.verify()
  nowMs += AHEAD_CONFIRM_MS - 1
  await check.verify()
  t.equal(check.diverged(), null, 'behind for less than the confirm time: perhaps a leader not yet applied')
  nowMs += 1
  await check.verify()
  t.match(check.diverged(), /handled sequence 18, past the stream's last, 17/, 'behind that long: diverged')

  const caughtUp = checkOf()
  nowMs = 0
  await caughtUp.verify()
  streamLast = 18
  nowMs += AHEAD_CONFIRM_MS
  await caughtUp.verify()
  streamLast = 17
  nowMs += AHEAD_CONFIRM_MS - 1
  await caughtUp.verify()
  t.equal(caughtUp.diverged(), null, 'behind, caught up, behind again: the time starts again')
})

t.test('a stream that stays below an append it acknowledged lost it: the node is diverged', async (t) => {
  let nowMs = 0
  let acknowledged = 0
  const check = createStreamCheck({
    js: fakeStream(() => 17),
    stream: 'LEDGER_EU_2',
    log: pino({ level: 'silent' }),
    lastSeq: () => 17,
    acknowledgedThrough: () => acknowledged,
    now: () => nowMs,
  })
  await check.verify()
  nowMs += AHEAD_CONFIRM_MS
  await check.verify()
  t.equal(check.diverged(), null, 'every acknowledged append within the stream: nothing found')
  acknowledged = 19
  await check.verify()
  nowMs += AHEAD_CONFIRM_MS - 1
  await check.verify()
  t.equal(check.diverged(), null, 'below the acknowledged sequence for less than the confirm time: not yet')
  nowMs += 1
  await check.verify()
  t.match(
    check.diverged(),
    /acknowledged an append of this node's at 19, past its last sequence, 17/,
    'below it that long: the stream lost the append',
  )
})

t.test('once the follower has caught up, everything it read is audited against the stream', async (t) => {
  const stored = new Map([
    [1, 'a'],
    [2, 'b'],
    [3, 'c'],
  ])
  const js = clientOf({
    info: async () => ({ cluster: { leader: 'n2' }, state: { last_seq: 3 } }),
    getMessage: async (_stream, { seq }) => {
      const data = stored.get(seq)
      return data === undefined ? null : { data: new TextEncoder().encode(data) }
    },
  })
  let caughtUp = false
  const check = createStreamCheck({
    js,
    stream: 'LEDGER_EU_1',
    log: pino({ level: 'silent' }),
    lastSeq: () => 3,
    caughtUp: () => caughtUp,
  })
  // Read from a leader since deposed: message 2 is not the one the stream holds now.
  for (const [seq, data] of [
    [1, 'a'],
    [2, 'B'],
    [3, 'c'],
  ] as const)
    check.record(seq, new TextEncoder().encode(data))
  await check.verify()
  t.equal(check.diverged(), null, 'the last message agrees, and no leader change was seen: nothing found yet')
  caughtUp = true
  await check.verify()
  t.match(
    check.diverged(),
    /message 2 is not the one this node handled/,
    'the audit at the catch-up finds it',
  )
})
