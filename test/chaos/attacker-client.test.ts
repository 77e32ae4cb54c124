// Proves the hostile-mix attacker's wire (scripts/chaos/attacker-client.ts) is what its probes claim:
// each forged token is refused by the gateway's own authenticator for the reason its probe names,
// while a good token of the same secret is taken; and answers are matched to what was sent by ref,
// whichever frame carries it, with `no answer` after the deadline.

import t from 'tap'
import { AuthError, createAuthenticator } from '../../gateway/auth.ts'
import type { ServerFrame } from '../../gateway/protocol.ts'
import { createAnswers, forgedTokens, goodToken } from '../../scripts/chaos/attacker-client.ts'

const SECRET = 'a-secret-of-at-least-thirty-two-bytes-for-hs256'

t.test('forged tokens are refused for the reason their probe names', async (t) => {
  const auth = createAuthenticator({ hs256Secret: SECRET })
  const forged = await forgedTokens(SECRET, 'mallory-probe')
  const expected = { 'sub number': 'UNAUTHORIZED', 'alg none': 'UNAUTHORIZED', expired: 'TOKEN_EXPIRED' }
  for (const [name, token] of Object.entries(forged)) {
    const error = await auth.verify(token).catch((caught: unknown) => caught)
    t.ok(error instanceof AuthError, `${name} is refused`)
    t.equal((error as AuthError).code, expected[name as keyof typeof expected], name)
  }
  t.equal(
    (await auth.verify(await goodToken(SECRET, 'mallory-probe'))).userId,
    'mallory-probe',
    'a good one is taken',
  )
})

t.test('answers are matched by ref, and a missing one times out', async (t) => {
  const answers = createAnswers()
  const placed = answers.await('h1')
  const pinged = answers.await('h2')
  const silent = answers.await('h3', 10)
  const frames: ServerFrame[] = [
    { type: 'pong', ref: 'h2', serverTimeMs: 1 },
    {
      type: 'bet',
      ref: 'h1',
      betId: 'bet-0001',
      status: 'refused',
      code: 'USER_STAKE_LIMIT',
      message: 'no',
      atMs: 1,
    },
    // A later status of the same bet answers nothing more.
    {
      type: 'bet',
      ref: 'h1',
      betId: 'bet-0001',
      status: 'settled',
      outcome: 'lost',
      payoutCents: 0,
      balanceCents: 0,
      atMs: 2,
    },
  ]
  for (const frame of frames) answers.take(frame)
  t.equal((await placed).code, 'refused USER_STAKE_LIMIT')
  t.equal((await pinged).code, 'pong')
  t.equal((await silent).code, 'no answer')
  t.same(answers.statuses.get('bet-0001'), ['refused', 'settled'], 'every status of the bet is kept')
})
