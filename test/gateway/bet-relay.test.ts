// The bet relay keeps each bet's statuses in order and once each, whatever order the fabric
// delivers them in: here a responder on a real cluster announces the settlement and the final
// verdict (twice each, as several nodes do) before it replies with the provisional one. And the
// statuses lost on the way are looked up, a final steadily for a while and a settlement less and
// less often: there the relay's clock and sweep
// timer are the test's, moved by hand, so the times it asks at are exact and nothing sleeps. And a
// placement refused for reusing a bet id with another body is told which bet stands, whose
// statuses still come. And hedging: with one of two announced API nodes silent (paused), every bet
// is answered by the other after the hedge delay, once; a first answer that comes after all, late,
// is not passed on again; and the silent node is tried last while it is a suspect.

import { setTimeout as delay } from 'node:timers/promises'
import type { Msg, NatsConnection } from '@nats-io/transport-node'
import pino from 'pino'
import t, { type Test } from 'tap'
import { createApiDirectory } from '../../gateway/api-directory.ts'
import { createBetRelay, RECOVERY_STEADY_LOOKUPS, RECOVERY_SWEEP_MS } from '../../gateway/bets.ts'
import { type BetFrame, type ErrorFrame, isServerFrame, type PlaceFrame } from '../../gateway/protocol.ts'
import type { Timers } from '../../nodes/fabric/timers.ts'
import { newDirectId } from '../../protocol/api-nodes.ts'
import { termsOf } from '../../protocol/bets.ts'
import {
  directSubject,
  lookupSubject,
  placeSubject,
  statusSubject,
  userRouting,
} from '../../protocol/subjects.ts'
import { startNatsCluster } from '../../scripts/nats-cluster.ts'
import { waitFor } from '../helpers/wait.ts'

const place = (betId: string): PlaceFrame => ({
  type: 'place',
  ref: betId,
  betId,
  gameId: 'match-1',
  marketId: 'p1-winner',
  selectionId: 'home',
  stakeCents: 100,
  odds: 1_500,
  policy: 'any',
})
/**
 * The relay routes by a 4-shard region; the fake API node answers on alice's shard alone, so a
 * request that reached it went to her shard.
 */
const SHARDS = 4
const route = userRouting(SHARDS)
/** A relay that never looks statuses up by itself in a test's time: what it shows came as events. */
const relayWithoutRecovery = (nc: NatsConnection) =>
  createBetRelay(nc, { ...LIMITS, statusRecoverAfterMs: 600_000 }, pino({ level: 'silent' }), route)
const PLACE_ALICE = placeSubject('alice', SHARDS)
const LOOKUP_ALICE = lookupSubject('alice', SHARDS)
const verdict = { accepted: true, reason: null, odds: 1_500, gameClockMs: 10 }
const LIMITS = {
  placementsInFlightMax: 10,
  placeTimeoutMs: 500,
  hedgeAfterMs: 100,
  answerWithinMs: 500,
  trackedBetsPerUserMax: 100,
  statusRecoverAfterMs: 200,
  lookupsInFlightMax: 4,
}
const provisional = (betId: string) => ({
  ok: true,
  betId,
  status: 'provisional',
  stamp: 's',
  verdict,
  final: false,
  balanceCents: 900,
  ledgerSeq: 1,
})

/** A fresh cluster with two connections: one plays the API nodes, one the gateway. */
async function twoConnections(t: Test) {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const api = await cluster.connect()
  const gateway = await cluster.connect()
  t.teardown(async () => {
    await api.close()
    await gateway.close()
  })
  return { api, gateway }
}

