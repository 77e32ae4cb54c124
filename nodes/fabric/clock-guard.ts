/**
 * The clock bound, enforced. A node may stamp and judge bets only while its hybrid logical clock
 * holds every stamp its replicas hold: then a bet stamped after the node applied a suspension is
 * stamped after that suspension. The HLC refuses to merge a stamp that leads the node's wall clock
 * by more than `maxDriftMs` (crdt/hlc.ts), and such a stamp is not dropped here: it is held, and
 * the node is unsafe until its clock can merge it. An update that carries it is still applied, so
 * the replica stays the stream's; only judging stops.
 *
 * The guard also estimates the node's offset, two ways, and exports both:
 * - from writers' heartbeats: a heartbeat's stamp is the writer's hybrid clock when it was sent,
 *   so its wall minus the local clock at receipt is the writer's offset from this node plus the
 *   transit time, or more: a writer that merged a stamp from a clock ahead of its own sends that
 *   stamp's wall. The guard keeps, per writer, the least observation of each second
 *   (`WRITER_OFFSET_BUCKET_MS`) of the last `WRITER_OFFSET_TTL_MS`, and takes their median: a node
 *   far ahead of a writer was seen to pass the check once that writer had merged other writers'
 *   stamps, when the guard took the latest heartbeat (the simulator found it), and nodes were seen
 *   to refuse every bet for ten seconds when the guard took the least, after a healed partition
 *   delivered heartbeats five seconds late (a chaos run found it); either shows in a few seconds,
 *   a clock's true offset in all;
 * - from the cluster probe (clock-probe.ts): the median offset of every node that answered.
 * An offset beyond the bound either way makes the node unsafe: a node far behind cannot merge
 * what it applies, and a node far ahead stamps bets into the future, where every verdict waits
 * for the writers' clocks to get there.
 *
 * Operators keep clocks within the bound (NTP); the guard makes a node that is not say so and
 * refuse, rather than accept a past-posted bet. Both the refusal and readiness read `unsafe()`.
 */

import { ClockDriftError, compareStamps, type Hlc, type Stamp } from '../../crdt/index.ts'

/** Heartbeat offsets older than this say nothing about the clock now. */
export const WRITER_OFFSET_TTL_MS = 10_000
/** Writers whose offsets the guard keeps; past this the oldest observation is forgotten. */
export const WRITERS_OBSERVED_MAX = 1_024
/** A writer's observations are kept as the least per bucket of this many ms. */
export const WRITER_OFFSET_BUCKET_MS = 1_000

export interface ClockGuardOptions {
  readonly hlc: Hlc
  /** The node's wall clock, the HLC's source. */
  readonly now: () => number
}

export interface ClockOffsets {
  /** The largest offset seen from a writer's fresh heartbeat (writer minus this node), or null. */
  readonly writersMs: number | null
  /** This node's offset from the cluster's median, by the last probe, or null before one. */
  readonly probeMs: number | null
  /** How far the held stamp leads the local clock, or 0 when none is held. */
  readonly heldLeadMs: number
}

export interface ClockGuard {
  readonly maxDriftMs: number
  /** Merge a stamp the node now holds; one beyond the bound is held until the clock can take it. */
  merge(stamp: Stamp): void
  /** A writer's heartbeat stamped `wallMs` arrived now. */
  observeWriter(writer: string, wallMs: number): void
  /** The cluster probe's estimate of this node's own offset (positive: this node runs ahead). */
  observeProbe(offsetMs: number | null): void
  /** Why this node must not stamp or judge now, or null when it may. Retries a held stamp. */
  unsafe(): string | null
  /** How far the held stamp leads the local clock, or 0 when none is held; cheap enough per update. */
  heldLeadMs(): number
  offsets(): ClockOffsets
}

export function createClockGuard(options: ClockGuardOptions): ClockGuard {
  const { hlc, now } = options
  const maxDriftMs = hlc.maxDriftMs
  /** The highest stamp the clock refused to merge and does not hold yet. */
  let held: Stamp | null = null
  /** Per writer, the least offset observed in each bucket of the last WRITER_OFFSET_TTL_MS. */
  const writers = new Map<string, Map<number, { offsetMs: number; atMs: number }>>()
  let probeMs: number | null = null

  function tryMerge(stamp: Stamp): boolean {
    try {
      hlc.receive(stamp)
      return true
    } catch (error) {
      if (error instanceof ClockDriftError) return false
      throw error
    }
  }

  function heldLeadMs(): number {
    return held === null ? 0 : Math.max(0, held.wall - now())
  }

  function writersOffsetMs(): number | null {
    const at = now()
    let largest: number | null = null
    for (const [writer, buckets] of writers) {
      const minima: number[] = []
      for (const [bucket, seen] of buckets) {
        // A bucket counts while its latest observation is within the TTL.
        if (at - seen.atMs > WRITER_OFFSET_TTL_MS) buckets.delete(bucket)
        else minima.push(seen.offsetMs)
      }
      if (minima.length === 0) {
        writers.delete(writer)
        continue
      }
      // The median of the buckets' least offsets: a writer's clock shows in every bucket, while a
      // burst of heartbeats that a healed partition delivered seconds late, or a writer's clock
      // that merged another's stamp, shows in few.
      minima.sort((a, b) => a - b)
      const offset = minima[Math.floor((minima.length - 1) / 2)] as number
      if (largest === null || Math.abs(offset) > Math.abs(largest)) largest = offset
    }
    return largest
  }

  return {
    maxDriftMs,
    merge(stamp) {
      if (held !== null && compareStamps(stamp, held) <= 0) return
      if (tryMerge(stamp)) return
      held = stamp
    },
    observeWriter(writer, wallMs) {
      if (!writers.has(writer) && writers.size >= WRITERS_OBSERVED_MAX) {
        writers.delete(writers.keys().next().value as string)
      }
      const atMs = now()
      const offsetMs = wallMs - atMs
      const buckets = writers.get(writer) ?? new Map<number, { offsetMs: number; atMs: number }>()
      const bucket = Math.floor(atMs / WRITER_OFFSET_BUCKET_MS)
      buckets.set(bucket, { offsetMs: Math.min(offsetMs, buckets.get(bucket)?.offsetMs ?? offsetMs), atMs })
      // Observations come in time order: the buckets stay within the TTL's count.
      if (buckets.size > WRITER_OFFSET_TTL_MS / WRITER_OFFSET_BUCKET_MS + 1)
        buckets.delete(buckets.keys().next().value as number)
      writers.delete(writer)
      writers.set(writer, buckets)
    },
    observeProbe(offsetMs) {
      probeMs = offsetMs
    },
    unsafe() {
      if (held !== null) {
        if (tryMerge(held)) held = null
        else
          return `the replica holds a stamp ${held.wall - now()} ms ahead of this node's clock, beyond the ${maxDriftMs} ms bound`
      }
      const writersMs = writersOffsetMs()
      if (writersMs !== null && Math.abs(writersMs) > maxDriftMs)
        return `a writer's clock is ${writersMs} ms off this node's, beyond the ${maxDriftMs} ms bound`
      if (probeMs !== null && Math.abs(probeMs) > maxDriftMs)
        return `this node's clock is ${probeMs} ms off the cluster's, beyond the ${maxDriftMs} ms bound`
      return null
    },
    heldLeadMs,
    offsets() {
      return { writersMs: writersOffsetMs(), probeMs, heldLeadMs: heldLeadMs() }
    },
  }
}
