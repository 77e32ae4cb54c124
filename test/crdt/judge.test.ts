// Proves the verdict rules of judge() on a Yjs replica fed by a test writer with a controlled clock:
// each reason code, each odds policy, the game clock at a bet's stamp, when a verdict becomes
// final (one writer, two writers, admission, retirement), that ops from writers outside their span
// are ignored, and that void windows and result claims behave as the design says.

import t from 'tap'
import {
  activeWriters,
  type BetTerms,
  CORRECTION_WINDOW_MS,
  clockAt,
  correctionDeadline,
  currentClock,
  isConcluded,
  isFinal,
  judge,
  lastStampAt,
  type OddsPolicy,
  resultOf,
  statusAt,
  voidAt,
  yjsBackend,
} from '../../crdt/index.ts'
import { createTestWriter, NEXT_POINT, stampAt, transition } from '../helpers/game-writer.ts'

function openGame() {
  const trader = createTestWriter(yjsBackend, 'trader-1', 1_000)
  trader.write(
    { kind: 'game', gameId: 'match-1', writers: ['trader-1'] },
    { kind: 'clock', period: 1, running: true, clockMs: 0 },
    NEXT_POINT,
    transition('open'),
  )
  return trader
}

function bet(wallMs: number, overrides: Partial<BetTerms> = {}): BetTerms {
  return {
    stamp: stampAt(wallMs),
    marketId: 'point-1',
    selectionId: 'home',
    odds: 1_800,
    policy: 'exact',
    ...overrides,
  }
}

t.test(
  'a bet on an open market at the offered price is accepted at the game clock of its stamp',
  async (t) => {
    const trader = openGame()
    trader.at(5_000).heartbeat()
    const verdict = judge(trader.replica.game, bet(3_500))
    t.same(verdict, { accepted: true, reason: null, odds: 1_800, gameClockMs: 2_500, final: true })
  },
)

t.test('each rejection reason', async (t) => {
  const trader = openGame()
  trader.at(2_000).write(transition('suspended'))
  trader.at(3_000).write(transition('open', 1_700, 2_200))
  trader.at(4_000).write({
    kind: 'transition',
    marketId: 'point-1',
    status: 'open',
    prices: { away: 2_000 },
    reason: 'home off',
  })
  trader.at(9_000).heartbeat()
  const game = trader.replica.game
  t.equal(judge(game, bet(1_500, { marketId: 'point-9' })).reason, 'UNKNOWN_MARKET')
  t.equal(judge(game, bet(500)).reason, 'UNKNOWN_MARKET', 'a bet stamped before the market existed')
  t.equal(judge(game, bet(1_500, { selectionId: 'draw' })).reason, 'UNKNOWN_SELECTION')
  t.same(judge(game, bet(2_500)), {
    accepted: false,
    reason: 'MARKET_NOT_OPEN',
    odds: 1_800,
    gameClockMs: 1_500,
    final: true,
  })
  t.equal(judge(game, bet(3_500)).reason, 'PRICE_CHANGED', 'odds moved from 1.800 to 1.700')
  t.equal(judge(game, bet(4_500, { odds: 1_700 })).reason, 'SELECTION_NOT_OFFERED')
})

t.test('odds policies: exact, better, any', async (t) => {
  const trader = openGame()
  trader.at(2_000).write(transition('open', 1_900, 1_950))
  trader.at(3_000).heartbeat()
  const game = trader.replica.game
  const cases: [OddsPolicy, number, boolean][] = [
    ['exact', 1_900, true],
    ['exact', 1_800, false],
    ['better', 1_800, true],
    ['better', 1_900, true],
    ['better', 2_000, false],
    ['any', 3_000, true],
  ]
  for (const [policy, odds, accepted] of cases) {
    const verdict = judge(game, bet(2_500, { policy, odds }))
    t.equal(verdict.accepted, accepted, `${policy} at ${odds}`)
    t.equal(verdict.odds, 1_900, 'the bet stands at the offered odds')
  }
})

