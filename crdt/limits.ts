/**
 * Every bound of the CRDT core in one place. Units are last in each name.
 * Shells (nodes, gateway) may tighten these through their own config, never loosen them.
 */

/** Digits of the wall-clock part of an encoded stamp: 13 decimal digits reach the year 2286. */
export const STAMP_WALL_DIGITS = 13
/** Digits of the logical counter of an encoded stamp. */
export const STAMP_LOGICAL_DIGITS = 6
/** The largest logical counter a stamp can carry; the clock refuses to tick past it. */
export const STAMP_LOGICAL_MAX = 10 ** STAMP_LOGICAL_DIGITS - 1
/** Node ids are padded to this width so that every encoded stamp has the same length. */
export const NODE_ID_LENGTH_MAX = 24

/**
 * How long after a market's first result claim a void (a feed correction) may be stamped and still
 * count. Settlement waits this long after the result before paying; a later correction counts
 * nowhere, so no payout is ever taken back.
 */
export const CORRECTION_WINDOW_MS = 250

/** Default bound on how far a remote stamp may lead the local clock. */
export const DEFAULT_MAX_DRIFT_MS = 5_000

/** Market, selection and game ids: short, printable, safe in NATS subjects. */
export const ID_LENGTH_MAX = 64
export const NAME_LENGTH_MAX = 200
export const REASON_LENGTH_MAX = 200
export const SELECTIONS_PER_MARKET_MAX = 64
export const WRITERS_PER_GAME_MAX = 16
/** Ops in one commit; a commit is one update on the wire. */
export const OPS_PER_COMMIT_MAX = 256

/** Decimal odds are integers in thousandths: 2150 means 2.15. */
export const ODDS_SCALE = 1000
export const ODDS_MIN = 1001
export const ODDS_MAX = 1_000_000

/** The game clock counts milliseconds; one day bounds any period. */
export const GAME_CLOCK_MS_MAX = 86_400_000
export const GAME_PERIOD_MAX = 100
/** A heartbeat's document version (a Yjs state vector or Automerge heads, encoded). */
export const HEARTBEAT_VERSION_LENGTH_MAX = 4_096
