// The gateway's pure parts: views diff and apply back exactly (property), the token bucket and the
// table of buckets that outlive connections, the address key of connection attempts, the origin rule, token checks, and the frame schemas
// both ways.

import fc from 'fast-check'
import { exportJWK, generateKeyPair, SignJWT } from 'jose'
import t from 'tap'
import { createAuthenticator, originAllowed, signToken, tokenOf } from '../../gateway/auth.ts'
import { createBucketTable } from '../../gateway/bucket-table.ts'
import { applyDelta, diffViews } from '../../gateway/game-view.ts'
import { encodeFrame, type GameView, type MarketView, parseClientFrame } from '../../gateway/protocol.ts'
import { createTokenBucket } from '../../gateway/rate-limit.ts'
import { addressKeyOf } from '../../gateway/upgrade-limits.ts'

const SECRET = 'unit-test-secret-of-at-least-32-bytes'

const market: fc.Arbitrary<MarketView> = fc.record({
  marketId: fc.constantFrom('p1-winner', 'p1-ace', 'p2-winner', 'p2-ace', 'p3-winner'),
  name: fc.string({ maxLength: 8 }),
  selections: fc.constant([
    { id: 'home', name: 'home' },
    { id: 'away', name: 'away' },
  ]),
  status: fc.constantFrom('open', 'suspended', 'closed'),
  prices: fc.dictionary(fc.constantFrom('home', 'away'), fc.integer({ min: 1_001, max: 5_000 })),
  result: fc.oneof(
    fc.constant({ state: 'pending' as const }),
    fc.constant({ state: 'review' as const }),
    fc.constant({ state: 'agreed' as const, winners: ['home'] }),
  ),
  sinceMs: fc.nat(),
})
const view: fc.Arbitrary<GameView> = fc.record({
  gameId: fc.constant('match-1'),
  clock: fc.option(
    fc.record({ period: fc.nat(5), running: fc.boolean(), clockMs: fc.nat(), atMs: fc.nat() }),
    { nil: null },
  ),
  score: fc.dictionary(fc.constantFrom('home', 'away'), fc.nat(30)),
  markets: fc.uniqueArray(market, { selector: (m) => m.marketId, maxLength: 5 }),
})
const byId = (v: GameView) => ({
  ...v,
  markets: [...v.markets].sort((a, b) => a.marketId.localeCompare(b.marketId)),
})

t.test('a delta takes any view to the next one, and is null only when nothing changed', async (t) => {
  fc.assert(
    fc.property(view, view, (before, after) => {
      const delta = diffViews(before, after)
      if (delta === null) {
        t.same(byId(before), byId(after))
        return
      }
      t.same(byId(applyDelta(before, delta)), byId(after))
      // Deltas carry only what changed: an unchanged market never travels.
      for (const m of delta.markets ?? [])
        t.notSame(
          before.markets.find((b) => b.marketId === m.marketId),
          m,
        )
    }),
    { numRuns: 300 },
  )
  // Every view the gateway could send passes its own schema.
  fc.assert(
    fc.property(view, (v) => {
      encodeFrame({ type: 'snapshot', gameId: v.gameId, epoch: 'e', seq: 0, view: v })
    }),
    { numRuns: 100 },
  )
})

t.test('the token bucket allows the burst, then the rate, and says when to retry', async (t) => {
  const bucket = createTokenBucket(10, 3, 0)
  t.same([bucket.take(0), bucket.take(0), bucket.take(0)], [0, 0, 0], 'the burst')
  t.equal(bucket.take(0), 100, 'empty: one token in 100 ms at 10/s')
  t.equal(bucket.take(50), 50, 'half way there')
  t.equal(bucket.take(100), 0, 'a token arrived')
  t.equal(bucket.take(10_000), 0)
  t.equal(bucket.take(10_000), 0)
  t.equal(bucket.take(10_000), 0)
  t.ok(bucket.take(10_000) > 0, 'a long pause refills only up to the burst')
  t.throws(() => createTokenBucket(0, 1, 0), RangeError)
})

t.test('a bucket table keeps a bucket until it refilled, and holds at most its bound', async (t) => {
  const table = createBucketTable({ perSecond: 10, burst: 2, entriesMax: 3 })
  t.same([table.take('a', 0), table.take('a', 0), table.take('a', 0)], [0, 0, 100], "a's burst spent")
  t.same([table.take('b', 0), table.take('c', 0)], [0, 0], 'b and c take one token each')
  t.equal(table.size(), 3)
  // At 150 ms b and c are full again (at 100 ms); a is not (at 200 ms). A new key drops b and c.
  t.equal(table.take('d', 150), 0)
  t.equal(table.size(), 2, 'the refilled buckets were dropped, not the draining one')
  t.same([table.take('a', 150), table.take('a', 150)], [0, 50], "a's bucket was kept: 1.5 tokens, not 2")

  // When every bucket is still refilling, the least recently used one makes room.
  const lru = createBucketTable({ perSecond: 1, burst: 1, entriesMax: 2 })
  t.same([lru.take('x', 0), lru.take('y', 0), lru.take('x', 10)], [0, 0, 990])
  t.equal(lru.take('z', 20), 0, 'a new key, with x and y both draining')
  t.equal(lru.size(), 2, 'the bound holds')
  t.equal(lru.take('x', 30), 970, 'x, used more recently, was kept')
  t.equal(lru.take('y', 40), 0, 'y, used least recently, was forgotten')
  t.throws(() => createBucketTable({ perSecond: 1, burst: 1, entriesMax: 0 }), RangeError)
})

