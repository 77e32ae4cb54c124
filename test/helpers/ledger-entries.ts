/** Ledger entries for tests: a bet on match-1's first point at 2.000, policy `any`. */

import type { BetEntry } from '../../ledger/index.ts'

export const TEST_STAMP = '1800000000000.000000.api-1+++++++++++++++++++'
export const TEST_PLACED_AT_MS = 1_800_000_000_000

export function betEntry(
  id: string,
  userId: string,
  stakeCents: number,
  extra: Partial<BetEntry> = {},
): BetEntry {
  return {
    type: 'bet',
    id,
    userId,
    gameId: 'match-1',
    marketId: 'p1-winner',
    selectionId: 'home',
    stakeCents,
    odds: 2_000,
    policy: 'any',
    stamp: TEST_STAMP,
    placedAtMs: TEST_PLACED_AT_MS,
    ...extra,
  }
}