t.test('a verdict is provisional until the writer’s watermark passes the stamp', async (t) => {
  const trader = openGame()
  t.equal(judge(trader.replica.game, bet(1_500)).final, false)
  trader.at(1_499).heartbeat()
  t.equal(judge(trader.replica.game, bet(1_500)).final, false)
  trader.at(1_501).heartbeat()
  t.equal(judge(trader.replica.game, bet(1_500)).final, true)
  const replica = yjsBackend.create()
  t.equal(judge(replica.game, bet(1_500)).final, false, 'a replica without the game is never final')
})

t.test('with two writers a verdict waits for both; a retired writer no longer holds it back', async (t) => {
  const feedA = createTestWriter(yjsBackend, 'feed-a', 1_000)
  const feedB = createTestWriter(yjsBackend, 'feed-b', 1_000)
  const reader = yjsBackend.create()
  reader.apply(
    feedA.write(
      { kind: 'game', gameId: 'match-1', writers: ['feed-a', 'feed-b'] },
      NEXT_POINT,
      transition('open'),
    ),
  )
  reader.applyHeartbeat(feedA.at(3_000).heartbeat())
  t.equal(judge(reader.game, bet(2_000)).final, false, 'feed-b has not spoken')
  reader.applyHeartbeat(feedB.at(2_500).heartbeat())
  t.equal(judge(reader.game, bet(2_000)).final, true)
  t.equal(judge(reader.game, bet(2_800)).final, false)
  reader.apply(feedB.at(2_600).write({ kind: 'retire' }))
  t.equal(judge(reader.game, bet(2_800)).final, true, 'feed-b retired at 2.6 s')
  t.same(activeWriters(reader.game), ['feed-a'])
})

t.test('only admitted writers count, and only inside their span', async (t) => {
  const trader = openGame()
  const rogue = createTestWriter(yjsBackend, 'rogue', 2_000)
  const late = createTestWriter(yjsBackend, 'trader-2', 1_500)
  const reader = yjsBackend.create()
  reader.apply(trader.replica.snapshot())
  reader.apply(rogue.write(transition('suspended')))
  reader.apply(late.write(transition('suspended')))
  t.equal(
    statusAt(reader.game, 'point-1', stampAt(2_500)),
    'open',
    'ops of writers never admitted are ignored',
  )
  reader.apply(trader.at(3_000).write({ kind: 'admit', writer: 'trader-2' }))
  t.equal(
    statusAt(reader.game, 'point-1', stampAt(2_500)),
    'open',
    'an op stamped before the admission stays ignored',
  )
  reader.apply(late.at(3_500).write(transition('suspended')))
  t.equal(statusAt(reader.game, 'point-1', stampAt(3_600)), 'suspended', 'after admission it counts')
  reader.applyHeartbeat(trader.at(4_000).heartbeat())
  t.equal(
    judge(reader.game, bet(3_400)).final,
    true,
    'trader-2 was admitted at 3 s and has a watermark at 3.5 s',
  )
  t.equal(judge(reader.game, bet(3_600)).final, false, 'past 3.5 s trader-2 may still write')
})

t.test('the game clock: running clocks advance with the stamp, stopped ones hold', async (t) => {
  const trader = openGame()
  trader.at(11_000).write({ kind: 'clock', period: 1, running: false, clockMs: 10_000 })
  trader.at(20_000).write({ kind: 'clock', period: 2, running: true, clockMs: 0 })
  const game = trader.replica.game
  t.equal(judge(game, bet(500)).gameClockMs, null, 'before the clock was set')
  t.same(clockAt(game, stampAt(6_000)), { period: 1, running: true, clockMs: 5_000 })
  t.same(clockAt(game, stampAt(15_000)), { period: 1, running: false, clockMs: 10_000 })
  t.same(clockAt(game, stampAt(20_250)), { period: 2, running: true, clockMs: 250 })
  t.equal(currentClock(game)?.period, 2, 'the current clock is the last writer by stamp')
})

