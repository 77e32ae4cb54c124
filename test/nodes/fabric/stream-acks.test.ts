// Proves that appends whose acknowledgements are matched on one subscription (stream-acks.ts)
// answer as the client library's JetStream publish does, on a real nats-server: the stream's
// sequence, a repeated message id answered as a duplicate with the original sequence, headers
// stored with the message, "no responders" at once for a subject no stream takes, the stream's
// own refusal passed on, a deadline for an answer that never comes (a late one changes nothing),
// every waiting append failed when the connection closes, and a hundred appends in flight at once
// each answered with its own sequence. Bad answers are parsed into errors, never into acks.

import { jetstreamManager } from '@nats-io/jetstream'
import t from 'tap'
import { createStreamAcks, parseStreamAck } from '../../../nodes/fabric/stream-acks.ts'
import { startNatsCluster } from '../../../scripts/nats-cluster.ts'

const STREAM = 'ACKS'

t.test('appends are acknowledged as the stream stored them', async (t) => {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const nc = await cluster.connect()
  const jsm = await jetstreamManager(nc)
  await jsm.streams.add({ name: STREAM, subjects: ['acks.>'], max_msg_size: 1024 })
  const acks = createStreamAcks(nc)
  // The new stream's subjects reach every server's routes a moment after its creation; until then
  // an append through another server than its leader meets no responders and stores nothing.
  const appendFirst = () =>
    acks
      .append('acks.a', 'one', { msgId: 'm-1', headers: { 'Fabric-Writer': 'w1' } })
      .catch((error: Error) => error)
  const deadline = Date.now() + 5_000
  let first = await appendFirst()
  while (first instanceof Error && /no responders/.test(first.message) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    first = await appendFirst()
  }
  t.same(first, { stream: STREAM, seq: 1, duplicate: false }, 'the first append is sequence 1')
  const again = await acks.append('acks.a', 'one again', { msgId: 'm-1' })
  t.same(again, { stream: STREAM, seq: 1, duplicate: true }, 'a repeated id is the original sequence')
  const stored = await jsm.streams.getMessage(STREAM, { seq: 1 })
  t.equal(stored?.string(), 'one', 'the stream kept the first body')
  t.equal(stored?.header.get('Fabric-Writer'), 'w1', 'and its headers')
  t.equal(stored?.header.get('Nats-Msg-Id'), 'm-1', 'and its message id')

  const many = await Promise.all(
    Array.from({ length: 100 }, (_, i) => acks.append('acks.b', `n${i}`, { msgId: `b-${i}` })),
  )
  t.same(
    many.map((ack) => ack.seq).sort((a, b) => a - b),
    Array.from({ length: 100 }, (_, i) => i + 2),
    'a hundred appends in flight each get a sequence of their own',
  )
  for (const [i, ack] of many.entries()) {
    const message = await jsm.streams.getMessage(STREAM, { seq: ack.seq })
    if (message?.string() !== `n${i}`) t.fail(`append ${i} answered with another's sequence ${ack.seq}`)
  }
  t.equal(acks.pending(), 0, 'nothing waits once all are answered')

  // Its deadline would fail it as a timeout: "no responders" is the server's answer, not the clock's.
  await t.rejects(
    acks.append('nowhere.a', 'x', { msgId: 'n-1', timeoutMs: 60_000 }),
    /no responders/,
    "a subject no stream takes fails with the server's answer, not at its deadline",
  )

  await t.rejects(
    acks.append('acks.c', 'x'.repeat(2_000), { msgId: 'big' }),
    /stream refused the append: .*(code 400|err_code)/,
    "the stream's refusal (a message over its size limit) is passed on",
  )
  await nc.close()
})

t.test('an answer that never comes fails at its deadline; closing fails what waits', async (t) => {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const nc = await cluster.connect()
  // A plain subscriber takes the subject and never answers, so no "no responders" comes either. It
  // is on the appending connection itself: interest in another server would reach this one's only
  // once the cluster's routes carried it.
  const held: string[] = []
  nc.subscribe('quiet.>', {
    callback: (_error, msg) => {
      if (msg.reply) held.push(msg.reply)
    },
  })
  await nc.flush()
  const acks = createStreamAcks(nc)

  await t.rejects(acks.append('quiet.a', 'x', { timeoutMs: 200 }), /did not acknowledge within 200 ms/)
  t.equal(acks.pending(), 0, 'the timed-out append no longer waits')
  t.equal(held.length, 1, 'the silent subscriber had it')
  // Its answer, late, finds no one waiting.
  nc.publish(held[0] as string, JSON.stringify({ stream: 'S', seq: 7 }))
  await nc.flush()

  const waiting = acks.append('quiet.b', 'y', { timeoutMs: 10_000 })
  await nc.flush()
  t.equal(acks.pending(), 1)
  await nc.close()
  await t.rejects(waiting, /connection closed/, 'closing the connection fails the waiting append')
  await t.rejects(acks.append('quiet.c', 'z'), /connection closed/, 'and any later one')
})

t.test('answers that are not acknowledgements are errors', async (t) => {
  const reply = (text: string, code?: number) => ({
    data: new TextEncoder().encode(text),
    headers: code === undefined ? undefined : ({ code } as never),
    string: () => text,
  })
  t.match(String(parseStreamAck(reply('', 503))), /no responders/)
  t.match(String(parseStreamAck(reply('not json'))), /not JSON/)
  t.match(String(parseStreamAck(reply('null'))), /not a stream acknowledgement/)
  t.match(String(parseStreamAck(reply('{"stream":"S"}'))), /no stream or sequence/)
  t.match(String(parseStreamAck(reply('{"stream":"S","seq":0}'))), /no stream or sequence/)
  t.match(String(parseStreamAck(reply('{"stream":"","seq":3}'))), /no stream or sequence/)
  t.match(
    String(parseStreamAck(reply('{"error":{"code":503,"err_code":10077,"description":"no leader"}}'))),
    /stream refused the append: no leader \(code 503, err_code 10077\)/,
  )
  t.same(parseStreamAck(reply('{"stream":"S","seq":3,"duplicate":true}')), {
    stream: 'S',
    seq: 3,
    duplicate: true,
  })
  t.same(parseStreamAck(reply('{"stream":"S","seq":4,"duplicate":"yes"}')), {
    stream: 'S',
    seq: 4,
    duplicate: false,
  })
})
