/**
 * A writer's clock survives its restarts. A heartbeat promises that the writer will never publish
 * at or below its stamp, and heartbeats are not stored: a restarted trader whose clock started
 * from the machine's could stamp below a watermark it published before it died, and so change
 * verdicts that were already final.
 *
 * So a writer keeps a ceiling in the region's snapshot bucket (key `ceiling.<writer>`, one for all
 * the games its process writes, since they share its clock): a wall time it has promised not to
 * heartbeat past without first storing a higher one. Earlier versions kept one per game
 * (`clock.<gameId>.<writer>`); a writer restarted on those games also reads and merges those. The ceiling
 * runs `leaseMs` ahead of the clock and is renewed once the clock has used a quarter of that. A
 * heartbeat above the stored ceiling is not sent (the trader skips it; a late renewal costs a
 * missed heartbeat, never a broken promise). A restarted writer merges the stored ceiling plus one
 * millisecond into its clock before it stamps anything: every stamp it issues is then after every
 * stamp it published in earlier lives. The lease runs past the drift bound, so that merge waits
 * until the clock is within the bound of the ceiling (DEFAULT_CEILING_LEASE_MS says why).
 */

import type { Logger } from 'pino'
import { ClockDriftError, type Hlc } from '../../crdt/index.ts'
import { names } from '../../protocol/subjects.ts'
import { realTimers, sleep, type Timers } from '../fabric/timers.ts'
import type { SnapshotStore } from '../fabric/transport.ts'

/**
 * How far the ceiling runs ahead of the clock. It is renewed once the clock has used a quarter of
 * it, so it stays 7.5-10 s ahead: heartbeats go on while the bucket's stream elects a leader (4-8 s
 * measured on nats-server 2.9.10 when its leader's server was cut off), or while a renewal waits
 * out its request's 5 s timeout. At 4 s, one cut-off server stopped every heartbeat in the region
 * for seconds (every bet refused as REPLICA_STALE). The price: it runs past the 5 s drift bound
 * (DEFAULT_MAX_DRIFT_MS), so a writer restarted at once waits up to the difference, 5 s, before it
 * stamps (its clock can take the stored ceiling only within the bound).
 */
export const DEFAULT_CEILING_LEASE_MS = 10_000
/** Writes a renewal tries, each at the revision it last read, before it fails (and is tried later). */
const CEILING_WRITE_ATTEMPTS = 3
/** How often a restarted writer tries again to merge a ceiling its clock cannot take yet. */
export const CEILING_MERGE_RETRY_MS = 100
/**
 * After a failed renewal the next waits this long, doubling with each failure in a row up to
 * CEILING_RETRY_MS_MAX: a writer beats every 20 ms, and a bucket without a leader answers "no
 * responders" at once, so without a pause each beat would send the bucket another write (and the
 * log another line) for as long as its election lasts.
 */
export const CEILING_RETRY_MS_MIN = 50
export const CEILING_RETRY_MS_MAX = 250
/** Failures in a row are logged at the first, then at most once per this. */
export const CEILING_WARN_EVERY_MS = 5_000

export interface ClockCeilingOptions {
  readonly store: SnapshotStore
  /** The games the writer runs: their ceilings from earlier versions are merged too. */
  readonly gameIds: readonly string[]
  readonly hlc: Hlc
  readonly now: () => number
  readonly log: Logger
  readonly leaseMs?: number
  readonly timers?: Timers
}

export interface ClockCeiling {
  /** Whether a heartbeat stamped at `wallMs` keeps the promise; renews the ceiling when near it. */
  covers(wallMs: number): boolean
  /** The stored ceiling (wall ms), 0 before the first is stored. */
  value(): number
}

