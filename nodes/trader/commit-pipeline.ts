/**
 * The trader's commit pipeline. Every op is stamped and committed to the local replica first, so a
 * heartbeat never promises what the replica does not hold, and then queued for publishing. The
 * queue is published in order, one update at a time; a failed publish is retried on the next tick
 * with the same message id until JetStream acknowledges it, so an update is never lost and never
 * stored twice. Heartbeats go out from here too, since each one promises what was committed.
 */

import { type Entry, encodeStamp, genesisOf, type Op, type Stamp, stampOps } from '../../crdt/index.ts'
import type { TraderContext } from './trader-context.ts'
import type { UpdateFence } from './trader-types.ts'

export interface CommitPipeline {
  /** Stamp and commit ops, if this trader is the active one; a standby writes nothing. */
  write(ops: readonly Op[]): void
  /** Commit and queue for publishing; false when the queue is full and nothing was committed. */
  commit(entries: readonly Entry[]): boolean
  /** Publish again whatever JetStream has not acknowledged yet. */
  retry(): void
  /** Promise every writer that the replica holds all this trader published up to `stamp` (default now). */
  heartbeat(stamp?: Stamp): void
  /** Updates committed and not yet acknowledged. */
  backlog(): number
  /** Forget every unpublished update: a trader that stood down must not publish them. */
  discard(): void
  /** Resolves when every committed update has been acknowledged (or publishing gave up for now). */
  flush(): Promise<void>
}

interface Unpublished {
  readonly update: Uint8Array
  readonly msgId: string
  readonly fences: readonly UpdateFence[]
}

export function createCommitPipeline(context: TraderContext): CommitPipeline {
  const { replica, hlc, log, limits, options, stats, state } = context
  const unpublished: Unpublished[] = []
  let publishing: Promise<void> = Promise.resolve()

  function commit(entries: readonly Entry[]): boolean {
    if (unpublished.length >= limits.unpublishedMax) {
      log.error(
        { unpublished: unpublished.length },
        'JetStream has not acknowledged updates; refusing to write more',
      )
      return false
    }
    const update = replica.commit(entries)
    options.onCommit?.(entries)
    stats.opsWritten += entries.length
    const fences = entries.flatMap((entry) =>
      entry.kind === 'fence' ? [{ target: entry.writer, stamp: entry.stamp }] : [],
    )
    unpublished.push({ update, msgId: (entries.at(-1) as { stamp: string }).stamp, fences })
    drain()
    return true
  }

  /** Publish queued updates in order, one at a time; a failure leaves the rest for the next tick. */
  function drain(): void {
    publishing = publishing.then(async () => {
      while (unpublished.length > 0) {
        const next = unpublished[0] as Unpublished
        if (state.role === 'fenced') return
        try {
          await options.publisher.publishUpdate(next.update, next.msgId, next.fences)
        } catch (error) {
          stats.publishRetries++
          log.warn({ err: error, msgId: next.msgId }, 'publish failed; will retry')
          return
        }
        unpublished.shift()
        stats.updatesPublished++
      }
    })
  }

  function heartbeat(given?: Stamp): void {
    if (genesisOf(replica.game) === null) return
    // A heartbeat promises that the replica holds all this writer ever published up to it: a
    // restarted writer must first have read its own earlier updates back from the log.
    if (!(options.caughtUp?.() ?? true)) return
    const stamp = given ?? hlc.now()
    if (options.mayPromise && !options.mayPromise(stamp.wall)) return
    options.publisher.publishHeartbeat(replica.heartbeat(encodeStamp(stamp)))
    stats.heartbeats++
  }

  return {
    write(ops) {
      if (ops.length === 0 || state.role !== 'active') return
      commit(stampOps(hlc, ops))
    },
    commit,
    retry() {
      if (unpublished.length > 0) drain()
    },
    heartbeat,
    backlog: () => unpublished.length,
    discard() {
      unpublished.length = 0
    },
    async flush() {
      drain()
      await publishing
    },
  }
}
