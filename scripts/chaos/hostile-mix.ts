/**
 * What the hostile-mix scenario checks beside the checker's five invariants: that the attacker
 * (attacker.ts) achieved nothing. No node restarted or exited; no user ever held more open stakes
 * than the API nodes' limit, and no market more liability than its limit: the sum over the ledger
 * shards of each shard's peak (node-state.ts `peaks`), which bounds the market's peak from above,
 * is within it (a shard may pass its share with allowance moved from others); the bettors'
 * placements were still acknowledged (at least ACKNOWLEDGED_SHARE_MIN of them); the unfunded
 * user's flood was not written past the refusal cap; no bet at absurd odds was paid at them; every bet the attacker placed under
 * a bettor's id was its own, and no bettor was told its id was taken; and the attacker got no answer
 * its variant must never get. Pure: reads what the run collected.
 */

import type { NodeState } from '../../nodes/fabric/node-state.ts'
import { betKeyOf } from '../../protocol/ids.ts'
import { ATTACKER_USERS, type AttackReport } from './attacker.ts'
import type { HistoryEvent } from './history.ts'

/** Of the bettors' placements, the share that must be acknowledged while the attacker runs. */
export const ACKNOWLEDGED_SHARE_MIN = 0.98
const ABSURD_ODDS = 1_000_000
const REFUSAL_WINDOW_MS = 60_000
const LISTED_MAX = 5

export interface HostileMixLimits {
  readonly userOpenStakeCentsMax: number
  /** A market's liability limit, over all the ledger shards together. */
  readonly marketLiabilityCentsMax: number
  readonly refusedPerUserPerMinuteMax: number
}

export interface HostileMixRun {
  readonly history: readonly HistoryEvent[]
  /** Each API node's state at the end of the run, with its ledger. */
  readonly apiStates: readonly { readonly node: string; readonly state: NodeState }[]
  readonly attack: AttackReport
  readonly limits: HostileMixLimits
  readonly attackMs: number
  /** Per node, the times it was started again after its state diverged from a stream. */
  readonly rebuilds: Readonly<Record<string, number>>
  /** Nodes whose process was gone when it should have been running. */
  readonly exited: readonly string[]
  /** The bettors' placements over the run, and how many of them were acknowledged. */
  readonly bettorPlacements: { readonly placed: number; readonly acknowledged: number }
}

export interface HostileMixResult {
  /** Each one fails the run. */
  readonly problems: readonly string[]
  /** What was measured, for the report. */
  readonly figures: readonly string[]
}

export function checkHostileMix(run: HostileMixRun): HostileMixResult {
  const parts = [
    restarts(run),
    limits(run),
    acknowledged(run),
    unfunded(run),
    absurdOdds(run),
    victimIds(run),
    attackerAnswers(run),
  ]
  return { problems: parts.flatMap((part) => part.problems), figures: parts.flatMap((part) => part.figures) }
}

function restarts(run: HostileMixRun): HostileMixResult {
  const rebuilt = Object.entries(run.rebuilds).map(([node, count]) => `${node} ${count}`)
  const problems = [
    ...(rebuilt.length > 0 ? [`nodes restarted to rebuild: ${rebuilt.join(', ')}`] : []),
    ...(run.exited.length > 0 ? [`nodes exited: ${run.exited.join(', ')}`] : []),
  ]
  const restarted = [...rebuilt, ...run.exited.map((node) => `${node} exited`)]
  return { problems, figures: [`restarts: ${restarted.length === 0 ? 'none' : restarted.join(', ')}`] }
}

/** The largest of a record's values, with its key; null for an empty one. */
function largest(record: Readonly<Record<string, number>>): [string, number] | null {
  let best: [string, number] | null = null
  for (const [key, value] of Object.entries(record)) if (best === null || value > best[1]) best = [key, value]
  return best
}

function limits(run: HostileMixRun): HostileMixResult {
  const { userOpenStakeCentsMax, marketLiabilityCentsMax } = run.limits
  const problems: string[] = []
  let users: [string, number] | null = null
  let markets: [string, number] | null = null
  for (const { node, state } of run.apiStates) {
    if (state.ledger === undefined) {
      problems.push(`${node} gave no ledger, so its limits could not be checked`)
      continue
    }
    /** Per market, the sum of each shard's peak liability. */
    const summed: Record<string, number> = {}
    for (const peaks of Object.values(state.ledger.peaks)) {
      for (const [userId, cents] of Object.entries(peaks.openStakesCents))
        if (cents > userOpenStakeCentsMax)
          problems.push(
            `${node}: ${userId} held ${cents} cents of open stakes, past ${userOpenStakeCentsMax}`,
          )
      for (const [market, cents] of Object.entries(peaks.marketLiabilityCents))
        summed[market] = (summed[market] ?? 0) + cents
      const user = largest(peaks.openStakesCents)
      if (user !== null && (users === null || user[1] > users[1])) users = user
    }
    for (const [market, cents] of Object.entries(summed))
      if (cents > marketLiabilityCentsMax)
        problems.push(
          `${node}: market ${market} held up to ${cents} cents of liability over its shards, past ${marketLiabilityCentsMax}`,
        )
    const market = largest(summed)
    if (market !== null && (markets === null || market[1] > markets[1])) markets = market
  }
  const figures = [
    `most open stakes a user held: ${users === null ? 'none' : `${users[0]} ${users[1]}`} of ${userOpenStakeCentsMax} cents`,
    `most liability a market held (the sum of its shards' peaks): ${markets === null ? 'none' : `${markets[0]} ${markets[1]}`} of ${marketLiabilityCentsMax} cents`,
  ]
  return { problems: problems.slice(0, LISTED_MAX * 2), figures }
}

