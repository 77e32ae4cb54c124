/**
 * Ledger shards. A region's money is split over a fixed number of shards, fixed when the region is
 * created; a user's entries all live on one shard, chosen by a hash of the user id every process
 * agrees on. Each shard is a stream of its own (`LEDGER_<REGION>_<SHARD>`), and each API and
 * settlement node serves a configured set of shards: it reads, folds and answers for those alone.
 */

export const DEFAULT_SHARDS = 8
/** The most shards a region may have: every shard is an R3 stream on each of the region's servers. */
export const SHARDS_MAX = 64

/** FNV-1a over the user id: a stable shard every process agrees on. */
export function shardOf(userId: string, shards: number): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < userId.length; i++) {
    hash ^= userId.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash % shards
}

/** One item of a shard set: a shard (`3`) or an inclusive range (`0-3`). */
export const SHARD_SET_ITEM_SOURCE = '[0-9]{1,3}(?:-[0-9]{1,3})?'

/**
 * The shards a node serves, from items such as `0-3` and `5`: sorted, each once. No items means
 * every shard. Throws a RangeError naming the item when one is outside `0..shards-1`.
 */
export function parseShardSet(items: readonly string[], shards: number): readonly number[] {
  if (items.length === 0) return Array.from({ length: shards }, (_, shard) => shard)
  const served = new Set<number>()
  for (const item of items) {
    const match = /^(\d{1,3})(?:-(\d{1,3}))?$/.exec(item)
    const first = Number(match?.[1])
    const last = Number(match?.[2] ?? match?.[1])
    if (match === null || first > last || last >= shards)
      throw new RangeError(
        `shard set item ${JSON.stringify(item)} is not a shard or range within 0-${shards - 1}`,
      )
    for (let shard = first; shard <= last; shard++) served.add(shard)
  }
  return [...served].sort((a, b) => a - b)
}
