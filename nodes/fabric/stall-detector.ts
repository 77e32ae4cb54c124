/**
 * When a node's first connection's server is the trouble, not the stream (transport.ts): that
 * server has acknowledged none of the appends sent through it for STALL_SILENT_MS, while the
 * second connection, to another server, acknowledges them. A server cut off or paused answers
 * nothing, so a steady flow of appends finds it within about STALL_SILENT_MS. A server that is only
 * slow, as every server is while the machine is saturated, still answers now and then, and each
 * answer starts the silence over: a bench:bets run at 2,000 bets/s on 2 cores had an API node move
 * off a healthy server when the rule was "three appends in a row answered through the second
 * connection first", and the reconnect cost 954 bets their answer.
 */

/** How long the first connection may answer nothing while the second answers. */
export const STALL_SILENT_MS = 500
/** The node moves off a server at most this often. */
export const STALL_MOVE_MIN_MS = 2_000

export interface StallDetector {
  /** An append was sent through the first connection. */
  sentThroughFirst(): void
  /** The first connection acknowledged an append (whichever answered it first). */
  answeredThroughFirst(): void
  /**
   * The second connection answered an append first: true when the node should move off the first
   * connection's server now.
   */
  answeredThroughSecond(): boolean
}

export function createStallDetector(now: () => number = Date.now): StallDetector {
  /** When the oldest append sent through the first since its last acknowledgement there went out. */
  let silentSince: number | null = null
  let movedAtMs = Number.NEGATIVE_INFINITY
  return {
    sentThroughFirst() {
      silentSince ??= now()
    },
    answeredThroughFirst() {
      silentSince = null
    },
    answeredThroughSecond() {
      const at = now()
      if (silentSince === null || at - silentSince < STALL_SILENT_MS) return false
      if (at - movedAtMs < STALL_MOVE_MIN_MS) return false
      movedAtMs = at
      silentSince = null
      return true
    },
  }
}
