// Proves what an upgrade must carry to be admitted, with real sockets against a real gateway on a
// real cluster. A token signed with the right key but whose claims are not of their types (a
// numeric `sub` once passed the check and then broke the hello frame: 1006) is refused with the
// documented 4001.

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