t.test('statuses in order and once each, however they arrive', async (t) => {
  const { api, gateway } = await twoConnections(t)
  api.subscribe(PLACE_ALICE, {
    callback: (_error, message) => void answer(message),
  })
  async function answer(message: Msg): Promise<void> {
    const { betId, userId } = message.json<{ betId: string; userId: string }>()
    if (betId.startsWith('silent')) return
    if (betId.startsWith('unacked')) {
      // The append was not acknowledged in time, yet the stream stored it: its verdict follows.
      message.respond(
        JSON.stringify({
          ok: false,
          error: { code: 'LEDGER_UNAVAILABLE', message: 'the ledger did not acknowledge the bet' },
        }),
      )
      await delay(50)
      api.publish(
        statusSubject(userId),
        JSON.stringify({ betId, status: 'final', stamp: 's', verdict, finalAtMs: 1, balanceCents: 900 }),
      )
      return
    }
    const status = statusSubject(userId)
    const settled = { betId, status: 'settled', outcome: 'won', payoutCents: 150, balanceCents: 1_050 }
    const final = { betId, status: 'final', stamp: 's', verdict, finalAtMs: 1, balanceCents: 900 }
    for (const event of [settled, final, settled, final]) api.publish(status, JSON.stringify(event))
    await api.flush()
    await delay(50)
    message.respond(
      JSON.stringify({
        ok: true,
        betId,
        status: 'provisional',
        stamp: 's',
        verdict,
        final: false,
        balanceCents: 900,
        ledgerSeq: 1,
      }),
    )
  }
  await api.flush()
  const relay = relayWithoutRecovery(gateway)
  t.teardown(() => relay.close())
  const seen: (BetFrame | ErrorFrame)[] = []
  const stop = relay.watch('alice', (frame) => seen.push(frame))
  t.teardown(stop)
  await gateway.flush()
  relay.place('alice', place('bet-000000001'))
  await waitFor('settled', () => seen.some((f) => f.type === 'bet' && f.status === 'settled'))
  await delay(100)
  t.same(
    seen.map((f) => (f.type === 'bet' ? f.status : f.code)),
    ['provisional', 'final', 'settled'],
    'held until their turn, duplicates dropped',
  )
  t.match(seen[2], { balanceCents: 1_050, ref: 'bet-000000001' })

  // No answer in time: the client is told the bet may stand, and its later statuses still come.
  seen.length = 0
  relay.place('alice', place('silent-00000001'))
  await waitFor('the timeout', () => seen.length === 1)
  t.match(seen[0], { type: 'error', code: 'BET_UNAVAILABLE', ref: 'silent-00000001' })
  api.publish(
    statusSubject('alice'),
    JSON.stringify({
      betId: 'silent-00000001',
      status: 'final',
      stamp: 's',
      verdict,
      finalAtMs: 1,
      balanceCents: 900,
    }),
  )
  await waitFor('the final', () => seen.length === 2)
  t.match(seen[1], { type: 'bet', status: 'final', betId: 'silent-00000001' })
  t.equal(relay.inFlight(), 0)

  // An unacknowledged append may still be stored: not `refused` (final), and its verdict follows.
  seen.length = 0
  relay.place('alice', place('unacked-00000001'))
  await waitFor('the final after the unacknowledged append', () => seen.length === 2)
  t.match(seen[0], {
    type: 'error',
    code: 'BET_UNAVAILABLE',
    ref: 'unacked-00000001',
    message: /may still stand/,
  })
  t.match(seen[1], { type: 'bet', status: 'final', betId: 'unacked-00000001' })
})

/**
 * A clock the test moves by hand: the relay's `now()` and its timers. Moving it fires each interval
 * as many times as it falls due, and each timeout once, at the time it falls due.
 */
