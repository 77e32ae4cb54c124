/**
 * The invariants a simulation must end with, checked against the trader's own log where possible
 * rather than against the replicas' read model, so a bug in the read model cannot hide itself.
 */

import { type Entry, judge, type TransitionOp, type Verdict } from '../../crdt/index.ts'
import type { SimBet, SimNode, SimWorld } from './simulator.ts'

function honoured(policy: string, offered: number, taken: number): boolean {
  return policy === 'any' || (policy === 'better' ? offered >= taken : offered === taken)
}

/** The trader's own latest transition of a market at or before a stamp. */
function truthAt(
  log: readonly Entry<TransitionOp>[],
  marketId: string,
  stamp: string,
): Entry<TransitionOp> | null {
  let latest: Entry<TransitionOp> | null = null
  for (const entry of log) {
    if (
      entry.marketId === marketId &&
      entry.stamp <= stamp &&
      (latest === null || entry.stamp > latest.stamp)
    )
      latest = entry
  }
  return latest
}

function checkConvergence(nodes: readonly SimNode[], failures: string[]): void {
  const hashes = new Set(nodes.map((node) => node.replica.stateHash()))
  if (hashes.size !== 1) {
    failures.push(
      `replicas diverged: ${nodes.map((n) => `${n.id}=${n.replica.stateHash().slice(0, 12)}`).join(' ')}`,
    )
  }
}

function checkAgreement(nodes: readonly SimNode[], bet: SimBet, failures: string[]): Verdict {
  const verdicts = nodes.map((node) => judge(node.replica.game, bet.terms))
  const reference = verdicts[0] as Verdict
  const text = JSON.stringify(reference)
  verdicts.forEach((verdict, i) => {
    if (JSON.stringify(verdict) !== text) {
      failures.push(
        `bet ${bet.id}: ${nodes[i]?.id} says ${JSON.stringify(verdict)}, ${nodes[0]?.id} says ${text}`,
      )
    }
  })
  if (!reference.final) failures.push(`bet ${bet.id} is not final after everything was delivered`)
  return reference
}

function checkAgainstTruth(world: SimWorld, bet: SimBet, verdict: Verdict, failures: string[]): void {
  if (!verdict.accepted) return
  const truth = truthAt(world.traderLog, bet.terms.marketId, bet.terms.stamp)
  if (truth?.status !== 'open') {
    failures.push(
      `bet ${bet.id} accepted at ${bet.terms.stamp} but the trader had the market ${truth?.status ?? 'absent'}`,
    )
    return
  }
  const offered = truth.prices[bet.terms.selectionId]
  if (
    offered === undefined ||
    !honoured(bet.terms.policy, offered, bet.terms.odds) ||
    verdict.odds !== offered
  ) {
    failures.push(
      `bet ${bet.id} accepted at odds ${verdict.odds} (${bet.terms.policy} ${bet.terms.odds}) but the trader offered ${offered}`,
    )
  }
}

/** A bet stamped after its node saw the market suspended or closed stands only if it reopened in between. */
function checkSeenSuspension(world: SimWorld, bet: SimBet, verdict: Verdict, failures: string[]): void {
  const seen = bet.seen
  if (seen === null || seen.status === 'open') return
  if (bet.terms.stamp <= seen.stamp) {
    failures.push(
      `bet ${bet.id} stamped ${bet.terms.stamp}, not after the ${seen.status} at ${seen.stamp} its node had seen`,
    )
  }
  const reopened = world.traderLog.some(
    (e) =>
      e.marketId === bet.terms.marketId &&
      e.status === 'open' &&
      seen.stamp < e.stamp &&
      e.stamp <= bet.terms.stamp,
  )
  if (verdict.accepted && !reopened)
    failures.push(`bet ${bet.id} accepted after its node saw the market ${seen.status}`)
}

/** A verdict a node once held final may since have become VOIDED, and nothing else. */
function checkFinalStable(
  nodes: readonly SimNode[],
  bet: SimBet,
  verdict: Verdict,
  failures: string[],
): void {
  for (const node of nodes) {
    const early = node.firstFinal.get(bet.id)
    if (early === undefined || JSON.stringify(early) === JSON.stringify(verdict)) continue
    const voidedLater = early.accepted && verdict.reason === 'VOIDED'
    if (!voidedLater)
      failures.push(
        `bet ${bet.id}: ${node.id} held ${JSON.stringify(early)} final, it ended ${JSON.stringify(verdict)}`,
      )
  }
}

/**
 * Once a node would have paid a market, every bet on it keeps the verdict it had then: a payout is
 * never followed by a refund (the correction deadline, crdt/game.ts).
 */
function checkPaidStable(nodes: readonly SimNode[], bet: SimBet, verdict: Verdict, failures: string[]): void {
  for (const node of nodes) {
    const then = node.paid.get(bet.terms.marketId)?.get(bet.id)
    if (then !== undefined && JSON.stringify(then) !== JSON.stringify(verdict))
      failures.push(
        `bet ${bet.id}: ${node.id} would have paid it as ${JSON.stringify(then)}, it ended ${JSON.stringify(verdict)}`,
      )
  }
}

export function checkInvariants(world: SimWorld): string[] {
  const failures: string[] = []
  const nodes = [...world.nodes.values()]
  checkConvergence(nodes, failures)
  for (const bet of world.bets) {
    const verdict = checkAgreement(nodes, bet, failures)
    checkAgainstTruth(world, bet, verdict, failures)
    checkSeenSuspension(world, bet, verdict, failures)
    checkFinalStable(nodes, bet, verdict, failures)
    checkPaidStable(nodes, bet, verdict, failures)
  }
  for (const node of nodes) {
    if (node.undecided.size > 0) failures.push(`${node.id} still holds ${node.undecided.size} bets undecided`)
  }
  return failures.slice(0, 20)
}
