// The bet relay keeps each bet's statuses in order and once each, whatever order the fabric
// delivers them in: here a responder on a real cluster announces the settlement and the final
// verdict (twice each, as several nodes do) before it replies with the provisional one. And the
// statuses lost on the way are looked up, less and less often: there the relay's clock and sweep
// timer are the test's, moved by hand, so the times it asks at are exact and nothing sleeps.

import { setTimeout as delay } from 'node:timers/promises'
import type { Msg } from '@nats-io/transport-node'
import pino from 'pino'
import t, { type Test } from 'tap'
import { createBetRelay, RECOVERY_SWEEP_MS } from '../../gateway/bets.ts'
import type { BetFrame, ErrorFrame, PlaceFrame } from '../../gateway/protocol.ts'
import type { Timers } from '../../nodes/fabric/timers.ts'
import { LOOKUP_SUBJECT, PLACE_SUBJECT, statusSubject } from '../../protocol/subjects.ts'
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
const verdict = { accepted: true, reason: null, odds: 1_500, gameClockMs: 10 }
const LIMITS = {
  placementsInFlightMax: 10,
  placeTimeoutMs: 500,
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
  api.subscribe(PLACE_SUBJECT, {
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
  const relay = createBetRelay(
    gateway,
    { ...LIMITS, statusRecoverAfterMs: 600_000 },
    pino({ level: 'silent' }),
  )
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
 * A clock the test moves by hand: the relay's `now()` and its interval timers. Moving it fires each
 * interval as many times as it falls due, at the time it falls due.
 */
function manualClock() {
  let nowMs = 0
  const intervals = new Set<{ fn: () => void; everyMs: number; nextMs: number }>()
  const timers: Timers = {
    setTimeout() {
      throw new Error('the relay only repeats')
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
  api.subscribe(PLACE_SUBJECT, {
    callback: (_error, message) => {
      const { betId, userId } = message.json<{ betId: string; userId: string }>()
      // Announced before the reply, on the same connection: by the provisional it has come (held).
      if (betId === 'lost-final') api.publish(statusSubject(userId), JSON.stringify(settled))
      message.respond(JSON.stringify(provisional(betId)))
    },
  })
  api.subscribe(LOOKUP_SUBJECT, {
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
  const relay = createBetRelay(gateway, LIMITS, pino({ level: 'silent' }), () => null, clock)
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
