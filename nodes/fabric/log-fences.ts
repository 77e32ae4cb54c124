/**
 * Takeover fences as the log decides them. Every node reads one game's updates in the same order
 * and decides each the same way: drop it, or apply it and record the fences it carries. The
 * replica then reads the fences it holds in stamp order (crdt/game.ts): a fence counts only if its
 * author was active at the fence's stamp. The log's decisions must never disagree with that
 * reading, or finality waits for a writer the log has made stand down. So an update is dropped when
 * - its writer is fenced already (its later updates do not count, wherever they are stamped);
 * - it fences a writer that is fenced already (the first fence in the log wins);
 * - it fences a writer, at stamp s, that has itself fenced someone at a stamp after s: applying it
 *   would end that writer's span before its own fence, and the replica would drop an accepted
 *   fence that the log keeps (three writers racing: B fences A at 100, then C fences B at 95);
 * - its writer lost a fence race before (one of its fences was dropped): such a writer stands down
 *   when it reads the drop back, but it may have taken over and published more meanwhile, and two
 *   writers must never run the same markets.
 * Pure: no I/O, no clock. Its inputs are the update's headers (replica-sync.ts).
 */

import type { StampKey } from '../../crdt/index.ts'

export type FenceDropReason =
  | 'writer fenced'
  | 'already fenced'
  | 'fences a later fencer'
  | 'lost a fence race'

/** One fence an update carries: whom, and at which stamp (absent from an older writer's updates). */
export interface LogFence {
  readonly target: string
  readonly stamp?: StampKey
}

export interface LogFences {
  /** Decide an update in log order: null to apply it (its fences are then recorded), else why not. */
  decide(writer: string | undefined, fences: readonly LogFence[]): FenceDropReason | null
  /** Record a fence the log accepted earlier (from a snapshot, which is a prefix of the log). */
  record(target: string, fencer: string, stamp: StampKey | undefined): void
  /** The writer that fenced `writer`, by the log's account, or null. */
  fencedBy(writer: string): string | null
}

export function createLogFences(): LogFences {
  /** Fenced writer -> its fencer. */
  const fenced = new Map<string, string>()
  /** Writer -> the latest stamp of a fence it authored that the log accepted. */
  const latestAuthored = new Map<string, StampKey>()
  /** Writers one of whose fences the log dropped. */
  const lost = new Set<string>()

  function record(target: string, fencer: string, stamp: StampKey | undefined): void {
    fenced.set(target, fencer)
    if (stamp === undefined) return
    const latest = latestAuthored.get(fencer)
    if (latest === undefined || stamp > latest) latestAuthored.set(fencer, stamp)
  }

  function refusal(fences: readonly LogFence[]): FenceDropReason | null {
    if (fences.some(({ target }) => fenced.has(target))) return 'already fenced'
    for (const { target, stamp } of fences) {
      const latest = latestAuthored.get(target)
      if (stamp !== undefined && latest !== undefined && latest > stamp) return 'fences a later fencer'
    }
    return null
  }

  return {
    decide(writer, fences) {
      if (!writer) return null
      if (fenced.has(writer)) return 'writer fenced'
      if (lost.has(writer)) return 'lost a fence race'
      const reason = refusal(fences)
      if (reason !== null) {
        lost.add(writer)
        return reason
      }
      for (const { target, stamp } of fences) record(target, writer, stamp)
      return null
    },
    record,
    fencedBy: (writer) => fenced.get(writer) ?? null,
  }
}
