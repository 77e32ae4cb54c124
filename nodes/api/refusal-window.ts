/**
 * Refused placements per user, per fixed one-minute window, on one API node. A placement the
 * ledger refuses (no funds, a limit) is still an entry in the user's shard, so a user who keeps
 * sending bets they cannot cover would fill a stream that refuses writes when full. Past
 * `perMinuteMax` refusals in a window, the node refuses such a user's placements that its own fold
 * already says the ledger would refuse, without writing them. A placement the fold says the
 * balance cannot cover is counted before it is written, so a burst of them sent at once is capped
 * too. A node still reading the ledger back at start counts nothing: its balances are not yet the
 * ledger's (bet-checks.ts). Bounded: at most `usersMax` users
 * are tracked; the one whose window is oldest is forgotten first.
 */

export const REFUSAL_WINDOW_MS = 60_000

export interface RefusalWindowOptions {
  readonly perMinuteMax: number
  readonly usersMax: number
  readonly now: () => number
}

export interface RefusalWindow {
  /** Count one refusal of the user's placement. */
  record(userId: string): void
  /** Whether the user has passed the cap in the current window. */
  abusing(userId: string): boolean
  tracked(): number
}

interface Window {
  readonly startMs: number
  count: number
}

export function createRefusalWindow(options: RefusalWindowOptions): RefusalWindow {
  // Insertion order is window-start order: a user's window is re-inserted when it starts afresh.
  const windows = new Map<string, Window>()
  const current = (userId: string): Window | undefined => {
    const window = windows.get(userId)
    if (window !== undefined && options.now() - window.startMs < REFUSAL_WINDOW_MS) return window
    windows.delete(userId)
    return undefined
  }
  return {
    record(userId) {
      const window = current(userId)
      if (window !== undefined) {
        window.count += 1
        return
      }
      if (windows.size >= options.usersMax) windows.delete(windows.keys().next().value as string)
      windows.set(userId, { startMs: options.now(), count: 1 })
    },
    abusing: (userId) => (current(userId)?.count ?? 0) >= options.perMinuteMax,
    tracked: () => windows.size,
  }
}