function manualClock() {
  let nowMs = 0
  const intervals = new Set<{ fn: () => void; everyMs: number; nextMs: number }>()
  const timers: Timers = {
    setTimeout(fn, ms) {
      const timeout = {
        fn: () => {
          intervals.delete(timeout)
          fn()
        },
        everyMs: Number.POSITIVE_INFINITY,
        nextMs: nowMs + ms,
      }
      intervals.add(timeout)
      return () => {
        intervals.delete(timeout)
      }
    },
    setInterval(fn, everyMs) {
      const interval = { fn, everyMs, nextMs: nowMs + everyMs }
      intervals.add(interval)
      return () => {
        intervals.delete(interval)
      }
    },
  }
  const advance = (ms: number) => {
    const untilMs = nowMs + ms
    for (;;) {
      const next = [...intervals].sort((a, b) => a.nextMs - b.nextMs)[0]
      if (next === undefined || next.nextMs > untilMs) break
      nowMs = next.nextMs
      next.nextMs += next.everyMs
      next.fn()
    }
    nowMs = untilMs
  }
  return { now: () => nowMs, timers, advance }
}

t.test('statuses lost on the way are looked up, and asked about less and less often', async (t) => {
  // The responder answers placements, but of bet `lost-final` only the settlement is announced
  // (its final verdict was lost), and of `lost-all` nothing: both are looked up on bets.lookup.
  // The lookup knows both verdicts; `lost-all` is not settled yet, so it is asked about again,
  // each time after twice as long. The relay's clock is moved by hand, one recovery sweep at a
  // time, and each lookup is answered before the next sweep: the times asked are exact.
  const { api, gateway } = await twoConnections(t)
  const clock = manualClock()
  const final = (betId: string) => ({
    betId,
    status: 'final',
    stamp: 's',
    verdict,
    finalAtMs: 1,
    balanceCents: 900,
  })
  const settled = {
    betId: 'lost-final',
    status: 'settled',
    outcome: 'won',
    payoutCents: 150,
    balanceCents: 1_050,
  }
  const lookups: { userId: string; betIds: string[]; atMs: number }[] = []
  api.subscribe(PLACE_ALICE, {
    callback: (_error, message) => {
      const { betId, userId } = message.json<{ betId: string; userId: string }>()
      // Announced before the reply, on the same connection: by the provisional it has come (held).
      if (betId === 'lost-final') api.publish(statusSubject(userId), JSON.stringify(settled))
      message.respond(JSON.stringify(provisional(betId)))
    },
  })
  api.subscribe(LOOKUP_ALICE, {
    callback: (_error, message) => {
      const request = message.json<{ userId: string; betIds: string[] }>()
      lookups.push({ ...request, atMs: clock.now() })
      const statuses = request.betIds.flatMap((betId) =>
        betId === 'lost-final' ? [final(betId), settled] : [final(betId)],
      )
      message.respond(JSON.stringify({ ok: true, data: { statuses } }))
    },
  })
  await api.flush()
  const relay = createBetRelay(gateway, LIMITS, pino({ level: 'silent' }), route, clock)
  t.teardown(() => relay.close())
  const seen: (BetFrame | ErrorFrame)[] = []
  t.teardown(relay.watch('alice', (frame) => seen.push(frame)))
  await gateway.flush()
  relay.place('alice', place('lost-final'))
  relay.place('alice', place('lost-all-0'))
  const statuses = (betId: string) =>
    seen.flatMap((frame) => (frame.type === 'bet' && frame.betId === betId ? [frame.status] : []))
  await waitFor('both provisional', () => statuses('lost-final').length + statuses('lost-all-0').length === 2)
  const answered = () => waitFor('the lookup answered', () => relay.lookupsInFlight() === 0)

  // Both are overdue (due 200 ms after their provisional) at the first sweep.
  clock.advance(RECOVERY_SWEEP_MS)
  await answered()
  t.same(statuses('lost-final'), ['provisional', 'final', 'settled'], 'in order, once each')
  t.same(statuses('lost-all-0'), ['provisional', 'final'])
  t.equal(lookups.length, 1)
  t.match(lookups[0], { userId: 'alice', atMs: 1_000 })
  t.same(lookups[0]?.betIds.sort(), ['lost-all-0', 'lost-final'], "one lookup for both of the user's bets")

  // `lost-all-0` now waits for its settlement, from 1 s: due at 1.2 s, then 400 ms after each
  // lookup, then 800 ms, 1.6 s, 3.2 s, 6.4 s. A sweep each second finds it due at 2, 3, 4, 6, 10
  // and 17 s; without the backoff it would be asked at every one.
  for (let sweep = 2; sweep <= 20; sweep++) {
    clock.advance(RECOVERY_SWEEP_MS)
    await answered()
  }
  const later = lookups.slice(1)
  t.same(
    later.map((lookup) => lookup.atMs),
    [2_000, 3_000, 4_000, 6_000, 10_000, 17_000],
    'asked again after twice as long each time, to the next sweep',
  )
  t.ok(
    later.every((lookup) => lookup.betIds.join() === 'lost-all-0'),
    'only about the bet still waiting',
  )
  t.same(statuses('lost-all-0'), ['provisional', 'final'], 'a repeated answer passes nothing twice')
  t.match(
    relay.stats(),
    { lookups: lookups.length, recovered: 2 },
    'two lost finals recovered (the held settlement had only come early)',
  )
})