/** Read the stored ceiling, merge it into the clock (waiting until the clock can), store a new one. */
export async function restoreClockCeiling(options: ClockCeilingOptions): Promise<ClockCeiling> {
  const { store, hlc, now, log } = options
  const timers = options.timers ?? realTimers
  const key = names.ceilingKey(hlc.node)
  const leaseMs = options.leaseMs ?? DEFAULT_CEILING_LEASE_MS
  const own = await store.entry(key)
  // Each renewal is written at the revision the last one left, so a renewal that timed out and
  // reaches the bucket late (a stalled route delivers it after the heal) cannot replace a higher
  // ceiling with its lower one: it finds another revision and is refused.
  let revision = own?.revision ?? 0
  let previous = parseCeiling(own?.value ?? null, hlc.node)
  for (const gameId of options.gameIds)
    previous = Math.max(
      previous,
      parseCeiling(await store.get(names.gameCeilingKey(gameId, hlc.node)), hlc.node),
    )
  if (previous > 0) {
    await mergeWhenPossible(hlc, previous + 1, log, timers)
    log.info({ ceiling: previous }, 'clock resumed past its stored ceiling')
  }
  let ceiling = 0
  let renewing = false
  /** Renewals failed in a row, when the next may start, and when the last warning went out. */
  let failures = 0
  let retryAtMs = 0
  let warnedAtMs = Number.NEGATIVE_INFINITY

  async function renew(): Promise<void> {
    // Never below a ceiling stored before, even if the wall clock stepped back.
    const next = Math.max(ceiling, Math.max(now(), hlc.last().wall) + leaseMs)
    for (let attempt = 1; attempt <= CEILING_WRITE_ATTEMPTS; attempt++) {
      const written = await store.update(key, String(next), revision)
      if (written !== null) {
        revision = written
        ceiling = Math.max(ceiling, next)
        return
      }
      // Another write came first: an earlier renewal that timed out here and landed after all.
      // Whatever is stored is what a restart reads; go on from its revision.
      const stored = await store.entry(key)
      revision = stored?.revision ?? 0
      const value = parseCeiling(stored?.value ?? null, hlc.node)
      if (value >= next) {
        ceiling = Math.max(ceiling, value)
        return
      }
    }
    throw new Error(`the clock ceiling of ${hlc.node} kept changing under its renewal`)
  }
  await renew()

  return {
    covers(wallMs) {
      if (!renewing && wallMs > ceiling - (leaseMs * 3) / 4 && now() >= retryAtMs) {
        renewing = true
        renew()
          .then(
            () => {
              if (failures > 0) log.info({ failures }, 'the clock ceiling is stored again')
              failures = 0
              retryAtMs = 0
            },
            (error: unknown) => {
              failures++
              const at = now()
              retryAtMs = at + Math.min(CEILING_RETRY_MS_MAX, CEILING_RETRY_MS_MIN * 2 ** (failures - 1))
              if (failures > 1 && at - warnedAtMs < CEILING_WARN_EVERY_MS) return
              warnedAtMs = at
              log.warn({ err: error, failures }, 'storing the clock ceiling failed; heartbeats wait')
            },
          )
          .finally(() => {
            renewing = false
          })
      }
      return wallMs <= ceiling
    },
    value: () => ceiling,
  }
}

/** A stored ceiling (0 when none); anything but a wall time stops the writer. */
function parseCeiling(stored: Uint8Array | null, writer: string): number {
  const value = stored === null ? 0 : Number(new TextDecoder().decode(stored))
  if (!Number.isSafeInteger(value) || value < 0)
    throw new RangeError(`the stored clock ceiling of ${writer} is not a wall time; refusing to stamp`)
  return value
}

async function mergeWhenPossible(hlc: Hlc, wallMs: number, log: Logger, timers: Timers): Promise<void> {
  for (let warned = false; ; ) {
    try {
      hlc.receive({ wall: wallMs, logical: 0, node: hlc.node })
      return
    } catch (error) {
      if (!(error instanceof ClockDriftError)) throw error
      if (!warned) log.warn({ driftMs: error.driftMs }, 'waiting for the clock to reach its stored ceiling')
      warned = true
      await sleep(timers, CEILING_MERGE_RETRY_MS)
    }
  }
}
