// Proves the hostile-mix scenario's own checks (scripts/chaos/hostile-mix.ts), on hand-made runs: a
// clean run passes with its figures; each thing the attacker must not achieve fails it on its own
// (a restart, open stakes or a market's liability past its limit at any point, too few of the
// bettors' placements acknowledged, an unfunded flood written past the refusal cap, an absurd bet
// paid at its asked odds, the attacker answered with a bettor's bet, a bettor told its id was
// taken, an answer no variant may get).

import t from 'tap'
import type { NodeState } from '../../nodes/fabric/node-state.ts'
import { ATTACKER_USERS, type AttackReport } from '../../scripts/chaos/attacker.ts'
import type { HistoryEvent } from '../../scripts/chaos/history.ts'
import { checkHostileMix, describeAttack, type HostileMixRun } from '../../scripts/chaos/hostile-mix.ts'

const LIMITS = {
  userOpenStakeCentsMax: 500_000,
  marketLiabilityCentsMax: 10_000_000,
  refusedPerUserPerMinuteMax: 30,
}
const STAMP = '0001700000000.000000.api-1+++++++++++++++++++'

type LedgerBet = NonNullable<NodeState['ledger']>['bets'][string]

function bet(userId: string, extra: Partial<LedgerBet> = {}): LedgerBet {
  return {
    userId,
    gameId: 'match-1',
    marketId: 'p1-winner',
    selectionId: 'home',
    stakeCents: 1_000,
    odds: 2_000,
    policy: 'any',
    stamp: STAMP,
    status: 'settled',
    outcome: 'lost',
    payoutCents: 0,
    ...extra,
  }
}

function apiState(
  peaks: { users?: Record<string, number>; markets?: Record<string, number> } = {},
  bets: Record<string, LedgerBet> = {},
): NodeState {
  return {
    droppedUpdates: 0,
    streams: {} as NodeState['streams'],
    replicas: {},
    ledger: {
      balances: {},
      bets,
      settlementsPerBet: {},
      totals: { depositsCents: 0, withdrawalsCents: 0, stakesCents: 0, payoutsCents: 0 },
      peaks: {
        '0': {
          openStakesCents: peaks.users ?? { 'mallory-race': 500_000 },
          marketLiabilityCents: peaks.markets ?? { 'match-1 p1-winner': 400_000 },
        },
      },
    },
  }
}

/** A node serving two shards, each with its peak liability on one market. */
function twoShards(first: number, second: number): NodeState {
  const state = apiState({ markets: { 'match-1 p2-winner': first } })
  const ledger = state.ledger as NonNullable<NodeState['ledger']>
  return {
    ...state,
    ledger: {
      ...ledger,
      peaks: {
        ...ledger.peaks,
        '1': { openStakesCents: {}, marketLiabilityCents: { 'match-1 p2-winner': second } },
      },
    },
  }
}

function attack(extra: Partial<AttackReport> = {}): AttackReport {
  return {
    rounds: {
      'colliding ids': 1,
      'foreign ids': 0,
      'absurd odds': 0,
      'limit races': 0,
      floods: 0,
      'changed retry': 0,
      'bad credentials': 0,
    },
    answers: {
      'colliding ids': { 'future id: provisional': 1 },
      'foreign ids': {},
      'absurd odds': {},
      'limit races': {},
      floods: {},
      'changed retry': {},
      'bad credentials': {},
    },
    wrong: [],
    wrongCount: 0,
    findings: {},
    ownBets: [
      { victim: 'chaos-user-0', betId: 'chaos-11-chaos-user-0-3', stamp: 'stamp-of-mallory', atMs: 2 },
    ],
    unfundedPlacements: 100,
    ...extra,
  }
}

const HISTORY: HistoryEvent[] = [
  {
    type: 'place',
    atMs: 1,
    userId: 'chaos-user-0',
    betId: 'chaos-11-chaos-user-0-3',
    gameId: 'match-1',
    marketId: 'p1-winner',
    selectionId: 'home',
    stakeCents: 100,
    odds: 2_000,
    policy: 'any',
    via: 'gateway',
  },
  {
    type: 'answer',
    atMs: 1,
    userId: 'chaos-user-0',
    betId: 'chaos-11-chaos-user-0-3',
    kind: 'provisional',
    stamp: 'stamp-of-the-bettor',
    accepted: true,
    reason: null,
    odds: 2_000,
    gameClockMs: 0,
    balanceCents: 0,
  },
]

function run(extra: Partial<HostileMixRun> = {}): HostileMixRun {
  return {
    history: HISTORY,
    apiStates: [
      { node: 'api-1', state: apiState() },
      { node: 'api-2', state: apiState() },
    ],
    attack: attack(),
    limits: LIMITS,
    attackMs: 120_000,
    rebuilds: {},
    exited: [],
    bettorPlacements: { placed: 1_000, acknowledged: 990 },
    ...extra,
  }
}

