// Creating the fabric retries what JetStream answers while it elects leaders or takes a server
// back after a heal, says so for each retry, and gives up at once on anything else. The messages are nats-server 2.9.10's.

import t from 'tap'
import {
  ENSURE_FORMING_MS,
  isTransientJetStreamError,
  retryWhileForming,
} from '../../../nodes/fabric/streams.ts'

t.test('what JetStream says while it forms is transient; a wrong config is not', async (t) => {
  for (const message of [
    'TimeoutError: timeout',
    '503 no responders',
    'JetStream system temporarily unavailable',
    'no suitable peers for placement, peer offline',
    'stream has no leader yet',
  ])
    t.ok(isTransientJetStreamError(new Error(message)), message)
  for (const message of [
    'replicas > 1 not supported in non-clustered mode',
    'stream name already in use with a different configuration',
    'maximum messages per subject exceeds limit',
  ])
    t.notOk(isTransientJetStreamError(new Error(message)), message)
})

t.test('a transient error is tried again, told, and the answer after it returned', async (t) => {
  let calls = 0
  const told: { attempt: number; waitMs: number; error: string }[] = []
  const answer = await retryWhileForming(
    async () => {
      calls++
      if (calls <= 2) throw new Error('no suitable peers for placement, peer offline')
      return 'created'
    },
    {
      retryMs: 1,
      onRetry: ({ attempt, waitMs, error }) => told.push({ attempt, waitMs, error: String(error) }),
    },
  )
  t.equal(answer, 'created')
  t.equal(calls, 3, 'two retries')
  t.same(
    told,
    [1, 2].map((attempt) => ({
      attempt,
      waitMs: attempt,
      error: 'Error: no suitable peers for placement, peer offline',
    })),
    'each retry told, with its wait',
  )
})

t.test('any other error is thrown at once', async (t) => {
  let calls = 0
  await t.rejects(
    retryWhileForming(async () => {
      calls++
      throw new Error('replicas > 1 not supported in non-clustered mode')
    }),
    /non-clustered/,
  )
  t.equal(calls, 1, 'not retried')
})

t.test('a transient error that never passes is thrown once the time is up', async (t) => {
  let calls = 0
  await t.rejects(
    retryWhileForming(
      async () => {
        calls++
        throw new Error('JetStream system temporarily unavailable')
      },
      { withinMs: 1_000, retryMs: 100 },
    ),
    /temporarily unavailable/,
  )
  // Waits of 100, 200, 300 ms after the first three tries; a fourth wait would pass the second.
  // Timers late on a busy machine leave fewer tries, never more.
  t.ok(calls >= 2 && calls <= 4, `tried while the time allowed (${calls} times)`)
  // After a heal, nats-server 2.9.10 answered "temporarily unavailable" for over 25 s.
  t.ok(ENSURE_FORMING_MS >= 60_000, `the fabric is tried for ${ENSURE_FORMING_MS} ms`)
})
