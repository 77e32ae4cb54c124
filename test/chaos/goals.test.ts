// Proves the chaos goals (scripts/chaos/goals.ts): each figure past its goal is named, the
// acceptance goal reads the ratio its scenario promises (every shard, majority-led shards, or none),
// a fault with no valid placement under an acceptance goal is a miss (one whose placements were
// all on shards led from the faulted side is not), and figures within every goal miss nothing.

import t from 'tap'
import { GOALS, type GoalFigures, missedGoals } from '../../scripts/chaos/goals.ts'

const MET: GoalFigures = {
  valid: 100,
  acceptanceRatio: 1,
  acceptanceRatioMajorityLed: 1,
  firstAnswerMaxMs: 400,
  finalsAfterHealP99Ms: 120,
  convergedAfterHealMs: 300,
}

t.test('figures within every goal miss none, whatever the acceptance goal', async (t) => {
  for (const goal of ['all', 'majority-led', 'none'] as const) t.same(missedGoals(MET, goal), [], goal)
  const edge = {
    ...MET,
    acceptanceRatio: GOALS.acceptanceRatioMin,
    firstAnswerMaxMs: GOALS.firstAnswerMaxMs,
    finalsAfterHealP99Ms: GOALS.finalsAfterHealP99Ms,
    convergedAfterHealMs: GOALS.convergedAfterHealMs,
  }
  t.same(missedGoals(edge, 'all'), [], 'a figure equal to its goal meets it')
  t.same(missedGoals({ ...MET, finalsAfterHealP99Ms: null }, 'all'), [], 'no final after the heal to time')
})

t.test('the acceptance goal reads the ratio its scenario promises', async (t) => {
  const lowAll = { ...MET, acceptanceRatio: 0.5 }
  t.match(missedGoals(lowAll, 'all'), [/^acceptance while faulted 50\.0 %, goal >= 98\.0 %$/])
  t.same(missedGoals(lowAll, 'majority-led'), [], 'the majority-led shards booked everything')
  t.same(missedGoals(lowAll, 'none'), [], 'no majority: refusals are right')
  const lowLed = { ...MET, acceptanceRatioMajorityLed: 0.9 }
  t.match(missedGoals(lowLed, 'majority-led'), [/majority-led shards while faulted 90\.0 %/])
  t.same(
    missedGoals({ ...MET, acceptanceRatioMajorityLed: null }, 'majority-led'),
    [],
    'no shard stayed with the majority: nothing to judge',
  )
  t.match(
    missedGoals({ ...MET, valid: 0, acceptanceRatio: null }, 'all'),
    [/not measured/],
    'nothing to judge is a miss',
  )
  t.match(
    missedGoals(
      { ...MET, valid: 0, acceptanceRatio: null, acceptanceRatioMajorityLed: null },
      'majority-led',
    ),
    [/not measured/],
    'no placement while faulted: a miss for the majority-led goal too',
  )
  t.same(missedGoals({ ...MET, valid: 0 }, 'none'), [], 'no acceptance goal, nothing to measure')
})

t.test('after the elections every shard books again, under the majority-led goal', async (t) => {
  t.same(missedGoals({ ...MET, acceptanceAfterElections: 0.99 }, 'majority-led'), [])
  t.same(missedGoals({ ...MET, acceptanceAfterElections: null }, 'majority-led'), [], 'nothing to measure')
  t.match(missedGoals({ ...MET, acceptanceAfterElections: 0.6 }, 'majority-led'), [
    /once every faulted stream had a new leader 60\.0 %/,
  ])
  t.same(missedGoals({ ...MET, acceptanceAfterElections: 0.6 }, 'none'), [], 'not without an acceptance goal')
})

t.test('every timing goal past its bound is named', async (t) => {
  const slow = { ...MET, firstAnswerMaxMs: 1_001, finalsAfterHealP99Ms: 251, convergedAfterHealMs: 1_001 }
  const missed = missedGoals(slow, 'none')
  t.equal(missed.length, 3)
  t.match(missed, [/first answer 1001 ms/, /finals after the heal p99 251 ms/, /converged 1001 ms/])
  t.match(missedGoals({ ...MET, convergedAfterHealMs: null }, 'none'), [/did not agree/])
})