t.test('a bet waiting for its final is asked about steadily for a while, then less often', async (t) => {
  // No node knows the final of `unfinal` yet (a fault keeps it from them): every lookup comes back
  // empty. The final is due within seconds, so the relay asks every status-recover-after-ms (here
  // 1 s, one sweep) RECOVERY_STEADY_LOOKUPS times before the waits double: once the fault heals,
  // the final comes within one wait, not after a wait that grew while nobody could answer.
  const { api, gateway } = await twoConnections(t)
  const clock = manualClock()
  const lookups: number[] = []
  api.subscribe(PLACE_ALICE, {
    callback: (_error, message) => {
      message.respond(JSON.stringify(provisional('unfinal')))
    },
  })
  api.subscribe(LOOKUP_ALICE, {
    callback: (_error, message) => {
      lookups.push(clock.now())
      message.respond(JSON.stringify({ ok: true, data: { statuses: [] } }))
    },
  })
  await api.flush()
  const relay = createBetRelay(
    gateway,
    { ...LIMITS, statusRecoverAfterMs: 1_000 },
    pino({ level: 'silent' }),
    route,
    clock,
  )
  t.teardown(() => relay.close())
  const seen: (BetFrame | ErrorFrame)[] = []
  t.teardown(relay.watch('alice', (frame) => seen.push(frame)))
  await gateway.flush()
  relay.place('alice', place('unfinal'))
  await waitFor('the provisional', () => seen.length === 1)
  for (let sweep = 1; sweep <= 30; sweep++) {
    clock.advance(RECOVERY_SWEEP_MS)
    await waitFor('the lookup answered', () => relay.lookupsInFlight() === 0)
  }
  const steady = Array.from({ length: RECOVERY_STEADY_LOOKUPS }, (_, i) => (i + 1) * 1_000)
  t.same(
    lookups,
    [...steady, 13_000, 15_000, 19_000, 27_000],
    'every second twelve times, then after twice as long each time',
  )
})

