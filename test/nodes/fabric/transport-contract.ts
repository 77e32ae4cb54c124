/**
 * The transport contract's conformance suite (nodes/fabric/transport.ts): what replica sync and the
 * ledger rely on, checked the same way against every implementation. transport.test.ts runs it on
 * a real NATS cluster and in memory.
 */

import pino from 'pino'
import type { Test } from 'tap'
import type { StreamMessage } from '../../../nodes/fabric/stream-follower.ts'
import { names } from '../../../nodes/fabric/streams.ts'
import type { FabricTransport } from '../../../nodes/fabric/transport.ts'
import { waitFor } from '../../helpers/wait.ts'

export const CONTRACT_REGION = 'eu'
/** The ledger shard whose stream the contract appends to and follows (the region has more). */
const SHARD = 1
const log = pino({ level: 'silent' })
const decoder = new TextDecoder()

/** Two transports of one fabric (two nodes), with the region's streams in place. */
export type TransportPair = () => Promise<{ a: FabricTransport; b: FabricTransport; close(): Promise<void> }>

export function transportContract(t: Test, name: string, open: TransportPair): void {
  const region = CONTRACT_REGION
  const subject = (n: number, shard = SHARD) => names.ledgerSubject(region, shard, `user-${n}`)

  t.test(`${name}: appends are stored once per message id, in order, with their headers`, async (t) => {
    const { a, b, close } = await open()
    t.teardown(close)
    const first = await a.append(subject(1), '{"n":1}', { msgId: 'm-1', headers: { 'Fabric-Writer': 'w' } })
    const second = await b.append(subject(2), '{"n":2}', { msgId: 'm-2' })
    t.equal(first.duplicate, false)
    t.ok(second.seq > first.seq, 'sequences grow')
    const again = await b.append(subject(1), '{"n":"changed"}', { msgId: 'm-1' })
    t.same(again, { seq: first.seq, duplicate: true }, 'a repeated id gets the original sequence')
    // Another shard's stream holds this one: its sequences are its own, and no follower of this
    // shard's stream sees it.
    const elsewhere = await a.append(subject(9, SHARD + 1), '{"n":9}', { msgId: 'm-9' })
    t.equal(elsewhere.seq, 1, "another shard's stream counts its own sequences")
    const seen: StreamMessage[] = []
    const follower = await b.follow({
      stream: names.ledgerStream(region, SHARD),
      startSeq: first.seq,
      log,
      onMessage: (message) => seen.push(message),
    })
    t.teardown(() => follower.close())
    await waitFor('both messages', () => seen.length >= 2 && follower.caughtUp())
    t.same(
      seen.map((m) => [m.seq, m.subject, decoder.decode(m.data)]),
      [
        [first.seq, subject(1), '{"n":1}'],
        [second.seq, subject(2), '{"n":2}'],
      ],
    )
    t.equal(seen[0]?.headers?.get('Fabric-Writer'), 'w', 'headers travel')
    t.same(seen[1]?.json(), { n: 2 })
    const third = await a.append(subject(3), '{"n":3}', { msgId: 'm-3' })
    await waitFor('a live message', () => seen.length === 3)
    t.equal(seen[2]?.seq, third.seq, 'then live ones, in order')
    t.equal(follower.lastSeq(), third.seq)
  })

  t.test(`${name}: a follower from a later sequence skips what came before`, async (t) => {
    const { a, close } = await open()
    t.teardown(close)
    const seqs: number[] = []
    for (let n = 1; n <= 5; n++)
      seqs.push((await a.append(subject(n), `{"n":${n}}`, { msgId: `k-${n}` })).seq)
    const seen: number[] = []
    const follower = await a.follow({
      stream: names.ledgerStream(region, SHARD),
      startSeq: seqs[3] as number,
      log,
      onMessage: (message) => seen.push(message.seq),
    })
    t.teardown(() => follower.close())
    await waitFor('caught up', () => follower.caughtUp())
    t.same(seen, seqs.slice(3))
  })

  t.test(`${name}: an append no stream holds is refused`, async (t) => {
    const { a, close } = await open()
    t.teardown(close)
    await t.rejects(a.append('nowhere.at.all', '{}', { msgId: 'x-1', timeoutMs: 500 }))
  })

  t.test(`${name}: core messages reach subscribers of matching subjects until they stop`, async (t) => {
    const { a, b, close } = await open()
    t.teardown(close)
    const heard: string[] = []
    const stop = b.subscribe(`probe.${region}.game.*`, (s, data) =>
      heard.push(`${s}:${decoder.decode(data)}`),
    )
    await waitFor('the subscription is in place', async () => {
      a.publish(`probe.${region}.game.probe`, 'ping')
      return heard.length > 0
    })
    heard.length = 0
    a.publish(`probe.${region}.game.g1`, 'one')
    a.publish('probe.other.game.g1', 'not for us')
    await waitFor('the message', () => heard.includes(`${`probe.${region}.game.g1`}:one`))
    stop()
    a.publish(`probe.${region}.game.g2`, 'two')
    a.publish(`probe.${region}.game.g1`, 'three')
    await new Promise((resolve) => setTimeout(resolve, 100))
    t.notOk(
      heard.some((line) => line.endsWith(':two') || line.endsWith(':three')),
      'nothing after stop',
    )
    t.notOk(
      heard.some((line) => line.includes('not for us')),
      'nothing of other subjects',
    )
  })

  t.test(`${name}: a write at a revision is refused once the key has moved on`, async (t) => {
    const { a, b, close } = await open()
    t.teardown(close)
    t.equal(await a.snapshots.entry('ceiling.w'), null, 'no entry yet')
    const first = await a.snapshots.update('ceiling.w', '100', 0)
    t.ok(first !== null && first > 0, 'revision 0 creates the key')
    t.equal(await b.snapshots.update('ceiling.w', '50', 0), null, 'a second create is refused')
    const second = await b.snapshots.update('ceiling.w', '200', first as number)
    t.ok(second !== null && second > (first as number), 'a write at the current revision goes')
    t.equal(
      await a.snapshots.update('ceiling.w', '150', first as number),
      null,
      'a late one at the old revision is refused',
    )
    const entry = await a.snapshots.entry('ceiling.w')
    t.equal(decoder.decode(entry?.value ?? new Uint8Array()), '200', 'the newer value stands')
    t.equal(entry?.revision, second)
  })

  t.test(`${name}: the snapshot store keeps the last value of each key`, async (t) => {
    const { a, b, close } = await open()
    t.teardown(close)
    t.equal(await a.snapshots.get('game.none'), null)
    await a.snapshots.put('game.g1', 'first')
    await b.snapshots.put('game.g1', new TextEncoder().encode('second'))
    t.equal(decoder.decode((await a.snapshots.get('game.g1')) ?? new Uint8Array()), 'second')
    t.equal(
      await a.snapshots.create('game.g1', new TextEncoder().encode('third')),
      false,
      'no create over a value',
    )
    t.equal(decoder.decode((await a.snapshots.get('game.g1')) ?? new Uint8Array()), 'second')
    t.equal(
      await b.snapshots.create('game.g2', new TextEncoder().encode('new')),
      true,
      'a create of a new key',
    )
    t.equal(decoder.decode((await a.snapshots.get('game.g2')) ?? new Uint8Array()), 'new')
    await b.snapshots.delete('game.g1')
    t.equal(await a.snapshots.get('game.g1'), null, 'a deleted key reads as none')
    t.equal(
      await a.snapshots.create('game.g1', new TextEncoder().encode('again')),
      true,
      'and may be created again',
    )
  })

  t.test(
    `${name}: a purge removes one subject's messages below a sequence, and followers pass over them`,
    async (t) => {
      const { a, b, close } = await open()
      t.teardown(close)
      const gone = names.gameSubject(region, 'gone')
      const kept = names.gameSubject(region, 'kept')
      // gone, gone, kept, gone, kept, gone (the marker), kept: interleaved, as games' updates are.
      const order = [gone, gone, kept, gone, kept, gone, kept]
      const seqs: number[] = []
      for (const [i, on] of order.entries())
        seqs.push((await a.append(on, `{"i":${i}}`, { msgId: `purge-${i}` })).seq)
      const marker = seqs[5] as number
      const stream = names.fabricStream(region)
      t.equal(await b.purge(stream, gone, marker), 3, 'the three messages of the subject below the marker')
      t.equal(await a.purge(stream, gone, marker), 0, 'a repeated purge removes nothing more')
      const seen: StreamMessage[] = []
      const follower = await b.follow({
        stream,
        filterSubject: names.allGamesSubject(region),
        startSeq: 1,
        log,
        onMessage: (message) => seen.push(message),
      })
      t.teardown(() => follower.close())
      await waitFor('every message left', () => seen.length >= 4 && follower.caughtUp())
      t.same(
        seen.map((message) => [message.seq, message.subject]),
        [2, 4, 5, 6].map((i) => [seqs[i], order[i]]),
        'the others, and the marker, in order',
      )
      t.equal(follower.holes(), 0, 'the purged sequences are not holes')
      const later = await a.append(gone, '{"i":"later"}', { msgId: 'purge-later' })
      await waitFor('a live message after them', () => seen.length === 5)
      t.equal(seen[4]?.seq, later.seq)
      t.same(
        new TextDecoder().decode((await b.messageAt(stream, seqs[4] as number)) ?? new Uint8Array()),
        '{"i":4}',
        'a message asked for by its sequence',
      )
      t.equal(await b.messageAt(stream, seqs[0] as number), null, 'none where a purge removed it')
      t.equal(await b.messageAt(stream, later.seq + 1), null, 'none past the last')
    },
  )
}
