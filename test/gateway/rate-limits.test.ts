// Proves that the gateway's rate limits hold across connections, with real sockets against a real
// gateway on a real cluster and the limits' clock injected (frozen, then moved by hand; nothing
// sleeps). A user's frame budget is not renewed by closing and reopening a socket: the user's
// bucket outlives their connections until it has refilled. And connection attempts are limited
// too, per user and per client address, the address's before the token is even verified.

import t from 'tap'
import { CLOSE } from '../../gateway/protocol.ts'
import {
  closeOf,
  type GatewayStack,
  ofType,
  openClient,
  startGatewayStack,
  type TestClient,
} from '../helpers/gateway-stack.ts'
import { waitFor } from '../helpers/wait.ts'

/** Send `count` pings and count how many were answered with a pong (the rest: RATE_LIMITED). */
async function pingsServed(client: TestClient, count: number, tag: string): Promise<number> {
  for (let i = 0; i < count; i++) client.send({ type: 'ping', ref: `${tag}-${i}` })
  const answers = () =>
    client.frames.filter((f) => (f.type === 'pong' || f.type === 'error') && f.ref?.startsWith(`${tag}-`))
  await waitFor(`${count} answers to ${tag}`, () => answers().length >= count)
  return answers().filter((f) => f.type === 'pong').length
}

t.test('reconnecting does not renew a user’s frame budget', async (t) => {
  // The attack: connect, spend the burst, close, connect again. Each connection has a fresh bucket
  // of its own (20 here), but the user's (10) is kept while it is not full again.
  let clockMs = Date.now()
  const stack = await startGatewayStack({
    limits: { messagesPerSecond: 20, messagesBurst: 20, userMessagesPerSecond: 10, userMessagesBurst: 10 },
    now: () => clockMs,
  })
  t.teardown(() => stack.close())
  const token = await stack.token('mallory')
  const served: number[] = []
  for (let cycle = 0; cycle < 3; cycle++) {
    const client = await openClient(stack.wsUrl, { token })
    await client.next(ofType('hello'))
    served.push(await pingsServed(client, 10, `cycle-${cycle}`))
    await client.close()
    await waitFor('the gateway saw the close', () => stack.gateway.gateway.connections() === 0)
  }
  t.same(served, [10, 0, 0], 'the burst is served once, not once per connection')
  clockMs += 1_000
  const later = await openClient(stack.wsUrl, { token })
  t.teardown(() => later.close())
  await later.next(ofType('hello'))
  t.equal(await pingsServed(later, 10, 'later'), 10, 'a second later the bucket has refilled')
  t.same(later.invalid, [])
})

/** Open a socket, wait for its hello, close it, and wait until the gateway has let it go. */
async function connectOnce(stack: GatewayStack, token: string): Promise<void> {
  const client = await openClient(stack.wsUrl, { token })
  await client.next(ofType('hello'))
  await client.close()
  await waitFor('the gateway saw the close', () => stack.gateway.gateway.connections() === 0)
}

t.test('connection attempts are limited per user', async (t) => {
  let clockMs = Date.now()
  const stack = await startGatewayStack({
    limits: { userUpgradesPerSecond: 1, userUpgradesBurst: 3 },
    now: () => clockMs,
  })
  t.teardown(() => stack.close())
  const token = await stack.token('mallory')
  for (let i = 0; i < 3; i++) await connectOnce(stack, token)
  const fourth = await openClient(stack.wsUrl, { token })
  t.match(
    await closeOf(fourth),
    { code: CLOSE.TOO_MANY_UPGRADES, reason: /retry in \d+ ms/ },
    'past the burst an attempt is closed with its documented code, saying when to retry',
  )
  await connectOnce(stack, await stack.token('alice'))
  t.pass('another user from the same address still gets in')
  clockMs += 1_000
  await connectOnce(stack, token)
  t.pass('a second later the user may connect once more')
  t.equal(await stack.gateway.gateway.closedWith(CLOSE.TOO_MANY_UPGRADES), 1, 'counted by close code')
})

t.test('connection attempts are limited per address, before the token is read', async (t) => {
  let clockMs = Date.now()
  const stack = await startGatewayStack({
    limits: { ipUpgradesPerSecond: 1, ipUpgradesBurst: 3 },
    now: () => clockMs,
  })
  t.teardown(() => stack.close())
  for (let i = 0; i < 3; i++) await connectOnce(stack, await stack.token(`user-${i}`))
  const garbage = await openClient(stack.wsUrl, { token: 'not.a.jwt' })
  t.match(
    await closeOf(garbage),
    { code: CLOSE.TOO_MANY_UPGRADES },
    'a bad token past the address’s burst is refused for the rate, so its signature was never checked',
  )
  const fresh = await openClient(stack.wsUrl, { token: await stack.token('newcomer') })
  t.match(await closeOf(fresh), { code: CLOSE.TOO_MANY_UPGRADES }, 'a new user from that address too')
  clockMs += 1_000
  const unsigned = await openClient(stack.wsUrl, { token: 'not.a.jwt' })
  t.match(await closeOf(unsigned), { code: CLOSE.UNAUTHORIZED }, 'a second later the token is read again')
})