t.test(
  'a reused bet id: the refusal says which bet stands, and that bet’s statuses still come',
  async (t) => {
    // A client places a bet, and before the answer comes places it again under the same id with
    // another stake (a retry whose body changed). The API books one of the two and refuses the other
    // with BET_ID_REUSED, carrying the bet that stands: its terms and its own answer. The responder
    // here holds both placements of an id, then answers them in the scenario's order and announces
    // the statuses of the bet that stands. The client once saw the refusal end the bet: the booked
    // one's `final` and `settled` never came. Now the refusal carries `standing`, and the standing
    // bet's statuses pass once each, in order, with the ref of the placement whose body stands.
    const { api, gateway } = await twoConnections(t)
    const held = new Map<string, Msg[]>()
    const reused = (standing: { stakeCents: number; reply: unknown }) => ({
      ok: false,
      error: { code: 'BET_ID_REUSED', message: 'bet id was used for another bet' },
      standing: {
        terms: { ...termsOf(place('x')), stakeCents: standing.stakeCents },
        reply: standing.reply,
      },
    })
    const funds = {
      ok: false,
      error: { code: 'INSUFFICIENT_FUNDS', message: 'the balance did not cover it' },
    }
    const announce = (betId: string) => {
      const final = { betId, status: 'final', stamp: 's', verdict, finalAtMs: 1, balanceCents: 900 }
      const settled = { betId, status: 'settled', outcome: 'won', payoutCents: 150, balanceCents: 1_050 }
      for (const event of [final, settled]) api.publish(statusSubject('alice'), JSON.stringify(event))
    }
    /** How each id's two placements (first: stake 100, second: stake 200) are answered, in order. */
    const scenarios: Record<string, (first: Msg, second: Msg, betId: string) => void> = {
      'first-stands': (first, second, betId) => {
        second.respond(JSON.stringify(reused({ stakeCents: 100, reply: provisional(betId) })))
        first.respond(JSON.stringify(provisional(betId)))
        announce(betId)
      },
      'second-stands': (first, second, betId) => {
        first.respond(JSON.stringify(reused({ stakeCents: 200, reply: provisional(betId) })))
        second.respond(JSON.stringify(provisional(betId)))
        announce(betId)
      },
      'first-refused': (first, second) => {
        second.respond(JSON.stringify(reused({ stakeCents: 100, reply: funds })))
        first.respond(JSON.stringify(funds))
      },
      'malformed-standing': (first, second, betId) => {
        first.respond(JSON.stringify(provisional(betId)))
        second.respond(
          JSON.stringify({ ...reused({ stakeCents: 100, reply: null }), standing: { terms: 1 } }),
        )
        announce(betId)
      },
    }
    api.subscribe(PLACE_ALICE, {
      callback: (_error, message) => {
        const { betId } = message.json<{ betId: string }>()
        const both = [...(held.get(betId) ?? []), message]
        held.set(betId, both)
        if (both.length < 2) return
        scenarios[betId]?.(both[0] as Msg, both[1] as Msg, betId)
        // Every status of the bet was announced before this one: once it is seen, they all were.
        api.publish(statusSubject('alice'), JSON.stringify(markerStatus(`done-${betId}`)))
      },
    })
    await api.flush()
    const relay = relayWithoutRecovery(gateway)
    t.teardown(() => relay.close())
    const seen: (BetFrame | ErrorFrame)[] = []
    t.teardown(relay.watch('alice', (frame) => seen.push(frame)))
    await gateway.flush()
    const of = (betId: string) =>
      seen.filter((frame): frame is BetFrame => frame.type === 'bet' && frame.betId === betId)
    for (const betId of Object.keys(scenarios)) {
      relay.place('alice', { ...place(betId), ref: `${betId}-a`, stakeCents: 100 })
      relay.place('alice', { ...place(betId), ref: `${betId}-b`, stakeCents: 200 })
      await waitFor(`${betId} done`, () => seen.some((f) => f.type === 'bet' && f.betId === `done-${betId}`))
      await new Promise(setImmediate)
    }
    const trail = (betId: string) => of(betId).map((frame) => [frame.status, frame.ref])

    t.same(
      trail('first-stands'),
      [
        ['provisional', 'first-stands-a'],
        ['refused', 'first-stands-b'],
        ['final', 'first-stands-a'],
        ['settled', 'first-stands-a'],
      ],
      'the booked bet answered once, the changed body refused, then the booked bet final and settled',
    )
    t.match(of('first-stands')[1], {
      code: 'BET_ID_REUSED',
      standing: {
        terms: { stakeCents: 100, marketId: 'p1-winner', selectionId: 'home', odds: 1_500, policy: 'any' },
        reply: { status: 'provisional', stamp: 's', accepted: true, balanceCents: 900 },
      },
    })
    t.same(
      trail('second-stands'),
      [
        ['provisional', 'second-stands-b'],
        ['refused', 'second-stands-a'],
        ['final', 'second-stands-b'],
        ['settled', 'second-stands-b'],
      ],
      'when the later body is booked, its statuses carry its placement’s ref',
    )
    t.match(of('second-stands')[1], { standing: { terms: { stakeCents: 200 } } })
    t.same(
      trail('first-refused'),
      [
        ['refused', 'first-refused-a'],
        ['refused', 'first-refused-b'],
      ],
      'a standing bet the ledger refused: its refusal once, then the changed body’s',
    )
    t.match(of('first-refused'), [
      { code: 'INSUFFICIENT_FUNDS' },
      { code: 'BET_ID_REUSED', standing: { reply: { status: 'refused', code: 'INSUFFICIENT_FUNDS' } } },
    ])
    const malformed = of('malformed-standing')
    t.same(
      trail('malformed-standing').filter(([status]) => status !== 'refused'),
      [
        ['provisional', 'malformed-standing-a'],
        ['final', 'malformed-standing-a'],
        ['settled', 'malformed-standing-a'],
      ],
      'a standing bet the relay cannot read: the bet goes on all the same',
    )
    t.match(
      malformed.filter((frame) => frame.status === 'refused'),
      [{ ref: 'malformed-standing-b', code: 'BET_ID_REUSED' }],
      'and the changed body is refused',
    )
    t.notOk(
      malformed.some((frame) => 'standing' in frame),
      'without passing on what could not be read',
    )

    t.ok(
      seen.every((frame) => isServerFrame(frame)),
      'every frame is one the protocol allows',
    )
  },
)

