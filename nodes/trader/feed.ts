/**
 * What a match feed tells the trader. A feed adapter turns a provider's wire format (or a
 * recording, or the simulator) into these events; the trader prices and runs markets from them.
 */

export type Side = 'home' | 'away'

export type FeedEvent =
  | { readonly type: 'match-start'; readonly home: string; readonly away: string; readonly server: Side }
  /** Players are set for a point: the trader opens its markets. */
  | { readonly type: 'point-start'; readonly point: number; readonly server: Side }
  /** The ball is struck: markets on the point suspend. */
  | { readonly type: 'serve'; readonly point: number; readonly second: boolean }
  /** A first-serve fault: markets may reopen at second-serve prices until the next serve. */
  | { readonly type: 'fault'; readonly point: number }
  | { readonly type: 'point-end'; readonly point: number; readonly winner: Side; readonly ace: boolean }
  /** The provider corrects itself: bets on the point stamped in [fromMs, toMs] are void. */
  | { readonly type: 'correction'; readonly point: number; readonly fromMs: number; readonly toMs: number }
  | { readonly type: 'match-end' }
  /**
   * Nothing happened, and the feed is alive: the trader suspends a match's open markets when its
   * feed says nothing for `staleFeedMs`, and between a point's start and its serve there may be
   * nothing else to say for longer than that.
   */
  | { readonly type: 'alive' }

/** Where a trader that takes over a match in progress picks it up. */
export interface FeedResume {
  /** The last point the previous trader opened: delivery starts with the next one. */
  readonly afterPoint: number
}

export interface FeedAdapter {
  readonly name: string
  /**
   * Start delivering events; `emit` is called in feed order. With `resume`, join the match in
   * progress: no match start, and nothing before point `afterPoint + 1`.
   */
  start(emit: (event: FeedEvent) => void, resume?: FeedResume): void
  stop(): void
}

const SIDES: readonly string[] = ['home', 'away']

/** Validate an untrusted feed event (replay files, provider adapters), or return null. */
export function parseFeedEvent(value: unknown): FeedEvent | null {
  if (typeof value !== 'object' || value === null) return null
  const v = value as Record<string, unknown>
  const point = Number.isSafeInteger(v.point) && (v.point as number) > 0 ? (v.point as number) : null
  switch (v.type) {
    case 'match-start':
      return typeof v.home === 'string' && typeof v.away === 'string' && SIDES.includes(v.server as string)
        ? {
            type: 'match-start',
            home: v.home.slice(0, 100),
            away: v.away.slice(0, 100),
            server: v.server as Side,
          }
        : null
    case 'point-start':
      return point && SIDES.includes(v.server as string)
        ? { type: 'point-start', point, server: v.server as Side }
        : null
    case 'serve':
      return point && typeof v.second === 'boolean' ? { type: 'serve', point, second: v.second } : null
    case 'fault':
      return point ? { type: 'fault', point } : null
    case 'point-end':
      return point && SIDES.includes(v.winner as string) && typeof v.ace === 'boolean'
        ? { type: 'point-end', point, winner: v.winner as Side, ace: v.ace }
        : null
    case 'correction': {
      const valid =
        point &&
        Number.isSafeInteger(v.fromMs) &&
        Number.isSafeInteger(v.toMs) &&
        (v.fromMs as number) <= (v.toMs as number)
      return valid ? { type: 'correction', point, fromMs: v.fromMs as number, toMs: v.toMs as number } : null
    }
    case 'match-end':
      return { type: 'match-end' }
    case 'alive':
      return { type: 'alive' }
    default:
      return null
  }
}
