/**
 * The money ledger: entries and their limits (entries.ts), parsing untrusted messages (parse.ts),
 * the deterministic fold over one shard's log (state.ts, fold.ts) and its snapshots (snapshot.ts).
 * Pure: no I/O, no clock, no randomness. Nodes run it over JetStream in nodes/fabric/ledger-sync.ts.
 */

export * from './entries.ts'
export { createLedgerFold } from './fold.ts'
export { parseLedgerEntry, parseLedgerMessage } from './parse.ts'