/** A status of a bet placed elsewhere, settled at once: a marker in the status stream. */
function markerStatus(betId: string) {
  return { betId, status: 'settled', outcome: 'void', payoutCents: 0, balanceCents: 0 }
}

/**
 * Two API nodes announced to a relay's directory, each answering on its own subject after
 * `delayMs` (a node with no delay set never answers: it is paused); what each was asked, by bet id.
 */
/** What the harness sends a fake node to learn that it is reachable; not a bet. */
const PROBE = 'probe'

async function hedgedRelay(
  t: Test,
  delays: Record<'a' | 'b', number | null>,
  refuses: Partial<Record<'a' | 'b', string>> = {},
) {
  const { api, gateway } = await twoConnections(t)
  const asked: Record<'a' | 'b', string[]> = { a: [], b: [] }
  const directory = createApiDirectory({
    hedgeAfterMsMax: LIMITS.hedgeAfterMs,
    log: pino({ level: 'silent' }),
  })
  const directs: string[] = []
  for (const node of ['a', 'b'] as const) {
    const direct = newDirectId()
    directs.push(direct)
    directory.announce({ node: `api-${node}`, direct, subjects: [PLACE_ALICE] })
    api.subscribe(directSubject(direct), {
      callback: (_error, message) => {
        if (message.string() === PROBE) {
          message.respond(PROBE)
          return
        }
        const { betId } = message.json<{ betId: string }>()
        asked[node].push(betId)
        const delayMs = delays[node]
        if (delayMs === null) return
        const code = refuses[node]
        const reply = code
          ? { ok: false, error: { code, message: `refused by api-${node}` } }
          : provisional(betId)
        setTimeout(() => message.respond(JSON.stringify(reply)), delayMs)
      },
    })
  }
  await api.flush()
  // The two connections may be on different servers of the cluster: until the nodes' interest has
  // reached the gateway's server, a placement would find no responders there.
  for (const direct of directs)
    await waitFor('the gateway’s server knows the node', () =>
      gateway.request(directSubject(direct), PROBE, { timeout: 200 }).then(
        () => true,
        () => false,
      ),
    )
  // Announced again, so that the wait cannot have aged the announcements.
  for (const [i, node] of (['a', 'b'] as const).entries())
    directory.announce({ node: `api-${node}`, direct: directs[i], subjects: [PLACE_ALICE] })
  const relay = createBetRelay(gateway, LIMITS, pino({ level: 'silent' }), route, {}, directory)
  t.teardown(() => relay.close())
  const seen: (BetFrame | ErrorFrame)[] = []
  t.teardown(relay.watch('alice', (frame) => seen.push(frame)))
  return { relay, seen, asked, directory }
}

