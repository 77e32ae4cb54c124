/**
 * What a chaos run measured of its fault, from its history alone: how many valid placements made
 * during the fault were booked (the acceptance ratio), how long a bet waited for its first answer,
 * and how long after the heal the bets placed before it waited for their final verdicts. Pure.
 *
 * - Valid placements: those placed while faulted, except the ones judged on a market that was not
 *   open for them at their stamp (a provisional answer with `accepted: false`: closed, suspended,
 *   voided, or the price moved), which the fault did not cause. Every other answer counts against
 *   the ratio: a coded refusal of any kind, an error, no answer in time.
 * - First answer: from the placement to its first answer of any kind; a bet with none in time
 *   counts as the client's deadline.
 * - Finals after the heal: for each bet placed before the heal that was booked and whose final
 *   verdict came after it, the time from the heal (or from its booking, if later) to that verdict.
 * - The acceptance ratio on majority-led shards: the same ratio over the users of the ledger shards
 *   whose stream leader stayed on the majority side (a shard whose leader was on the faulted server
 *   waits for an election, which nothing shortens on nats-server 2.9).
 * - Leader windows: for each shard whose leader was on a faulted server when the fault began, how
 *   long until a leader elsewhere was seen (leaderWindows).
 */

import { betKeyOf } from '../../protocol/ids.ts'
import type { HistoryEvent } from './history.ts'

export interface FaultFigures {
  /** Placements while faulted that count, and those booked (provisional, accepted). */
  readonly valid: number
  readonly booked: number
  /** booked / valid; null when no valid placement was made. */
  readonly acceptanceRatio: number | null
  /** What the valid placements that were not booked got, by code (`timeout` for none in time). */
  readonly notBooked: Readonly<Record<string, number>>
  readonly firstAnswerP99Ms: number | null
  readonly firstAnswerMaxMs: number | null
  readonly finalsAfterHealP99Ms: number | null
  readonly finalsAfterHeal: number
  /** The acceptance ratio over the users of majority-led shards; null without them or without a placement. */
  readonly acceptanceRatioMajorityLed: number | null
}

export interface FaultWindow {
  readonly faultAtMs: number
  readonly healedAtMs: number
  /** How long a client waits for an answer before it counts none. */
  readonly answerTimeoutMs: number
  /** The ledger shards whose leader stayed with the majority, and each user's shard. */
  readonly majorityLed?: { readonly shards: ReadonlySet<number>; shardOf(userId: string): number }
}

/** The p-th quantile (0..1) of values, nearest rank; null for none. */
export function quantile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] ?? null
}

export function faultFigures(history: readonly HistoryEvent[], window: FaultWindow): FaultFigures {
  const { faultAtMs, healedAtMs, answerTimeoutMs } = window
  const placedAt = new Map<string, number>()
  const userOf = new Map<string, string>()
  const firstAnswer = new Map<string, HistoryEvent & { type: 'answer' }>()
  const bookedAt = new Map<string, number>()
  const finalAt = new Map<string, number>()
  for (const event of history) {
    if (event.type === 'place') {
      placedAt.set(betKeyOf(event.userId, event.betId), event.atMs)
      userOf.set(betKeyOf(event.userId, event.betId), event.userId)
    } else if (event.type === 'answer') {
      const key = betKeyOf(event.userId, event.betId)
      if (!firstAnswer.has(key)) firstAnswer.set(key, event)
      if (event.kind === 'provisional' && event.accepted && !bookedAt.has(key)) bookedAt.set(key, event.atMs)
    } else if (event.type === 'status' && event.status === 'final') {
      const key = betKeyOf(event.userId, event.betId)
      if (!finalAt.has(key)) finalAt.set(key, event.atMs)
    }
  }
  let valid = 0
  let booked = 0
  const majority = { valid: 0, booked: 0 }
  const notBooked: Record<string, number> = {}
  const waits: number[] = []
  for (const [key, atMs] of placedAt) {
    if (atMs < faultAtMs || atMs >= healedAtMs) continue
    const answer = firstAnswer.get(key)
    waits.push(answer === undefined || answer.kind === 'timeout' ? answerTimeoutMs : answer.atMs - atMs)
    if (answer?.kind === 'provisional' && !answer.accepted) continue
    valid++
    const userId = userOf.get(key) as string
    const led = window.majorityLed
    const majorityLed = led?.shards.has(led.shardOf(userId)) === true
    if (majorityLed) majority.valid++
    if (answer?.kind === 'provisional') {
      booked++
      if (majorityLed) majority.booked++
    } else {
      const code = answer === undefined || answer.kind === 'timeout' ? 'timeout' : answer.code
      notBooked[code] = (notBooked[code] ?? 0) + 1
    }
  }
  const finals: number[] = []
  for (const [key, atMs] of bookedAt) {
    const final = finalAt.get(key)
    if ((placedAt.get(key) ?? healedAtMs) >= healedAtMs || final === undefined || final < healedAtMs) continue
    finals.push(final - Math.max(healedAtMs, atMs))
  }
  return {
    valid,
    booked,
    acceptanceRatio: valid === 0 ? null : booked / valid,
    notBooked,
    firstAnswerP99Ms: quantile(waits, 0.99),
    firstAnswerMaxMs: waits.length === 0 ? null : Math.max(...waits),
    finalsAfterHealP99Ms: quantile(finals, 0.99),
    finalsAfterHeal: finals.length,
    acceptanceRatioMajorityLed: majority.valid === 0 ? null : majority.booked / majority.valid,
  }
}

