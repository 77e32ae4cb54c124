// A follower keeps delivering, in order and exactly once, when its consumer dies under it: here
// the server-side consumer is deleted mid-stream, as a nats-server crash deletes the ordered
// consumer it held. A follower that has handled everything the stream holds is left alone. A
// follower nudged while its consumer's server is stopped replaces the consumer at once. A follower
// whose consumer creations are all refused (as while the meta group has no leader) reads on by
// direct gets.

import {
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  StorageType,
} from '@nats-io/jetstream'
import { connect } from '@nats-io/transport-node'
import pino from 'pino'
import t, { type Test } from 'tap'
import { requestStepDown } from '../../../nodes/fabric/leader-spread.ts'
import { followStream, type StreamFollower } from '../../../nodes/fabric/stream-follower.ts'
import { DEFAULT_STREAM_LIMITS, ensureStream, ledgerStream } from '../../../nodes/fabric/streams.ts'
import { startNatsCluster } from '../../../scripts/nats-cluster.ts'
import { waitFor } from '../../helpers/wait.ts'

/**
 * `js` with its consumers.get passed through `open` (which may refuse, or wrap what the consumer's
 * consume() gives): the way a test makes consumers fail or fall silent on a real cluster.
 */
function withConsumers(
  js: JetStreamClient,
  open: (
    get: () => ReturnType<JetStreamClient['consumers']['get']>,
  ) => ReturnType<JetStreamClient['consumers']['get']>,
): JetStreamClient {
  return new Proxy(js, {
    get(target, property) {
      if (property === 'consumers')
        return {
          get: (...args: Parameters<typeof js.consumers.get>) => open(() => target.consumers.get(...args)),
        }
      const value = Reflect.get(target, property, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

/** Pass what each consumer's consume() gives through `wrap`. */
async function wrapConsume(
  opening: ReturnType<JetStreamClient['consumers']['get']>,
  wrap: (messages: ConsumerMessages) => ConsumerMessages,
) {
  const consumer = await opening
  const consume = consumer.consume.bind(consumer)
  consumer.consume = async (options) => wrap(await consume(options))
  return consumer
}

/** A cluster, and a ledger shard stream on it that `publish` fills with the numbers from-to. */
async function numberedStream(t: Test, shard: number, before?: (jsm: JetStreamManager) => Promise<unknown>) {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const nc = await cluster.connect()
  t.teardown(() => nc.close())
  const jsm = await jetstreamManager(nc)
  const config = ledgerStream('eu', shard, DEFAULT_STREAM_LIMITS)
  await before?.(jsm)
  await ensureStream(jsm, config, nc)
  const js = jetstream(nc)
  const subject = config.subjects?.[0] as string
  const publish = async (from: number, to: number) => {
    for (let i = from; i <= to; i++) await js.publish(subject, String(i))
  }
  return { jsm, js, config, publish }
}

/** A follower of the stream from its first message, through `js`, and the numbers it handled. */
async function numbersFollower(t: Test, js: JetStreamClient, stream: string, checkEveryMs: number) {
  const seen: number[] = []
  const follower = await followStream({
    js,
    stream,
    startSeq: 1,
    log: pino({ level: 'silent' }),
    stallCheckMs: checkEveryMs,
    verifyEveryMs: checkEveryMs,
    onMessage: (message) => seen.push(Number(message.string())),
  })
  t.teardown(() => follower.close())
  return { follower, seen }
}

t.test('a follower outlives its consumer', async (t) => {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const nc = await cluster.connect()
  t.teardown(() => nc.close())
  const jsm = await jetstreamManager(nc)
  await jsm.streams.add({
    name: 'FOLLOW',
    subjects: ['follow.>'],
    num_replicas: 3,
    storage: StorageType.File,
  })
  const js = jetstream(nc)
  for (let i = 1; i <= 5; i++) await js.publish('follow.x', String(i))
  const seen: number[] = []
  const follower = await followStream({
    js,
    stream: 'FOLLOW',
    startSeq: 2,
    log: pino({ level: 'silent' }),
    stallCheckMs: 200,
    onMessage: (message) => seen.push(Number(message.string())),
  })
  t.teardown(() => follower.close())
  await waitFor('the first messages', () => seen.length === 4)
  t.ok(follower.caughtUp())
  for await (const consumer of jsm.consumers.list('FOLLOW'))
    await jsm.consumers.delete('FOLLOW', consumer.name)
  for (let i = 6; i <= 10; i++) await js.publish('follow.x', String(i))
  await waitFor('the rest, through a new consumer', () => seen.length === 9, 15_000)
  t.same(seen, [2, 3, 4, 5, 6, 7, 8, 9, 10], 'in order, none twice, none lost')
  t.ok(follower.restarts() >= 1, `the consumer was replaced (${follower.restarts()} times)`)
  t.equal(follower.lastSeq(), 10)

  // Caught up and idle is not stalled: the checks compare with the stream's last sequence.
  const restarts = follower.restarts()
  await new Promise((resolve) => setTimeout(resolve, 1_500))
  t.equal(follower.restarts(), restarts, 'no consumer replaced while idle at the end of the stream')
})

t.test('a follower that starts past the end waits without replacing its consumer', async (t) => {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const nc = await cluster.connect()
  t.teardown(() => nc.close())
  const jsm = await jetstreamManager(nc)
  await jsm.streams.add({ name: 'AHEAD', subjects: ['ahead.>'], num_replicas: 3, storage: StorageType.File })
  const js = jetstream(nc)
  for (let i = 1; i <= 3; i++) await js.publish('ahead.x', String(i))
  const seen: number[] = []
  const follower = await followStream({
    js,
    stream: 'AHEAD',
    startSeq: 4,
    log: pino({ level: 'silent' }),
    stallCheckMs: 200,
    onMessage: (message) => seen.push(Number(message.string())),
  })
  t.teardown(() => follower.close())
  await new Promise((resolve) => setTimeout(resolve, 1_500))
  t.equal(follower.restarts(), 0, 'a snapshot taken at the end of the stream is not a stall')
  await js.publish('ahead.x', '4')
  await waitFor('the next message', () => seen.length === 1)
  t.same(seen, [4])
})

/**
 * A stream `name` on a fresh cluster holding `messages`, a follower of it that checks against the
 * stream every 100 ms, and `remake(messages)`: the stream deleted and made again with these, so
 * that its sequences name other messages than the follower handled.
 */
async function followedStream(t: Test, name: string, messages: readonly string[]) {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const nc = await cluster.connect()
  t.teardown(() => nc.close())
  const jsm = await jetstreamManager(nc)
  const subject = `${name.toLowerCase()}.x`
  const config = { name, subjects: [`${name.toLowerCase()}.>`], num_replicas: 3, storage: StorageType.File }
  const js = jetstream(nc)
  const fill = async (bodies: readonly string[]) => {
    for (const body of bodies) await js.publish(subject, body)
  }
  await jsm.streams.add(config)
  await fill(messages)
  const follower = await followStream({
    js,
    stream: name,
    startSeq: 1,
    log: pino({ level: 'silent' }),
    stallCheckMs: 200,
    verifyEveryMs: 100,
    onMessage: () => {},
  })
  t.teardown(() => follower.close())
  await waitFor('every message handled', () => follower.lastSeq() === messages.length)
  const remake = async (bodies: readonly string[]) => {
    await jsm.streams.delete(name)
    await jsm.streams.add(config)
    await fill(bodies)
  }
  return { follower, remake }
}

const numbered = (prefix: string) => [1, 2, 3, 4, 5].map((i) => `${prefix} ${i}`)

t.test('a follower finds out when a sequence it handled names another message in the stream', async (t) => {
  // The stream is deleted and made again with other messages under the same sequences, as a node
  // that read a deposed leader's log after a partition would find: the check against the stream
  // marks the follower diverged (before that, the same messages pass the check).
  const { follower, remake } = await followedStream(t, 'VERIFY', numbered('first'))
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(follower.diverged(), null, 'what it handled is what the stream holds')
  await remake(numbered('second'))
  await waitFor('the divergence found', () => follower.diverged() !== null)
  // The last message's check or an audit (the new stream may have another leader) finds it first.
  t.match(follower.diverged(), /message [1-5] is not the one this node handled/)
})

t.test('a replaced consumer starts an audit that finds a divergence behind the last message', async (t) => {
  // The stream is made again with other messages under sequences 1-5 and the same message at 6,
  // so the last message handled still matches; the consumer is replaced (the old stream is gone),
  // and the audit of what was handled lately finds sequence 1 changed.
  const { follower, remake } = await followedStream(t, 'AUDIT', [...numbered('first'), 'the same sixth'])
  await remake([...numbered('second'), 'the same sixth'])
  await waitFor('the divergence found', () => follower.diverged() !== null, 20_000)
  t.match(follower.diverged(), /message 1 is not the one/, 'found at the first sequence that differs')
})

t.test('a nudged follower whose consumer is on a stopped server starts another at once', async (t) => {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const [own, ...others] = cluster.processes
  // The follower talks to n1 only; its consumer must live on another server, which is stopped.
  const nc = await connect({ servers: own?.url, noAsyncTraces: true })
  t.teardown(() => nc.close())
  const jsm = await jetstreamManager(nc)
  await jsm.streams.add({ name: 'NUDGE', subjects: ['nudge.>'], num_replicas: 3, storage: StorageType.File })
  const js = jetstream(nc)
  for (let i = 1; i <= 3; i++) await js.publish('nudge.x', String(i))
  const seen: number[] = []
  let follower: StreamFollower | null = null
  let consumerServer: string | undefined
  // nats-server places the consumer on a replica at random: open until it is not on n1.
  for (
    let attempt = 0;
    attempt < 30 && (consumerServer === undefined || consumerServer === own?.name);
    attempt++
  ) {
    await follower?.close()
    seen.length = 0
    follower = await followStream({
      js,
      stream: 'NUDGE',
      startSeq: 1,
      log: pino({ level: 'silent' }),
      // Only a nudge can find the consumer gone within this test.
      stallCheckMs: 120_000,
      verifyEveryMs: 120_000,
      onMessage: (message) => seen.push(Number(message.string())),
    })
    await waitFor('the first messages', () => seen.length === 3)
    for await (const consumer of jsm.consumers.list('NUDGE')) consumerServer = consumer.cluster?.leader
  }
  t.teardown(() => follower?.close())
  const stopped = others.find((server) => server.name === consumerServer)
  t.ok(stopped, `the consumer is on ${consumerServer}, not on n1`)
  // The stream must keep a leader while that server is stopped.
  if ((await jsm.streams.info('NUDGE')).cluster?.leader === consumerServer) {
    await requestStepDown(nc, 'NUDGE')
    await waitFor('another leader', async () => {
      const leader = (await jsm.streams.info('NUDGE').catch(() => null))?.cluster?.leader
      return leader !== undefined && leader !== consumerServer
    })
  }
  process.kill(stopped?.pid as number, 'SIGSTOP')
  t.teardown(() => {
    if (stopped?.pid) process.kill(stopped.pid, 'SIGCONT')
  })
  await js.publish('nudge.x', '4')
  const nudgedAt = Date.now()
  const nudging = setInterval(() => follower?.nudge(), 100)
  t.teardown(() => clearInterval(nudging))
  // Without the nudge the consumer would be found gone only by the stall check, 2 minutes away. The
  // nudge also reads the message directly, which may well come first; the consumer is replaced all
  // the same. A new consumer may wait for a new meta leader, when the stopped server was it
  // (seconds on 2.9).
  await waitFor('the new message', () => seen.length === 4, 20_000)
  t.comment(`delivered ${Date.now() - nudgedAt} ms after the first nudge`)
  await waitFor('the consumer replaced', () => (follower?.restarts() ?? 0) >= 1, 20_000)
  await js.publish('nudge.x', '5')
  await waitFor('the next message', () => seen.length === 5, 20_000)
  t.same(seen, [1, 2, 3, 4, 5], 'in order, none twice')
  t.ok((follower?.restarts() ?? 0) >= 1, 'the consumer was replaced')
})

t.test('a follower reads on by direct gets while every consumer creation is refused', async (t) => {
  // While nats-server's meta group has no leader, it refuses every consumer creation ("JetStream
  // system temporarily unavailable") and the streams go on taking appends. Here a real cluster
  // serves the stream and its direct gets, and the client refuses consumer creations the same way
  // for as long as `refusing` is set.
  // A stream made before followers read by direct gets is brought to it by ensureStream (a leader
  // step-down included: 2.9.10 needs one to let the replicas answer them).
  const { jsm, js, config, publish } = await numberedStream(t, 0, (jsm) =>
    jsm.streams.add({ ...ledgerStream('eu', 0, DEFAULT_STREAM_LIMITS), allow_direct: false }),
  )
  t.equal(
    (await jsm.streams.info(config.name)).config.allow_direct,
    true,
    'an existing stream now allows them',
  )
  await publish(1, 5)

  let refusing = false
  let refused = 0
  /** The consumers' message iterators opened, to end them as a consumer lost with its server ends. */
  const opened: { stop(): void }[] = []
  const guarded = withConsumers(js, (get) => {
    if (refusing) {
      refused++
      return Promise.reject(new Error('JetStream system temporarily unavailable'))
    }
    return wrapConsume(get(), (messages) => {
      opened.push(messages)
      return messages
    })
  })
  const { follower, seen } = await numbersFollower(t, guarded, config.name, 200)
  await waitFor('the first messages', () => seen.length === 5)

  refusing = true
  for (const messages of opened) messages.stop()
  await waitFor('a consumer creation refused', () => refused > 0)
  // More than one round of direct gets asks for at once.
  await publish(6, 80)
  await waitFor('the new messages, by direct gets', () => seen.length === 80, 15_000)
  t.equal(follower.phase(), 'opening', `no consumer opened meanwhile (${refused} creations refused)`)
  t.same(
    seen,
    Array.from({ length: 80 }, (_, i) => i + 1),
    'in order, none twice, none lost',
  )
  t.equal(follower.lastSeq(), 80)

  refusing = false
  await waitFor('a consumer open again', () => follower.phase() === 'consuming', 15_000)
  await publish(81, 85)
  await waitFor('the rest, through a consumer again', () => seen.length === 85, 15_000)
  t.same(seen.slice(80), [81, 82, 83, 84, 85])
  await waitFor('the audit of what the direct gets delivered', () => !follower.auditing(), 15_000)
  t.equal(follower.diverged(), null, 'and it is what the stream holds')
})

t.test('a nudged follower whose consumer delivers nothing reads the awaited message directly', async (t) => {
  // A consumer on a server cut off stays open and silent: its server answers nothing, and nothing
  // tells the client it is gone until a check gives up on it. Here the consumer's delivery is held
  // by the client while the consumer itself stays healthy on the server, so that only reading on
  // by direct gets can deliver what the node awaits.
  const { js, config, publish } = await numberedStream(t, 1)
  await publish(1, 3)
  let muted = false
  const muting = withConsumers(js, (get) =>
    wrapConsume(get(), (messages) => {
      const iterator = messages[Symbol.asyncIterator]()
      /** Reads held while muted: closing ends them, as it ends a real consumer's. */
      const held: ((end: IteratorResult<never>) => void)[] = []
      return new Proxy(messages, {
        get(inner, name) {
          if (name === Symbol.asyncIterator)
            return () => ({
              next: () => (muted ? new Promise((resolve) => held.push(resolve)) : iterator.next()),
            })
          if (name === 'close')
            return async () => {
              inner.stop()
              for (const end of held) end({ done: true, value: undefined as never })
            }
          const value = Reflect.get(inner, name, inner)
          return typeof value === 'function' ? value.bind(inner) : value
        },
      })
    }),
  )
  // Only the nudge can move things within this test.
  const { follower, seen } = await numbersFollower(t, muting, config.name, 120_000)
  await waitFor('the first messages', () => seen.length === 3)
  muted = true
  // The read already waiting takes the next message; the one after it is held.
  await publish(4, 4)
  await waitFor('the message the waiting read takes', () => seen.length === 4)
  await publish(5, 5)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.same(seen, [1, 2, 3, 4], 'the held consumer delivers nothing more')
  follower.nudge()
  await waitFor('the awaited messages, read directly', () => seen.length === 5, 5_000)
  t.same(seen, [1, 2, 3, 4, 5], 'in order, none twice')
  t.equal(follower.restarts(), 0, 'the consumer, which answers its checks, was not replaced')
})