t.test('a paused API node costs each bet one hedge delay: the other node answers, once', async (t) => {
  const { relay, seen, asked } = await hedgedRelay(t, { a: null, b: 5 })
  const bets = Array.from({ length: 6 }, (_, i) => `hedged-${i}`)
  const sentAt = Date.now()
  for (const betId of bets) relay.place('alice', place(betId))
  await waitFor('every bet answered', () =>
    bets.every((betId) => seen.some((f) => f.type === 'bet' && f.betId === betId)),
  )
  const tookMs = Date.now() - sentAt
  for (const betId of bets)
    t.same(
      seen
        .filter((f) => 'betId' in f && f.betId === betId)
        .map((f) => (f.type === 'bet' ? f.status : f.type)),
      ['provisional'],
      `${betId}: one answer, provisional`,
    )
  t.ok(tookMs < LIMITS.placeTimeoutMs, `all answered in ${tookMs} ms, before the placement timeout`)
  t.same(asked.b.sort(), [...bets].sort(), 'node b answered every bet')
  t.ok(
    asked.a.length >= 1 && asked.a.length < bets.length,
    `the paused node was sent ${asked.a.length}: a suspect is tried last`,
  )
  t.equal(relay.stats().hedged, asked.a.length, 'each bet sent to it was hedged')
  t.equal(relay.stats().hedgesAnswered, asked.a.length)
})

t.test('a first answer that comes after the hedge was sent is the one, and passed on once', async (t) => {
  // Node a answers after 150 ms, past the hedge delay of 100 ms; node b after 400 ms.
  const { relay, seen, asked } = await hedgedRelay(t, { a: 150, b: 400 })
  relay.place('alice', place('late-first'))
  await waitFor('both nodes were asked', () => asked.a.length + asked.b.length === 2)
  await waitFor('an answer', () => seen.some((f) => f.type === 'bet'))
  await delay(500)
  t.same(
    seen.map((f) => (f.type === 'bet' ? f.status : f.type)),
    ['provisional'],
    'one answer, though both nodes answered',
  )
  t.equal(relay.stats().hedged, 1)
  t.equal(relay.stats().hedgesAnswered, 0, 'the first node’s answer won')
})

t.test('a refusal by the hedge waits for the first attempt, which may book the bet', async (t) => {
  // Node a books the bet after 300 ms; node b, asked at 100 ms, refuses at once (its clock, say):
  // it placed nothing, but a did, so the user must hear of the booking, not the refusal.
  const { relay, seen } = await hedgedRelay(t, { a: 300, b: 5 }, { b: 'CLOCK_DRIFT' })
  relay.place('alice', place('refused-then-booked'))
  await waitFor('an answer', () => seen.some((f) => f.type === 'bet'))
  await delay(300)
  t.same(
    seen.map((f) => (f.type === 'bet' ? f.status : f.type)),
    ['provisional'],
    'the booking, not the refusal',
  )
})

t.test('a refusal by the hedge while the first attempt goes unanswered: the bet may stand', async (t) => {
  const { relay, seen } = await hedgedRelay(t, { a: null, b: 5 }, { b: 'CLOCK_DRIFT' })
  relay.place('alice', place('refused-first-silent'))
  await waitFor('an answer', () => seen.length > 0, 2 * LIMITS.placeTimeoutMs)
  t.match(
    seen,
    [{ type: 'error', code: 'BET_UNAVAILABLE' }],
    'not the refusal: the silent node may have booked it',
  )
})