/** The leaders of a region's ledger shard streams as seen at one moment (null: no leader then). */
export interface LeaderSample {
  readonly atMs: number
  readonly leaders: ReadonlyMap<number, string | null>
}

/** A shard whose leader was on a faulted server when the fault began, and how long it had none elsewhere. */
export interface LeaderWindow {
  readonly leaderBefore: string
  /** From the fault to the first sample with a leader on another server; null if none was seen. */
  readonly windowMs: number | null
  readonly leaderAfter: string | null
}

/**
 * For each shard led from a faulted server at the fault's start (by the last sample at or before
 * it), the window until a sample showed a leader on a server not faulted. Samples in time order.
 */
export function leaderWindows(
  samples: readonly LeaderSample[],
  faultAtMs: number,
  faulted: ReadonlySet<string>,
): Record<string, LeaderWindow> {
  const before = samples.filter((sample) => sample.atMs <= faultAtMs).at(-1)
  const windows: Record<string, LeaderWindow> = {}
  for (const [shard, leader] of before?.leaders ?? []) {
    if (leader === null || !faulted.has(leader)) continue
    const moved = samples.find((sample) => {
      const now = sample.leaders.get(shard)
      return sample.atMs > faultAtMs && now != null && !faulted.has(now)
    })
    windows[String(shard)] = {
      leaderBefore: leader,
      windowMs: moved === undefined ? null : moved.atMs - faultAtMs,
      leaderAfter: moved?.leaders.get(shard) ?? null,
    }
  }
  return windows
}

/** The shards whose leader at the fault's start was not on a faulted server. */
export function majorityLedShards(
  samples: readonly LeaderSample[],
  faultAtMs: number,
  faulted: ReadonlySet<string>,
): Set<number> {
  const before = samples.filter((sample) => sample.atMs <= faultAtMs).at(-1)
  return new Set(
    [...(before?.leaders ?? [])]
      .filter(([, leader]) => leader !== null && !faulted.has(leader))
      .map(([shard]) => shard),
  )
}

/** One line of them, for the run's output. */
export function describeFigures(figures: FaultFigures): string {
  const ratio = figures.acceptanceRatio === null ? 'n/a' : `${(100 * figures.acceptanceRatio).toFixed(1)}%`
  const missed = Object.entries(figures.notBooked)
    .map(([code, count]) => `${code} ${count}`)
    .join(', ')
  return (
    `while faulted: acceptance ${figures.booked}/${figures.valid} (${ratio})${missed ? `, not booked: ${missed}` : ''}; ` +
    `first answer p99 ${figures.firstAnswerP99Ms ?? 'n/a'} ms, max ${figures.firstAnswerMaxMs ?? 'n/a'} ms; ` +
    `finals after the heal p99 ${figures.finalsAfterHealP99Ms ?? 'n/a'} ms (${figures.finalsAfterHeal} bets)` +
    (figures.acceptanceRatioMajorityLed === null
      ? ''
      : `; acceptance on majority-led shards ${(100 * figures.acceptanceRatioMajorityLed).toFixed(1)}%`)
  )
}

/** One stream's leader window: `n1→n2 4250 ms`, or `none` when it was not led from a faulted server. */
export function describeWindow(window: LeaderWindow | undefined): string {
  if (window === undefined) return 'none'
  const to = `${window.leaderBefore}→${window.leaderAfter ?? '?'}`
  return `${to} ${window.windowMs === null ? 'no leader elsewhere seen' : `${window.windowMs} ms`}`
}

/** The shards' leader windows in one line: `shard 3 n1→n2 4250 ms`, `none` when no shard was led from there. */
export function describeWindows(windows: Readonly<Record<string, LeaderWindow>>): string {
  const lines = Object.entries(windows).map(([shard, window]) => `shard ${shard} ${describeWindow(window)}`)
  return lines.length === 0 ? 'none' : lines.join(', ')
}
