/**
 * A checker report for people and for machines: text with one line per invariant (PASS or FAIL,
 * what was checked, then the counterexamples under it), and JSON with every object's keys sorted,
 * so that two reports of the same run are byte-identical and diff cleanly.
 */

import type { Counterexample, FinalizationStats, InvariantResult, Report, RunCounts } from './checker.ts'

/** Counts keyed by code, largest first, ties by code, so the text is stable. */
function byCount(counts: Readonly<Record<string, number>>): string {
  const entries = Object.entries(counts).sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0))
  return entries.length === 0 ? 'none' : entries.map(([key, count]) => `${key} ${count}`).join(', ')
}

function sum(counts: Readonly<Record<string, number>>): number {
  return Object.values(counts).reduce((total, count) => total + count, 0)
}

function renderCounterexample(example: Counterexample): string {
  return `      - ${example.kind} ${example.id}: ${example.problem}`
}

function renderInvariant(invariant: InvariantResult): string[] {
  const verdict = invariant.pass ? 'PASS' : 'FAIL'
  const details = Object.entries(invariant.details)
    .map(([key, value]) => `${key} ${value}`)
    .join(', ')
  const head =
    `${verdict}  ${invariant.number}. ${invariant.title}: checked ${invariant.checked}, ` +
    `violations ${invariant.violations}${details === '' ? '' : ` (${details})`}`
  const shown = invariant.counterexamples.map(renderCounterexample)
  const hidden = invariant.violations - invariant.counterexamples.length
  if (hidden > 0) shown.push(`      ... and ${hidden} more`)
  return [head, ...shown]
}

function renderCounts(counts: RunCounts): string[] {
  return [
    `bets: placed ${counts.betsPlaced}, acknowledged ${counts.acknowledged} (${counts.acknowledgedAccepted} provisionally accepted), ` +
      `refused ${sum(counts.refusedByCode)} (${byCount(counts.refusedByCode)}), errors ${sum(counts.errorsByCode)} ` +
      `(${byCount(counts.errorsByCode)}), timed out ${counts.timedOut}, unanswered ${counts.unanswered}`,
    `finalized: accepted ${counts.finalizedAccepted}, rejected ${sum(counts.finalizedRejectedByReason)} ` +
      `(${byCount(counts.finalizedRejectedByReason)})`,
    `settled: ${sum(counts.settledByOutcome)} (${byCount(counts.settledByOutcome)}), paid ${counts.paid}`,
    `deposits: acknowledged ${counts.depositsAcknowledged} (${counts.depositCentsAcknowledged} cents), ` +
      `unacknowledged ${counts.depositsUnacknowledged}`,
    `faults: ${sum(counts.faultsByKind)} (${byCount(counts.faultsByKind)})`,
  ]
}

function renderFinalization(stats: FinalizationStats): string {
  const from = stats.healedAtMs === null ? 'placement (no fault healed)' : `the heal at ${stats.healedAtMs}`
  if (stats.measured === 0) return `finalization: no final status to measure after ${from}`
  return (
    `finalization after ${from}: ${stats.measured} bets, max ${stats.maxMs} ms, p99 ${stats.p99Ms} ms ` +
    `(bound ${stats.boundMs} ms)`
  )
}

export function renderText(report: Report): string {
  const failed = report.invariants.filter((invariant) => !invariant.pass).length
  const title = report.pass
    ? `chaos check: PASS (all ${report.invariants.length} invariants hold)`
    : `chaos check: FAIL (${failed} of ${report.invariants.length} invariants broken)`
  return [
    title,
    ...report.invariants.flatMap(renderInvariant),
    ...renderCounts(report.counts),
    renderFinalization(report.finalization),
  ].join('\n')
}

/** A copy with every object's keys in code-point order; arrays keep their order. */
function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (typeof value !== 'object' || value === null) return value
  const sorted: Record<string, unknown> = Object.create(null)
  for (const key of Object.keys(value).sort()) sorted[key] = sortKeys((value as Record<string, unknown>)[key])
  return sorted
}

export function renderJson(report: Report): string {
  return JSON.stringify(sortKeys(report), null, 2)
}
