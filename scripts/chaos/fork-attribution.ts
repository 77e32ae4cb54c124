/**
 * Whether a failed chaos run's broken checks all come from streams the servers forked
 * (replica-states.ts): then the run is FORKED, the servers' fault, not the nodes'. Pure.
 *
 * - A bet's or a user's counterexample belongs to the user's ledger shard stream; it is the
 *   servers' when that stream forked, or when a stream every verdict depends on did (the fabric
 *   stream, whose updates judge every bet, or the snapshot bucket, which holds the writers' clock
 *   ceilings and the replicas' snapshots), or when what it says is of a node that refolded.
 * - A game's belongs to those shared streams.
 * - A node's (a ledger it did not give, replicas that differ) is the servers' only when the node
 *   restarted to refold after finding its state not the stream's, which is what a fork does to it.
 * - A node that died is the servers' only when it died of refolds (its restarts used up).
 * - Anything else (a scenario's own checks, nothing booked) is the nodes' to answer for.
 */

import type { Counterexample, InvariantResult } from './checker.ts'

export interface ForkContext {
  /** The streams whose replicas hold different logs. */
  readonly forked: ReadonlySet<string>
  /** The ledger shard stream of a user. */
  ledgerStreamOf(userId: string): string
  /** Restarts to refold, by node. */
  readonly refolds: Readonly<Record<string, number>>
  /** The restarts a node gets before it is left down. */
  readonly refoldsMax: number
}

export interface RunFailures {
  readonly invariants: readonly InvariantResult[]
  readonly died: readonly string[]
  readonly problems: readonly string[]
  readonly booked: number
}

/** Why the failures are not all the forks', one line each; empty when they all are. */
export function unexplainedByForks(failures: RunFailures, context: ForkContext): string[] {
  if (context.forked.size === 0) return ['no stream forked']
  const shared = [...context.forked].some((stream) => !/^LEDGER_/.test(stream))
  const unexplained: string[] = []
  if (failures.booked === 0) unexplained.push('nothing was booked')
  for (const problem of failures.problems) unexplained.push(problem)
  for (const node of failures.died)
    if ((context.refolds[node] ?? 0) < context.refoldsMax) unexplained.push(`${node} died, not of refolds`)
  const refolded = Object.entries(context.refolds)
    .filter(([, count]) => count > 0)
    .map(([node]) => new RegExp(`(^|[^\\w-])${node.replace(/[^\w-]/g, '')}(?![\\w-])`))
  // A node that refolded after finding its state not the stream's (what a fork does to it) may
  // still be behind when the run reads it: what the problem says of that node is the fork's too.
  const ofRefoldedNode = (problem: string) => refolded.some((node) => node.test(problem))
  const explained = (example: Counterexample): boolean => {
    switch (example.kind) {
      case 'bet':
      case 'user':
        return (
          shared ||
          context.forked.has(context.ledgerStreamOf(example.id.split('/')[0] as string)) ||
          ofRefoldedNode(example.problem)
        )
      case 'game':
        return shared
      case 'node':
        // `(none)`: no node gave its ledger, every one of them refolding at the time.
        return example.id === '(none)'
          ? Object.values(context.refolds).some((count) => count > 0)
          : (context.refolds[example.id] ?? 0) > 0
    }
  }
  for (const invariant of failures.invariants)
    for (const example of invariant.counterexamples)
      if (!explained(example))
        unexplained.push(`${invariant.id}: ${example.kind} ${example.id}: ${example.problem}`)
  return unexplained
}
