/**
 * Which other writers of a game this trader has not heard from: a writer is heard when its
 * watermark moves, and silent once it has not moved for takeoverAfterMs. Asked once a tick.
 */

import { activeWriters, type StampKey, watermarkOf } from '../../crdt/index.ts'
import type { TraderContext } from './trader-context.ts'

/** A gap between a trader's own ticks longer than this share of takeoverAfterMs: it was paused. */
const SELF_PAUSE_SHARE = 0.5

export interface SilentWriters {
  /** The writers of the game, other than this one, not heard from for takeoverAfterMs. */
  find(): string[]
  /** Start listening for a writer afresh (once it is fenced). */
  forget(writer: string): void
}

export function createSilentWriters(
  context: Pick<TraderContext, 'replica' | 'limits' | 'now' | 'me'>,
): SilentWriters {
  const { replica, limits, now, me } = context
  /** Per other writer: its watermark when this trader last saw it move, and when that was. */
  const heard = new Map<string, { watermark: StampKey | null; atMs: number }>()
  let lastTickMs = now()
  return {
    find() {
      // A trader that was itself paused heard nothing because it listened to nothing: start over.
      if (now() - lastTickMs > limits.takeoverAfterMs * SELF_PAUSE_SHARE) heard.clear()
      lastTickMs = now()
      const silent: string[] = []
      for (const writer of activeWriters(replica.game)) {
        if (writer === me) continue
        const watermark = watermarkOf(replica.game, writer)
        const seen = heard.get(writer)
        if (seen === undefined || seen.watermark !== watermark) heard.set(writer, { watermark, atMs: now() })
        else if (now() - seen.atMs > limits.takeoverAfterMs) silent.push(writer)
      }
      return silent
    },
    forget(writer) {
      heard.delete(writer)
    },
  }
}