t.test('a refusal by both nodes is passed on', async (t) => {
  const { relay, seen } = await hedgedRelay(t, { a: 150, b: 5 }, { a: 'REPLICA_STALE', b: 'CLOCK_DRIFT' })
  relay.place('alice', place('refused-by-both'))
  await waitFor('an answer', () => seen.length > 0)
  t.match(seen, [{ type: 'bet', status: 'refused', code: 'CLOCK_DRIFT' }], 'the first refusal to arrive')
})

t.test('a node that is gone is passed over at once, and with none left nothing is placed', async (t) => {
  const { api, gateway } = await twoConnections(t)
  const directory = createApiDirectory({ hedgeAfterMsMax: 10_000, log: pino({ level: 'silent' }) })
  // api-gone announced itself and went away: nobody listens on its subject.
  const gone = newDirectId()
  directory.announce({ node: 'api-gone', direct: gone, subjects: [PLACE_ALICE] })
  const live = newDirectId()
  directory.announce({ node: 'api-live', direct: live, subjects: [PLACE_ALICE] })
  let asked = 0
  const subscription = api.subscribe(directSubject(live), {
    callback: (_error, message) => {
      if (message.string() === PROBE) {
        message.respond(PROBE)
        return
      }
      asked++
      message.respond(JSON.stringify(provisional(message.json<{ betId: string }>().betId)))
    },
  })
  await api.flush()
  // The two connections may be on different servers of the cluster: until api-live's interest has
  // reached the gateway's server, a placement would find no responders there either.
  await waitFor('the gateway’s server knows api-live', () =>
    gateway.request(directSubject(live), PROBE, { timeout: 200 }).then(
      () => true,
      () => false,
    ),
  )
  directory.announce({ node: 'api-gone', direct: gone, subjects: [PLACE_ALICE] })
  directory.announce({ node: 'api-live', direct: live, subjects: [PLACE_ALICE] })
  const relay = createBetRelay(gateway, LIMITS, pino({ level: 'silent' }), route, {}, directory)
  t.teardown(() => relay.close())
  const seen: (BetFrame | ErrorFrame)[] = []
  t.teardown(relay.watch('alice', (frame) => seen.push(frame)))
  const sentAt = Date.now()
  for (const betId of ['gone-0001', 'gone-0002']) relay.place('alice', place(betId))
  await waitFor('both answered', () => seen.filter((f) => f.type === 'bet').length === 2)
  t.ok(Date.now() - sentAt < 1_000, 'well before the hedge delay of 10 s')
  t.match(
    seen.filter((f) => f.type === 'bet'),
    [{ status: 'provisional' }, { status: 'provisional' }],
    `the live node booked both (asked ${asked} times)`,
  )
  subscription.unsubscribe()
  await api.flush()
  const none = relayWithoutRecovery(gateway)
  t.teardown(() => none.close())
  const refused: (BetFrame | ErrorFrame)[] = []
  t.teardown(none.watch('bob', (frame) => refused.push(frame)))
  none.place('bob', place('nobody-0001'))
  await waitFor('an answer', () => refused.length > 0)
  t.match(refused, [{ type: 'bet', status: 'refused', code: 'BET_UNAVAILABLE' }], 'no node: nothing placed')
})

t.test('a node that cannot judge now is passed over at once, and tried last after', async (t) => {
  // Node a's replica is stale: it refuses at once. The bet goes to b without waiting for the hedge
  // delay, b books it, and a is tried last for the next bet.
  const { relay, seen, asked } = await hedgedRelay(t, { a: 5, b: 5 }, { a: 'REPLICA_STALE' })
  for (const betId of ['stale-0001', 'stale-0002', 'stale-0003']) {
    relay.place('alice', place(betId))
    await waitFor(`${betId} answered`, () => seen.some((f) => f.type === 'bet' && f.betId === betId))
  }
  t.same(
    seen.map((f) => (f.type === 'bet' ? f.status : f.type)),
    ['provisional', 'provisional', 'provisional'],
    'every bet booked by the node that could',
  )
  t.equal(asked.a.length, 1, 'the stale node was asked once, then passed over')
  t.equal(relay.stats().hedged, 1)
})
