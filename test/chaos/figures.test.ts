// Proves the chaos run's fault figures (scripts/chaos/figures.ts) on a hand-made history: what
// counts toward the acceptance ratio and what is left out, the first-answer wait with a timeout
// counted as the client's deadline, and the finals after the heal measured from the heal or from
// a later booking; the ratio over majority-led shards only, and the leader windows of the shards
// led from a faulted server.

import t from 'tap'
import {
  describeFigures,
  describeWindows,
  faultFigures,
  type LeaderSample,
  leaderWindows,
  majorityLedShards,
  quantile,
} from '../../scripts/chaos/figures.ts'
import type { HistoryEvent } from '../../scripts/chaos/history.ts'

const FAULT = { faultAtMs: 1_000, healedAtMs: 2_000, answerTimeoutMs: 10_000 }

const place = (betId: string, atMs: number): HistoryEvent => ({
  type: 'place',
  atMs,
  userId: 'u1',
  betId,
  gameId: 'match-1',
  marketId: 'p1-winner',
  selectionId: 'home',
  stakeCents: 100,
  odds: 1_500,
  policy: 'any',
  via: 'gateway-1',
})
const provisional = (betId: string, atMs: number, accepted = true): HistoryEvent => ({
  type: 'answer',
  kind: 'provisional',
  atMs,
  userId: 'u1',
  betId,
  stamp: 's',
  accepted,
  reason: accepted ? null : 'MARKET_NOT_OPEN',
  odds: accepted ? 1_500 : null,
  gameClockMs: 0,
  balanceCents: 0,
})
const refused = (betId: string, atMs: number, code: string): HistoryEvent => ({
  type: 'answer',
  kind: 'refused',
  atMs,
  userId: 'u1',
  betId,
  code,
  message: code,
})
const final = (betId: string, atMs: number): HistoryEvent => ({
  type: 'status',
  status: 'final',
  atMs,
  userId: 'u1',
  betId,
  stamp: 's',
  accepted: true,
  reason: null,
  odds: 1_500,
  gameClockMs: 0,
})

t.test('the acceptance ratio counts every answer but a judgement of a market not open', async (t) => {
  const history: HistoryEvent[] = [
    place('before', 500),
    provisional('before', 510),
    place('booked', 1_100),
    provisional('booked', 1_120),
    place('closed', 1_200),
    provisional('closed', 1_210, false),
    place('refused', 1_300),
    refused('refused', 1_900, 'LEDGER_UNAVAILABLE'),
    place('silent', 1_400),
    { type: 'answer', kind: 'timeout', atMs: 11_400, userId: 'u1', betId: 'silent' },
    place('after', 2_100),
    provisional('after', 2_110),
  ]
  const figures = faultFigures(history, FAULT)
  t.equal(figures.valid, 3, 'booked, refused and silent; not the closed market, nor outside the fault')
  t.equal(figures.booked, 1)
  t.equal(figures.acceptanceRatio, 1 / 3)
  t.same(figures.notBooked, { LEDGER_UNAVAILABLE: 1, timeout: 1 })
  t.equal(figures.firstAnswerMaxMs, 10_000, 'no answer counts as the deadline')
  t.equal(figures.firstAnswerP99Ms, 10_000)
  t.match(describeFigures(figures), /acceptance 1\/3 \(33\.3%\), not booked: LEDGER_UNAVAILABLE 1, timeout 1/)
})

t.test('finals after the heal run from the heal, or from a later booking', async (t) => {
  const history: HistoryEvent[] = [
    place('early', 1_100),
    provisional('early', 1_150),
    final('early', 2_300),
    place('late-booked', 1_500),
    provisional('late-booked', 2_400),
    final('late-booked', 2_450),
    place('final-before-heal', 1_200),
    provisional('final-before-heal', 1_250),
    final('final-before-heal', 1_300),
    place('after', 2_100),
    provisional('after', 2_110),
    final('after', 2_900),
  ]
  const figures = faultFigures(history, FAULT)
  t.equal(figures.finalsAfterHeal, 2, 'only bets placed before the heal whose final came after it')
  t.equal(figures.finalsAfterHealP99Ms, 300, 'max(300 from the heal, 50 from the later booking)')
  t.equal(faultFigures([], FAULT).acceptanceRatio, null, 'no placement, no ratio')
})

t.test('quantiles by nearest rank', async (t) => {
  t.equal(quantile([], 0.99), null)
  t.equal(quantile([5], 0.99), 5)
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1)
  t.equal(quantile(hundred, 0.99), 99)
  t.equal(quantile(hundred, 0.5), 50)
})

t.test('the ratio on majority-led shards counts only their users', async (t) => {
  const as = (userId: string, event: HistoryEvent): HistoryEvent => ({ ...event, userId }) as HistoryEvent
  const history: HistoryEvent[] = [
    as('on-majority', place('a', 1_100)),
    as('on-majority', provisional('a', 1_120)),
    as('on-majority', place('b', 1_200)),
    as('on-majority', provisional('b', 1_220)),
    as('on-faulted', place('c', 1_300)),
    as('on-faulted', refused('c', 1_900, 'LEDGER_UNAVAILABLE')),
  ]
  const shardOf = (userId: string) => (userId === 'on-majority' ? 0 : 1)
  const figures = faultFigures(history, { ...FAULT, majorityLed: { shards: new Set([0]), shardOf } })
  t.equal(figures.acceptanceRatio, 2 / 3, 'every shard')
  t.equal(figures.acceptanceRatioMajorityLed, 1, 'the majority-led shard alone')
  t.match(describeFigures(figures), /acceptance on majority-led shards 100\.0%/)
  t.equal(faultFigures(history, FAULT).acceptanceRatioMajorityLed, null, 'none without the shards')
})

t.test('leader windows: shards led from a faulted server, until a leader elsewhere', async (t) => {
  const sample = (atMs: number, leaders: [number, string | null][]): LeaderSample => ({
    atMs,
    leaders: new Map(leaders),
  })
  const samples = [
    sample(900, [
      [0, 'n1'],
      [1, 'n2'],
      [2, 'n1'],
    ]),
    sample(1_500, [
      [0, null],
      [1, 'n2'],
      [2, 'n1'],
    ]),
    sample(4_000, [
      [0, 'n3'],
      [1, 'n2'],
      [2, 'n1'],
    ]),
  ]
  const faulted = new Set(['n1'])
  t.same(leaderWindows(samples, 1_000, faulted), {
    '0': { leaderBefore: 'n1', windowMs: 3_000, leaderAfter: 'n3' },
    '2': { leaderBefore: 'n1', windowMs: null, leaderAfter: null },
  })
  t.same([...majorityLedShards(samples, 1_000, faulted)], [1])
  t.equal(
    describeWindows(leaderWindows(samples, 1_000, faulted)),
    'shard 0 n1→n3 3000 ms, shard 2 n1→? no leader elsewhere seen',
  )
  t.equal(describeWindows({}), 'none')
})
