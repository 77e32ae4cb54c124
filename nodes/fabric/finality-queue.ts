/**
 * Items waiting for their stamp to become final, ordered by stamp. Finality is monotone in the
 * stamp (if a stamp is final, so is every earlier one), so each change of a replica only needs to
 * look at the head of the queue: draining costs the items that became final, not every item
 * still waiting, however many bets are open.
 */

import type { StampKey } from '../../crdt/index.ts'

export interface FinalityQueue<T extends { readonly stamp: StampKey }> {
  add(item: T): void
  /** Remove and return, in stamp order, every item whose stamp `isFinal` accepts. */
  drain(isFinal: (stamp: StampKey) => boolean): T[]
  size(): number
}

export function createFinalityQueue<T extends { readonly stamp: StampKey }>(): FinalityQueue<T> {
  let items: T[] = []
  let head = 0
  return {
    add(item) {
      const last = items[items.length - 1]
      if (last === undefined || last.stamp <= item.stamp) {
        items.push(item)
        return
      }
      // Rare: bets reach the ledger a little out of stamp order. Insert in place.
      let low = head
      let high = items.length
      while (low < high) {
        const mid = (low + high) >>> 1
        if ((items[mid] as T).stamp <= item.stamp) low = mid + 1
        else high = mid
      }
      items.splice(low, 0, item)
    },
    drain(isFinal) {
      const start = head
      while (head < items.length && isFinal((items[head] as T).stamp)) head++
      if (head === start) return []
      const drained = items.slice(start, head)
      // Compact now and then so the array does not keep every item ever added.
      if (head > 1_024 && head * 2 > items.length) {
        items = items.slice(head)
        head = 0
      }
      return drained
    },
    size: () => items.length - head,
  }
}
