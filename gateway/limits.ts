/**
 * The gateway's bounds, each with its default: frames, rates, connections, send buffers, bets in
 * flight and queries. `gateway/options.ts` turns each into an option with an env var and a flag.
 */

export interface GatewayLimits {
  /** Frames larger than this get FRAME_TOO_LARGE; the connection goes on. */
  readonly frameBytesMax: number
  /** Frames larger than this close the connection (1009) before they are read. */
  readonly frameBytesHardMax: number
  readonly messagesPerSecond: number
  readonly messagesBurst: number
  readonly userMessagesPerSecond: number
  readonly userMessagesBurst: number
  /**
   * Users whose buckets (frames, upgrades) are kept after their sockets close, until refilled; past
   * this, refilled buckets are dropped first, then the least recently used.
   */
  readonly userBucketsMax: number
  /** Connection attempts (WebSocket upgrades) per user, counted once the token names the user. */
  readonly userUpgradesPerSecond: number
  readonly userUpgradesBurst: number
  /** Connection attempts per client address (an IPv6 /64), counted before the token is read. */
  readonly ipUpgradesPerSecond: number
  readonly ipUpgradesBurst: number
  /** Client addresses whose upgrade buckets are kept; past this, as for `userBucketsMax`. */
  readonly ipBucketsMax: number
  /** Rate-limited frames in a row after which the connection is closed (4029). */
  readonly floodCloseAfter: number
  readonly subscriptionsPerConnectionMax: number
  readonly connectionsPerUserMax: number
  readonly connectionsMax: number
  readonly conflateBytes: number
  readonly closeBytes: number
  readonly laggingMsMax: number
  readonly backpressureCheckMs: number
  readonly closedMarketsShown: number
  readonly resumeDeltasMax: number
  readonly placementsInFlightMax: number
  readonly placeTimeoutMs: number
  readonly hedgeAfterMs: number
  readonly answerWithinMs: number
  readonly trackedBetsPerUserMax: number
  readonly statusRecoverAfterMs: number
  readonly lookupsInFlightMax: number
  readonly queryTimeoutMs: number
}

export const DEFAULT_GATEWAY_LIMITS: GatewayLimits = {
  frameBytesMax: 4 * 1024,
  frameBytesHardMax: 64 * 1024,
  messagesPerSecond: 20,
  messagesBurst: 40,
  userMessagesPerSecond: 50,
  userMessagesBurst: 100,
  userBucketsMax: 50_000,
  userUpgradesPerSecond: 2,
  userUpgradesBurst: 10,
  ipUpgradesPerSecond: 50,
  ipUpgradesBurst: 200,
  ipBucketsMax: 50_000,
  floodCloseAfter: 200,
  subscriptionsPerConnectionMax: 16,
  connectionsPerUserMax: 8,
  connectionsMax: 20_000,
  conflateBytes: 256 * 1024,
  closeBytes: 4 * 1024 * 1024,
  laggingMsMax: 15_000,
  backpressureCheckMs: 50,
  closedMarketsShown: 4,
  resumeDeltasMax: 1_024,
  placementsInFlightMax: 10_000,
  placeTimeoutMs: 5_000,
  hedgeAfterMs: 250,
  // A client hears within a second: the gateway's own deadline leaves 100 ms for the way to it.
  answerWithinMs: 900,
  trackedBetsPerUserMax: 1_000,
  statusRecoverAfterMs: 5_000,
  lookupsInFlightMax: 32,
  queryTimeoutMs: 3_000,
}
