/**
 * Guards for untrusted JSON-shaped values: what the ledger's parsers (entries and snapshots) check
 * every field with. Pure.
 */

import {
  BOOK_USER_ID,
  ENTRY_ID_LENGTH_MAX,
  ENTRY_ID_PATTERN,
  entryKeyParts,
  isUserId,
} from '../protocol/ids.ts'

export type Raw = Record<string, unknown>

/**
 * Keys that only a hostile or broken writer sends. Refusing the entry outright is simpler to reason
 * about than dropping them and hoping no consumer ever spreads the raw object.
 */
const FORBIDDEN_KEYS = ['__proto__', 'constructor', 'prototype']

export function isEntryId(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value.length >= 1 &&
    value.length <= ENTRY_ID_LENGTH_MAX &&
    ENTRY_ID_PATTERN.test(value)
  )
}

export function isIntegerIn(value: unknown, min: number, max: number): value is number {
  return Number.isSafeInteger(value) && (value as number) >= min && (value as number) <= max
}

/** A plain object (JSON-shaped), with none of the keys that only serve prototype pollution. */
export function isRecord(value: unknown): value is Raw {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) return false
  return FORBIDDEN_KEYS.every((key) => !Object.hasOwn(value, key))
}

/** An own data property only: inherited values and getters read as missing. */
export function field(raw: Raw, key: string): unknown {
  return Object.getOwnPropertyDescriptor(raw, key)?.value
}

const ENTRY_TYPES = ['deposit', 'withdrawal', 'bet', 'settlement']
const BOOK_ENTRY_TYPES = ['allowance-grant', 'allowance-receipt']

/** An entry's key as a snapshot stores it: kind, user and entry id (protocol/ids.ts, entryKeyOf). */
export function isEntryKey(value: unknown): value is string {
  if (typeof value !== 'string') return false
  const { type, userId, id } = entryKeyParts(value)
  if (BOOK_ENTRY_TYPES.includes(type)) return userId === BOOK_USER_ID && isEntryId(id)
  return ENTRY_TYPES.includes(type) && isUserId(userId) && isEntryId(id)
}
