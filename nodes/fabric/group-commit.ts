/**
 * Group commit of one node's bets, per ledger shard. The first bet after an idle moment is appended
 * at once, alone; the bets that arrive while a shard's append is in flight wait for it and then go
 * as one message, as many as fit (`countMax`, `bytesMax`), so a busy shard takes one ledger message
 * per round trip instead of one per bet. Each bet learns its message's sequence and its place in
 * it. A failed append fails every bet it held, and the next waiting group goes on: a bet whose
 * append failed may still stand, and its retry (same id) learns which.
 */

export interface GroupCommitOptions<T> {
  readonly shardOf: (item: T) => number
  /** Size of one item in the message, in bytes. */
  readonly bytesOf: (item: T) => number
  readonly countMax: number
  readonly bytesMax: number
  /** Items waiting for their shard's append, per shard; past it, `append` refuses. */
  readonly queuedMax: number
  /** Append one item alone, or several of one shard as one message; resolves with its sequence. */
  readonly appendOne: (item: T) => Promise<number>
  readonly appendMany: (shard: number, items: readonly T[]) => Promise<number>
}

export interface Placed {
  readonly seq: number
  /** The item's place among the message's entries: 0 when it went alone. */
  readonly index: number
}

export class GroupCommitFullError extends Error {
  constructor(shard: number, queued: number) {
    super(`${queued} entries already wait for shard ${shard}'s append`)
    this.name = 'GroupCommitFullError'
  }
}

interface Waiting<T> {
  readonly item: T
  readonly bytes: number
  readonly resolve: (placed: Placed) => void
  readonly reject: (error: unknown) => void
}

export interface GroupCommit<T> {
  append(item: T): Promise<Placed>
  /** Items waiting, over all shards (not those in flight). */
  queued(): number
  /** Messages appended and items they held, for the bets-per-message figure. */
  stats(): { messages: number; items: number }
}

export function createGroupCommit<T>(options: GroupCommitOptions<T>): GroupCommit<T> {
  const inFlight = new Set<number>()
  const queues = new Map<number, Waiting<T>[]>()
  let messages = 0
  let items = 0

  /** The next group of a shard's queue: as many as fit one message, at least one. */
  function nextGroup(queue: Waiting<T>[]): Waiting<T>[] {
    let bytes = 0
    let count = 0
    while (count < queue.length && count < options.countMax) {
      const size = (queue[count] as Waiting<T>).bytes
      if (count > 0 && bytes + size > options.bytesMax) break
      bytes += size
      count++
    }
    return queue.splice(0, Math.max(count, 1))
  }

  function send(shard: number, group: readonly Waiting<T>[]): void {
    inFlight.add(shard)
    const only = group.length === 1 ? (group[0] as Waiting<T>) : null
    const appended = only
      ? options.appendOne(only.item)
      : options.appendMany(
          shard,
          group.map((w) => w.item),
        )
    appended
      .then((seq) => {
        messages += 1
        items += group.length
        for (const [index, waiting] of group.entries()) waiting.resolve({ seq, index: only ? 0 : index })
      })
      .catch((error: unknown) => {
        for (const waiting of group) waiting.reject(error)
      })
      .finally(() => {
        inFlight.delete(shard)
        const queue = queues.get(shard)
        if (queue === undefined || queue.length === 0) return
        const next = nextGroup(queue)
        if (queue.length === 0) queues.delete(shard)
        send(shard, next)
      })
  }

  return {
    append(item) {
      const shard = options.shardOf(item)
      return new Promise<Placed>((resolve, reject) => {
        const waiting = { item, bytes: options.bytesOf(item), resolve, reject }
        if (!inFlight.has(shard)) {
          send(shard, [waiting])
          return
        }
        const queue = queues.get(shard) ?? []
        if (queue.length >= options.queuedMax) {
          reject(new GroupCommitFullError(shard, queue.length))
          return
        }
        queue.push(waiting)
        queues.set(shard, queue)
      })
    },
    queued: () => [...queues.values()].reduce((sum, queue) => sum + queue.length, 0),
    stats: () => ({ messages, items }),
  }
}