t.test('a void window turns accepted bets inside it into VOIDED, after the fact too', async (t) => {
  const trader = openGame()
  trader.at(9_000).heartbeat()
  const game = trader.replica.game
  t.equal(judge(game, bet(3_000)).accepted, true)
  t.equal(judge(game, bet(3_000, { odds: 1_000_000 })).reason, 'PRICE_CHANGED')
  trader.write({
    kind: 'void',
    marketId: 'point-1',
    from: stampAt(2_000),
    to: stampAt(4_000),
    reason: 'feed correction',
  })
  t.same(judge(game, bet(3_000)), {
    accepted: false,
    reason: 'VOIDED',
    odds: 1_800,
    gameClockMs: 2_000,
    final: true,
  })
  t.equal(
    judge(game, bet(3_000, { odds: 1_000_000 })).reason,
    'PRICE_CHANGED',
    'a rejected bet stays rejected',
  )
  t.equal(judge(game, bet(4_500)).accepted, true, 'outside the window')
})

t.test('a void stamped after the correction deadline of the market counts nowhere', async (t) => {
  const trader = openGame()
  const game = trader.replica.game
  const window = { kind: 'void' as const, marketId: 'point-1', from: stampAt(2_000), to: stampAt(4_000) }
  t.equal(correctionDeadline(game, 'point-1'), null, 'no deadline before a result')
  trader.at(5_000).write({ kind: 'result', marketId: 'point-1', winners: ['home'] })
  const deadline = correctionDeadline(game, 'point-1')
  t.equal(deadline, lastStampAt(5_000 + CORRECTION_WINDOW_MS), 'the first claim plus the window')
  trader.at(5_000 + CORRECTION_WINDOW_MS + 1).write({ ...window, reason: 'too late' })
  trader.at(9_000).heartbeat()
  t.equal(judge(game, bet(3_000)).accepted, true, 'the late void voids nothing')
  t.equal(voidAt(game, 'point-1', stampAt(3_000)), null)
  trader.at(9_001).write({ kind: 'result', marketId: 'point-1', winners: ['away'] })
  t.equal(correctionDeadline(game, 'point-1'), deadline, 'a later claim does not move the deadline')

  const inTime = openGame()
  inTime.at(5_000).write({ kind: 'result', marketId: 'point-1', winners: ['home'] })
  inTime.at(5_000 + CORRECTION_WINDOW_MS).write({ ...window, reason: 'just in time' })
  inTime.at(9_000).heartbeat()
  t.equal(judge(inTime.replica.game, bet(3_000)).reason, 'VOIDED', 'a void by the deadline counts')
})

t.test('a final VOIDED never turns back into an acceptance when an earlier claim arrives late', async (t) => {
  // feed-b's result claim at 5 s sets the deadline; feed-a voids at 5.2 s, within it. feed-a's own
  // claim at 4.9 s reaches the reader only later: the deadline moves to 5.15 s and the void no
  // longer counts. Until feed-b's watermark passes the void, VOIDED must not be final.
  const feedA = createTestWriter(yjsBackend, 'feed-a', 1_000)
  const feedB = createTestWriter(yjsBackend, 'feed-b', 1_000)
  const reader = yjsBackend.create()
  reader.apply(
    feedA.write(
      { kind: 'game', gameId: 'match-1', writers: ['feed-a', 'feed-b'] },
      { kind: 'clock', period: 1, running: true, clockMs: 0 },
      NEXT_POINT,
      transition('open'),
    ),
  )
  // feed-b's heartbeat, made before it wrote its claim, passes the bet but not the void.
  const earlyHeartbeat = feedB.at(4_850).heartbeat()
  const lateClaim = feedB.at(4_900).write({ kind: 'result', marketId: 'point-1', winners: ['home'] })
  reader.apply(feedA.at(5_000).write({ kind: 'result', marketId: 'point-1', winners: ['home'] }))
  const voidOp = {
    kind: 'void' as const,
    marketId: 'point-1',
    from: stampAt(2_000),
    to: stampAt(4_000),
    reason: 'feed correction',
  }
  reader.apply(feedA.at(5_200).write(voidOp))
  reader.applyHeartbeat(feedA.at(6_000).heartbeat())
  reader.applyHeartbeat(earlyHeartbeat)
  t.equal(judge(reader.game, bet(3_000, { odds: 1_000_000 })).final, true, 'the bet stamp itself is final')
  const held = judge(reader.game, bet(3_000))
  t.equal(held.reason, 'VOIDED', 'the void counts by what the reader holds')
  t.equal(held.final, false, 'but it is not final while a claim before the void may arrive')
  reader.apply(lateClaim)
  reader.applyHeartbeat(feedB.at(6_000).heartbeat())
  t.same(
    judge(reader.game, bet(3_000)),
    { accepted: true, reason: null, odds: 1_800, gameClockMs: 2_000, final: true },
    'with the earlier claim the void is past the deadline',
  )
})

