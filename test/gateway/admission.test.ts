// Proves what an upgrade must carry to be admitted, with real sockets against a real gateway on a
// real cluster. A token signed with the right key but whose claims are not of their types (a
// numeric `sub` once passed the check and then broke the hello frame: 1006) is refused with the
// documented 4001. And the gateway's own origin is the one its configuration names: it once took
// it from the Host header, which a page on another site could forge to match its own Origin.

import { createHmac } from 'node:crypto'
import t from 'tap'
import { CLOSE } from '../../gateway/protocol.ts'
import { closeOf, ofType, openClient, SECRET, startGatewayStack } from '../helpers/gateway-stack.ts'

/** An HS256 token of the gateway's secret over a claims set written as JSON text, whatever it holds. */
function signClaims(claimsJson: string): string {
  const part = (text: string) => Buffer.from(text).toString('base64url')
  const unsigned = `${part('{"alg":"HS256","typ":"JWT"}')}.${part(claimsJson)}`
  return `${unsigned}.${createHmac('sha256', SECRET).update(unsigned).digest('base64url')}`
}

t.test('a signed token is admitted only if every claim has its type', async (t) => {
  const stack = await startGatewayStack()
  t.teardown(() => stack.close())
  const exp = Math.floor(Date.now() / 1000) + 600
  const valid = await openClient(stack.wsUrl, { token: signClaims(`{"sub":"alice","exp":${exp}}`) })
  t.match(await valid.next(ofType('hello')), { userId: 'alice' }, 'the well-typed token gets in')
  await valid.close()
  const cases: [string, string][] = [
    [`{"sub":123,"exp":${exp}}`, 'a numeric sub'],
    [`{"sub":["alice"],"exp":${exp}}`, 'a sub that is an array'],
    [`{"sub":"a.b","exp":${exp}}`, 'a sub outside the user-id grammar'],
    [`{"sub":"alice","exp":"${exp}"}`, 'an exp that is a string'],
    [`{"sub":"alice","exp":1e400}`, 'an exp that is not finite'],
    [`{"sub":"alice","exp":${exp},"nbf":"yesterday"}`, 'an nbf that is not a number'],
    [`{"sub":"alice","exp":${exp},"iat":true}`, 'an iat that is not a number'],
    [`{"sub":"alice","exp":${exp},"iss":5}`, 'an iss that is not a string'],
    [`{"sub":"alice","exp":${exp},"aud":["web",1]}`, 'an aud with a member that is not a string'],
    [`{"sub":"alice","exp":${exp},"jti":{}}`, 'a jti that is not a string'],
  ]
  for (const [claims, what] of cases) {
    const client = await openClient(stack.wsUrl, { token: signClaims(claims) })
    t.match(await closeOf(client), { code: CLOSE.UNAUTHORIZED }, `${what}: 4001`)
    t.same(client.frames, [], 'and no frame before the close')
  }
  t.equal(stack.gateway.gateway.connections(), 0)
})

t.test('the gateway’s own origin is the configured one, whatever the Host header says', async (t) => {
  const stack = await startGatewayStack({ origins: ['https://bet.example'] })
  t.teardown(() => stack.close())
  const token = await stack.token('alice')
  t.equal(stack.publicOrigin, stack.gateway.url, 'the stack serves its page from its public origin')
  const forged = await openClient(stack.wsUrl, {
    token,
    origin: 'http://evil.example',
    headers: { host: 'evil.example' },
  })
  t.match(
    await closeOf(forged),
    { code: CLOSE.ORIGIN_NOT_ALLOWED },
    'a foreign Origin with a Host to match (what DNS rebinding gives a page) is still refused',
  )
  for (const origin of [stack.publicOrigin, 'https://bet.example']) {
    const client = await openClient(stack.wsUrl, { token, origin, headers: { host: 'evil.example' } })
    t.match(
      await client.next(ofType('hello')),
      { userId: 'alice' },
      `${origin} is allowed, whatever Host says`,
    )
    await client.close()
  }
  const other = await openClient(stack.wsUrl, {
    token,
    origin: stack.gateway.url.replace('127.0.0.1', 'localhost'),
  })
  t.match(await closeOf(other), { code: CLOSE.ORIGIN_NOT_ALLOWED }, 'another name of the same host is not')
})

t.test('without a public origin, only the allow-list admits a browser’s socket', async (t) => {
  const stack = await startGatewayStack({ origins: ['https://bet.example'], publicOrigin: false })
  t.teardown(() => stack.close())
  const token = await stack.token('alice')
  const page = await openClient(stack.wsUrl, { token, origin: stack.gateway.url })
  t.match(
    await closeOf(page),
    { code: CLOSE.ORIGIN_NOT_ALLOWED },
    'the address it listens on is not an origin',
  )
  const listed = await openClient(stack.wsUrl, { token, origin: 'https://bet.example' })
  t.match(await listed.next(ofType('hello')), { userId: 'alice' })
  await listed.close()
})