function acknowledged(run: HostileMixRun): HostileMixResult {
  const { placed, acknowledged } = run.bettorPlacements
  const share = placed === 0 ? 0 : acknowledged / placed
  const figure = `bettors' placements acknowledged: ${acknowledged}/${placed} (${(100 * share).toFixed(1)}%)`
  const problems =
    share >= ACKNOWLEDGED_SHARE_MIN ? [] : [`${figure}, below ${(100 * ACKNOWLEDGED_SHARE_MIN).toFixed(0)}%`]
  return { problems, figures: [figure] }
}

/** The unfunded user's placements written to the ledger: at most the refusal cap per window and node. */
function unfunded(run: HostileMixRun): HostileMixResult {
  const windows = Math.ceil(run.attackMs / REFUSAL_WINDOW_MS) + 1
  const bound = run.limits.refusedPerUserPerMinuteMax * windows * run.apiStates.length
  let written = 0
  for (const { state } of run.apiStates) {
    const bets = Object.values(state.ledger?.bets ?? {})
    written = Math.max(written, bets.filter((bet) => bet.userId === ATTACKER_USERS.broke).length)
  }
  const figure = `unfunded placements: ${run.attack.unfundedPlacements} sent, ${written} written to the ledger (at most ${bound})`
  return { problems: written > bound ? [`${figure}: the refusal cap did not hold`] : [], figures: [figure] }
}

function absurdOdds(run: HostileMixRun): HostileMixResult {
  const problems: string[] = []
  let booked = 0
  let won = 0
  for (const { node, state } of run.apiStates) {
    const bets = Object.entries(state.ledger?.bets ?? {}).filter(
      ([, bet]) =>
        bet.userId === ATTACKER_USERS.odds && bet.odds === ABSURD_ODDS && bet.status !== 'rejected',
    )
    // Every API node folds the same ledger: count one node's, check every node's.
    booked = Math.max(booked, bets.length)
    won = Math.max(won, bets.filter(([, bet]) => bet.outcome === 'won').length)
    for (const [key, bet] of bets)
      if (bet.outcome === 'won' && bet.settledOdds === ABSURD_ODDS)
        problems.push(`${node}: ${key} was paid at the asked odds ${ABSURD_ODDS}`)
  }
  const paid = problems.length === 0 ? 'none paid at them' : 'some paid at them'
  const figure = `bets at odds ${ABSURD_ODDS} booked: ${booked}, ${won} won, ${paid}`
  return { problems: problems.slice(0, LISTED_MAX), figures: [figure] }
}

/** Every bet under a bettor's id must be the attacker's own, and no bettor may be told its id was taken. */
function victimIds(run: HostileMixRun): HostileMixResult {
  const placedAt = new Map<string, number>()
  const stamps = new Map<string, string>()
  const problems: string[] = []
  for (const event of run.history) {
    if (event.type === 'place') placedAt.set(betKeyOf(event.userId, event.betId), event.atMs)
    else if (event.type === 'answer' && event.kind === 'provisional')
      stamps.set(betKeyOf(event.userId, event.betId), event.stamp)
    else if (event.type === 'answer' && event.kind === 'refused' && event.code === 'BET_ID_REUSED')
      problems.push(`bettor ${event.userId} was told its bet id ${event.betId} was used for another bet`)
  }
  let before = 0
  let after = 0
  for (const own of run.attack.ownBets) {
    const key = betKeyOf(own.victim, own.betId)
    if (stamps.get(key) === own.stamp)
      problems.push(
        `the attacker's bet ${own.betId} was answered with ${own.victim}'s bet (stamp ${own.stamp})`,
      )
    const victimAtMs = placedAt.get(key)
    if (victimAtMs === undefined) continue
    if (victimAtMs < own.atMs) before++
    else after++
  }
  const figure = `attacker's bets under bettors' ids: ${run.attack.ownBets.length}; a bettor placed the same id before ${before}, after ${after}`
  return { problems: problems.slice(0, LISTED_MAX), figures: [figure] }
}

function attackerAnswers(run: HostileMixRun): HostileMixResult {
  const { wrong, wrongCount } = run.attack
  const problems =
    wrongCount === 0
      ? []
      : [`${wrongCount} answers the attacker must never get: ${wrong.slice(0, LISTED_MAX).join('; ')}`]
  return { problems, figures: [] }
}

/** The attacker's rounds and answers by class and code, then its findings: lines for the report. */
export function describeAttack(report: AttackReport): string[] {
  const lines = Object.entries(report.answers).map(([attack, answers]) => {
    const codes = Object.entries(answers)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([code, count]) => `${code} ${count}`)
    const rounds = report.rounds[attack as keyof AttackReport['rounds']]
    return `attacker ${attack}: ${rounds} rounds; ${codes.length === 0 ? 'no answer counted' : codes.join(', ')}`
  })
  for (const [finding, count] of Object.entries(report.findings))
    lines.push(`attacker finding (${count}x): ${finding}`)
  return lines
}