t.test('a run in which the attacker achieved nothing passes, with its figures', async (t) => {
  const result = checkHostileMix(run())
  t.same(result.problems, [])
  t.match(result.figures.join('\n'), /restarts: none/)
  t.match(result.figures.join('\n'), /mallory-race 500000 of 500000 cents/)
  t.match(result.figures.join('\n'), /acknowledged: 990\/1000 \(99\.0%\)/)
  t.match(result.figures.join('\n'), /a bettor placed the same id before 1, after 0/)
})

t.test('a shard past its share passes, when the shards together stay within the limit', async (t) => {
  const result = checkHostileMix(
    run({ apiStates: [{ node: 'api-1', state: twoShards(8_000_000, 2_000_000) }] }),
  )
  t.same(result.problems, [])
  t.match(result.figures.join('\n'), /match-1 p2-winner 10000000 of 10000000 cents/)
})

t.test('each thing the attacker must not achieve fails the run on its own', async (t) => {
  const failures: [string, Partial<HostileMixRun>, RegExp][] = [
    ['a rebuild', { rebuilds: { 'api-1': 1 } }, /restarted to rebuild: api-1 1/],
    ['an exit', { exited: ['gateway-1'] }, /exited: gateway-1/],
    [
      'open stakes past the limit',
      { apiStates: [{ node: 'api-1', state: apiState({ users: { 'mallory-race': 600_000 } }) }] },
      /mallory-race held 600000 cents of open stakes/,
    ],
    [
      "a market's liability past its limit",
      { apiStates: [{ node: 'api-1', state: apiState({ markets: { 'match-1 p2-winner': 10_000_001 } }) }] },
      /match-1 p2-winner held up to 10000001 cents of liability over its shards/,
    ],
    [
      "a market's liability past its limit over two shards",
      { apiStates: [{ node: 'api-1', state: twoShards(6_000_000, 4_000_001) }] },
      /match-1 p2-winner held up to 10000001 cents/,
    ],
    [
      'too few acknowledged',
      { bettorPlacements: { placed: 1_000, acknowledged: 979 } },
      /97\.9%\), below 98%/,
    ],
    [
      'an unfunded flood written past the cap',
      {
        apiStates: [
          {
            node: 'api-1',
            state: apiState(
              {},
              Object.fromEntries(
                Array.from({ length: 91 }, (_, i) => [
                  `b${i}`,
                  bet(ATTACKER_USERS.broke, { status: 'rejected' }),
                ]),
              ),
            ),
          },
        ],
      },
      /91 written to the ledger \(at most 90\)/,
    ],
    [
      'an absurd bet paid at its asked odds',
      {
        apiStates: [
          {
            node: 'api-1',
            state: apiState(
              {},
              { odd: bet(ATTACKER_USERS.odds, { odds: 1_000_000, outcome: 'won', settledOdds: 1_000_000 }) },
            ),
          },
        ],
      },
      /paid at the asked odds 1000000/,
    ],
    [
      "the attacker answered with a bettor's bet",
      {
        attack: attack({
          ownBets: [
            {
              victim: 'chaos-user-0',
              betId: 'chaos-11-chaos-user-0-3',
              stamp: 'stamp-of-the-bettor',
              atMs: 2,
            },
          ],
        }),
      },
      /answered with chaos-user-0's bet/,
    ],
    [
      'a bettor told its id was taken',
      {
        history: [
          ...HISTORY,
          {
            type: 'answer',
            atMs: 3,
            userId: 'chaos-user-1',
            betId: 'chaos-11-chaos-user-1-1',
            kind: 'refused',
            code: 'BET_ID_REUSED',
            message: 'used',
          },
        ],
      },
      /bettor chaos-user-1 was told its bet id chaos-11-chaos-user-1-1 was used/,
    ],
    [
      'an answer no variant may get',
      { attack: attack({ wrong: ['bad credentials / alg none: admitted'], wrongCount: 1 }) },
      /1 answers the attacker must never get: bad credentials \/ alg none: admitted/,
    ],
  ]
  for (const [what, change, problem] of failures) {
    const { problems } = checkHostileMix(run(change))
    t.equal(problems.length, 1, `${what}: one problem`)
    t.match(problems[0], problem, what)
  }
})

t.test('the attack is described by class, code and finding', async (t) => {
  const lines = describeAttack(attack({ findings: { 'the gateway did something odd': 2 } }))
  t.match(lines[0], 'attacker colliding ids: 1 rounds; future id: provisional 1')
  t.match(lines.at(-1), 'attacker finding (2x): the gateway did something odd')
})
