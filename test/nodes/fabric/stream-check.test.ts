// Proves that a follower's check finds a node that handled a message the stream never kept: once
// the stream's last sequence stays below the last one the node handled on two checks in a row, the
// node is diverged (a deposed leader's message, read after a partition); a stream that is merely
// behind for one check (a leader just elected) is not.

import type { JetStreamClient } from '@nats-io/jetstream'
import pino from 'pino'
import t from 'tap'
import { createStreamCheck } from '../../../nodes/fabric/stream-check.ts'

/** A stream as the check sees it through the client: its last sequence, and no message bodies. */
function fakeStream(lastSeq: () => number): JetStreamClient {
  const handle = {
    info: async () => ({ cluster: { leader: 'n1' }, state: { last_seq: lastSeq() } }),
    getMessage: async () => null,
  }
  return { streams: { get: async () => handle } } as unknown as JetStreamClient
}

t.test('a node past the stream’s last sequence on two checks is diverged', async (t) => {
  let streamLast = 17
  const check = createStreamCheck({
    js: fakeStream(() => streamLast),
    stream: 'LEDGER_EU_7',
    log: pino({ level: 'silent' }),
    lastSeq: () => 18,
  })
  check.record(18, new TextEncoder().encode('a bet the stream never kept'))
  await check.verify()
  t.equal(check.diverged(), null, 'one check behind: perhaps a leader that has not applied yet')
  await check.verify()
  t.match(check.diverged(), /handled sequence 18, past the stream's last, 17/, 'two in a row: diverged')

  const caughtUp = createStreamCheck({
    js: fakeStream(() => streamLast),
    stream: 'LEDGER_EU_7',
    log: pino({ level: 'silent' }),
    lastSeq: () => 18,
  })
  streamLast = 17
  await caughtUp.verify()
  streamLast = 18
  await caughtUp.verify()
  streamLast = 17
  await caughtUp.verify()
  t.equal(caughtUp.diverged(), null, 'behind on checks that are not in a row: not diverged')
})