t.test('connection attempts are counted per IPv4 address, or per IPv6 /64 network', async (t) => {
  t.equal(addressKeyOf('203.0.113.7'), '203.0.113.7')
  t.equal(addressKeyOf('::ffff:203.0.113.7'), '203.0.113.7', 'an IPv4-mapped address is its IPv4 one')
  const network = '2001:db8:1:2::/64'
  t.equal(addressKeyOf('2001:db8:1:2::1'), network)
  t.equal(addressKeyOf('2001:0db8:0001:0002:ffff:eeee:dddd:cccc'), network, 'any host of the /64')
  t.equal(addressKeyOf('2001:db8:1:2:3::9%eth0'), network, 'a zone is dropped')
  t.equal(addressKeyOf('2001:db8::1'), '2001:db8:0:0::/64', 'a compressed network part')
  t.equal(addressKeyOf('::1'), '0:0:0:0::/64')
  t.not(addressKeyOf('2001:db8:1:3::1'), network, 'another /64 is another key')
})

t.test('the origin rule', async (t) => {
  const own = 'http://127.0.0.1:8080'
  t.ok(originAllowed('https://bet.example', ['https://bet.example'], false, own))
  t.notOk(originAllowed('https://evil.example', ['https://bet.example'], true, own))
  t.notOk(
    originAllowed('https://bet.example.evil.example', ['https://bet.example'], true, own),
    'exact match only',
  )
  t.ok(originAllowed(own, [], false, own), 'the public origin of the page the gateway serves')
  t.notOk(originAllowed(own, [], false, undefined), 'none configured: the allow-list alone decides')
  t.ok(originAllowed('https://anything.example', ['*'], false, own))
  t.ok(originAllowed(undefined, [], true, own), 'no Origin: not a browser, admitted by default')
  t.notOk(originAllowed(undefined, ['*'], false, own), 'unless configured otherwise')
  t.notOk(originAllowed('', [], false, own))
})

t.test('tokens: HS256, expiry required, JWKS keys, and where a token is read from', async (t) => {
  t.throws(() => createAuthenticator({ hs256Secret: 'short' }), /32 bytes/)
  t.throws(() => createAuthenticator({}), /exactly one/)
  const auth = createAuthenticator({ hs256Secret: SECRET, issuer: 'microbet' })
  const withIssuer = await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('alice')
    .setIssuer('microbet')
    .setExpirationTime('5m')
    .sign(new TextEncoder().encode(SECRET))
  t.match(await auth.verify(withIssuer), { userId: 'alice' })
  await t.rejects(auth.verify(await signToken(SECRET, 'alice', 60)), { code: 'UNAUTHORIZED' }, 'iss missing')
  const noExpiry = await new SignJWT({})
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject('alice')
    .setIssuer('microbet')
    .sign(new TextEncoder().encode(SECRET))
  await t.rejects(auth.verify(noExpiry), { code: 'UNAUTHORIZED', message: /exp/ }, 'exp is required')
  const none = `${Buffer.from('{"alg":"none"}').toString('base64url')}.${Buffer.from('{"sub":"alice","exp":9999999999}').toString('base64url')}.`
  await t.rejects(auth.verify(none), { code: 'UNAUTHORIZED' }, 'alg none is refused')
  await t.rejects(auth.verify('x'.repeat(5_000)), { code: 'UNAUTHORIZED', message: /too long/ })

  // Asymmetric keys from a JWKS URL, served here by a local HTTP server.
  const { publicKey, privateKey } = await generateKeyPair('ES256')
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256' }
  const { createServer } = await import('node:http')
  const server = createServer((_req, res) => res.end(JSON.stringify({ keys: [jwk] })))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const port = (server.address() as { port: number }).port
  const jwks = createAuthenticator({ jwksUrl: `http://127.0.0.1:${port}/jwks.json` })
  const signed = await new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setSubject('bob')
    .setExpirationTime('5m')
    .sign(privateKey)
  t.match(await jwks.verify(signed), { userId: 'bob' })
  await t.rejects(
    jwks.verify(await signToken(SECRET, 'bob', 60)),
    { code: 'UNAUTHORIZED' },
    'HS256 not accepted there',
  )

  t.equal(tokenOf({ authorization: 'Bearer abc' }, { access_token: 'def' }), 'abc', 'the header wins')
  t.equal(tokenOf({}, { access_token: 'def' }), 'def')
  t.equal(tokenOf({ authorization: 'Basic abc' }, {}), '')
})

t.test('client frames: valid ones pass, anything else says what is wrong', async (t) => {
  t.match(parseClientFrame('{"type":"ping"}'), { type: 'ping' })
  t.match(parseClientFrame('{"type":"subscribe","gameId":"g","resume":{"epoch":"e","seq":3}}'), {
    resume: { seq: 3 },
  })
  t.match(parseClientFrame('{"type":"subscribe","gameId":"g","resume":{"epoch":"e","seq":-1}}'), {
    problem: /seq/,
  })
  t.match(
    parseClientFrame(
      '{"type":"place","betId":"b-12345678","gameId":"g","marketId":"m","selectionId":"s","stakeCents":1,"odds":1001,"policy":"maybe"}',
    ),
    {
      problem: /policy/,
    },
  )
  t.match(parseClientFrame('{"__proto__":{"type":"ping"}}'), { problem: /type/ })
  t.throws(
    () => encodeFrame({ type: 'pong' } as never),
    /breaks the protocol/,
    'the gateway checks what it sends',
  )
})