t.test('results: one claim or agreeing claims settle, disagreement goes to review', async (t) => {
  const feedA = createTestWriter(yjsBackend, 'feed-a', 1_000)
  const feedB = createTestWriter(yjsBackend, 'feed-b', 1_000)
  const reader = yjsBackend.create()
  reader.apply(feedA.write({ kind: 'game', gameId: 'match-1', writers: ['feed-a', 'feed-b'] }, NEXT_POINT))
  t.same(resultOf(reader.game, 'point-1'), { state: 'pending' })
  reader.apply(feedA.at(2_000).write({ kind: 'result', marketId: 'point-1', winners: ['home'] }))
  t.match(resultOf(reader.game, 'point-1'), { state: 'agreed', winners: ['home'] })
  reader.apply(feedB.at(2_100).write({ kind: 'result', marketId: 'point-1', winners: ['away'] }))
  t.match(resultOf(reader.game, 'point-1'), { state: 'review' })
  reader.apply(feedB.at(2_200).write({ kind: 'result', marketId: 'point-1', winners: ['home'] }))
  t.match(
    resultOf(reader.game, 'point-1'),
    { state: 'agreed', winners: ['home'] },
    'a writer corrects its own claim',
  )
})

t.test('a later market spec never replaces the first one', async (t) => {
  const trader = openGame()
  trader.at(2_000).write({ ...NEXT_POINT, selections: [{ id: 'draw', name: 'Draw' }] }, transition('open'))
  trader.at(3_000).heartbeat()
  t.equal(judge(trader.replica.game, bet(2_500)).accepted, true)
  t.equal(judge(trader.replica.game, bet(2_500, { selectionId: 'draw' })).reason, 'UNKNOWN_SELECTION')
})

t.test('a game is concluded only once nothing in it can change a verdict or a payout', async (t) => {
  const trader = openGame()
  const game = trader.replica.game
  trader.at(2_000).heartbeat()
  t.notOk(isConcluded(game), 'not while a market is open')
  trader.at(3_000).write(transition('closed'))
  t.ok(isConcluded(game), 'a closed market without a result holds nothing back')
  trader.at(5_000).write({ kind: 'result', marketId: 'point-1', winners: ['home'] })
  trader.at(5_000 + CORRECTION_WINDOW_MS - 50).heartbeat()
  t.notOk(isConcluded(game), 'not before the correction deadline is final')
  trader.at(5_000 + CORRECTION_WINDOW_MS + 50).heartbeat()
  t.ok(isConcluded(game), 'then it is')
  t.notOk(isFinal(game, stampAt(60_000)), 'a stamp after the match is not final on a live replica')
  game.closed = true
  t.ok(isFinal(game, stampAt(60_000)), 'and is on a closed one (an archived match)')
})
