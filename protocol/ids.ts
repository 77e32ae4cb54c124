/**
 * The id grammars of the wire, each written once. The hand-written guards, the gateway's JSON
 * schemas and the options' patterns are all built from these sources; a test checks that no other
 * file outside the CRDT core writes an id pattern. Game, market, selection and node ids belong to
 * the core (crdt/ops.ts, crdt/hlc.ts) and are re-exported here.
 *
 * Client ids never hold '/'; ids the fabric derives always do (see the message ids below). User ids
 * are NATS subject tokens: no '.', no wildcard.
 */

import { ID_LENGTH_MAX, isId, isNodeId, NODE_ID_SOURCE } from '../crdt/index.ts'

export const USER_ID_LENGTH_MAX = 64
export const BET_ID_LENGTH_MIN = 8
export const BET_ID_LENGTH_MAX = 128
export const REGION_LENGTH_MAX = 16
/** Ids the fabric derives from a client's bet id (settlements) add a short prefix to it. */
export const ENTRY_ID_LENGTH_MAX = BET_ID_LENGTH_MAX + 16

export const USER_ID_SOURCE = `[A-Za-z0-9_-]{1,${USER_ID_LENGTH_MAX}}`
export const BET_ID_SOURCE = `[A-Za-z0-9_.:-]{${BET_ID_LENGTH_MIN},${BET_ID_LENGTH_MAX}}`
export const REGION_SOURCE = `[a-z][a-z0-9-]{0,${REGION_LENGTH_MAX - 1}}`
/**
 * A game id is one token of a NATS subject (`fabric.<region>.game.<gameId>`), so unlike other ids
 * it holds no '.': a trader of game `a.b` would publish where no stream listens.
 */
export const GAME_ID_SOURCE = `[A-Za-z0-9][A-Za-z0-9_:-]{0,${ID_LENGTH_MAX - 1}}`
/** A ledger entry's id: a client's id, or one the fabric derives (with a '/'). */
export const ENTRY_ID_SOURCE = `[A-Za-z0-9_.:/-]{1,${ENTRY_ID_LENGTH_MAX}}`
export { NODE_ID_SOURCE }

/** A source as a whole-value pattern. */
export const anchored = (source: string) => new RegExp(`^(?:${source})$`)

export const USER_ID_PATTERN = anchored(USER_ID_SOURCE)
export const BET_ID_PATTERN = anchored(BET_ID_SOURCE)
export const REGION_PATTERN = anchored(REGION_SOURCE)
export const ENTRY_ID_PATTERN = anchored(ENTRY_ID_SOURCE)

/**
 * Id namespaces. Clients choose bet ids, and their grammar has no '/'; every id the fabric derives
 * has one, so a client can never name a bet after a settlement (and block it). JetStream's
 * duplicate window is stream-wide, so the message id of an entry is scoped by its kind and user:
 * two users' bets with one id are two bets, and a bet can never be acknowledged as another entry.
 * The ledger fold keys entries and bets the same way, so no user's id can shadow another's.
 */
export const DERIVED_ID_SEPARATOR = '/'
export const SETTLEMENT_ID_PREFIX = `settle${DERIVED_ID_SEPARATOR}`
export const settlementIdOf = (betId: string) => `${SETTLEMENT_ID_PREFIX}${betId}`
/** An entry's key: its message id in the stream and its identity in the fold. */
/**
 * The user id of the book's own ledger entries (allowance transfers between shards). No user can
 * hold it: a user id has no `~`.
 */
export const BOOK_USER_ID = '~book'
export const entryKeyOf = (entry: { type: string; userId: string; id: string }) =>
  [entry.type, entry.userId, entry.id].join(DERIVED_ID_SEPARATOR)
export const betKeyOf = (userId: string, betId: string) => entryKeyOf({ type: 'bet', userId, id: betId })
/** The parts of an entry key; the entry id may itself hold the separator (a derived id). */
export function entryKeyParts(key: string): { type: string; userId: string; id: string } {
  const [type = '', userId = '', ...id] = key.split(DERIVED_ID_SEPARATOR)
  return { type, userId, id: id.join(DERIVED_ID_SEPARATOR) }
}

/** What a problem list says of each grammar. */
export const ID_RULES = {
  userId: `1-${USER_ID_LENGTH_MAX} characters of A-Z a-z 0-9 _ -`,
  betId: `${BET_ID_LENGTH_MIN}-${BET_ID_LENGTH_MAX} characters of A-Z a-z 0-9 _ . : -`,
  region: `a lowercase letter, then up to ${REGION_LENGTH_MAX - 1} of a-z 0-9 -`,
}

export const isUserId = (value: unknown): value is string =>
  typeof value === 'string' && USER_ID_PATTERN.test(value)
export const isBetId = (value: unknown): value is string =>
  typeof value === 'string' && BET_ID_PATTERN.test(value)
export { isId as isGameId, isNodeId }
