// Proves when a failed chaos run is put down to streams the servers forked
// (scripts/chaos/fork-attribution.ts): only when every broken check is on a forked stream (the
// user's ledger shard, or the fabric stream or bucket every verdict depends on), nodes that died
// did so of refolds, and nothing else failed; otherwise each unexplained failure is named.

import t from 'tap'
import type { InvariantResult } from '../../scripts/chaos/checker.ts'
import { type ForkContext, unexplainedByForks } from '../../scripts/chaos/fork-attribution.ts'

const invariant = (
  id: InvariantResult['id'],
  examples: InvariantResult['counterexamples'],
): InvariantResult => ({
  id,
  number: 1,
  title: id,
  pass: false,
  checked: 10,
  violations: examples.length,
  counterexamples: examples,
  details: {},
})

const context = (forked: string[], refolds: Record<string, number> = {}): ForkContext => ({
  forked: new Set(forked),
  ledgerStreamOf: (userId) => `LEDGER_EU_${userId.endsWith('5') ? 1 : 2}`,
  refolds,
  refoldsMax: 3,
})

const lost = invariant('no-lost-bets', [{ kind: 'bet', id: 'user-5/bet-1', problem: 'missing from api-2' }])

t.test('failures all on forked streams are the forks', async (t) => {
  const failures = { invariants: [lost], died: [], problems: [], booked: 10 }
  t.same(unexplainedByForks(failures, context(['LEDGER_EU_1'])), [], "the user's shard forked")
  t.same(unexplainedByForks(failures, context(['FABRIC_EU'])), [], 'the fabric stream forked: every bet')
  const nodes = invariant('money', [{ kind: 'node', id: '(none)', problem: 'no ledger collected' }])
  t.same(
    unexplainedByForks(
      { ...failures, invariants: [nodes], died: ['api-2'] },
      context(['LEDGER_EU_1'], { 'api-2': 3 }),
    ),
    [],
    'a node that died of refolds, and no ledger while nodes refolded',
  )
})

t.test("what a bet's problem says of a node that refolded is the forks'", async (t) => {
  const late = invariant('convergence', [
    { kind: 'bet', id: 'user-4/bet-2', problem: 'settle-1 still holds its verdict provisional at the end' },
  ])
  const failures = { invariants: [late], died: [], problems: [], booked: 10 }
  t.same(unexplainedByForks(failures, context(['LEDGER_EU_1'], { 'settle-1': 1 })), [], 'settle-1 refolded')
  t.match(
    unexplainedByForks(failures, context(['LEDGER_EU_1'], { 'settle-10': 1 })),
    [/settle-1 still/],
    'not settle-10',
  )
  t.match(unexplainedByForks(failures, context(['LEDGER_EU_1'])), [/settle-1 still/], 'no refold')
})

t.test('anything else is the nodes', async (t) => {
  const failures = { invariants: [lost], died: [], problems: [], booked: 10 }
  t.same(unexplainedByForks(failures, context([])), ['no stream forked'])
  t.match(
    unexplainedByForks(failures, context(['LEDGER_EU_2'])),
    [/^no-lost-bets: bet user-5\/bet-1/],
    'another shard forked',
  )
  t.match(unexplainedByForks({ ...failures, died: ['api-1'] }, context(['LEDGER_EU_1'], { 'api-1': 1 })), [
    /api-1 died, not of refolds/,
  ])
  t.match(unexplainedByForks({ ...failures, problems: ['a limit was passed'] }, context(['LEDGER_EU_1'])), [
    'a limit was passed',
  ])
  t.match(unexplainedByForks({ ...failures, booked: 0 }, context(['LEDGER_EU_1'])), ['nothing was booked'])
  const node = invariant('agreement', [{ kind: 'node', id: 'api-1', problem: 'replica differs' }])
  t.match(
    unexplainedByForks({ ...failures, invariants: [node] }, context(['LEDGER_EU_1'])),
    [/api-1/],
    'no refold',
  )
})
