/** Prices from probabilities: decimal odds in thousandths with the book's margin. */

import { ODDS_MAX, ODDS_MIN, ODDS_SCALE } from '../../crdt/index.ts'

export const DEFAULT_MARGIN = 0.05

/** Odds for an outcome of probability `p`, shortened by the margin, within the odds bounds. */
export function oddsFor(p: number, margin = DEFAULT_MARGIN): number {
  const fair = ODDS_SCALE / (Math.min(Math.max(p, 1e-6), 1) * (1 + margin))
  return Math.min(ODDS_MAX, Math.max(ODDS_MIN, Math.round(fair)))
}

/** Prices for a two-way market where the first selection has probability `p`. */
export function twoWay(
  first: string,
  second: string,
  p: number,
  margin = DEFAULT_MARGIN,
): Record<string, number> {
  return { [first]: oddsFor(p, margin), [second]: oddsFor(1 - p, margin) }
}

/** The largest relative move of any selection's price between two price sets sharing selections. */
export function largestMove(
  before: Readonly<Record<string, number>>,
  after: Readonly<Record<string, number>>,
): number {
  let largest = 0
  for (const [selection, price] of Object.entries(after)) {
    const previous = before[selection]
    if (previous !== undefined) largest = Math.max(largest, Math.abs(price - previous) / previous)
  }
  return largest
}
