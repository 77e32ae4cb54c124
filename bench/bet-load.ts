/**
 * The bet load of the placement benchmark: open-loop placements over a window plan, each window
 * keeping its own histograms of successful answers only. The provisional latency runs from the
 * scheduled send to an `ok` reply; the final latency from the scheduled send to the first `final`
 * status on the user's status subject (the accepting API node announces it, and settlement nodes
 * too: the first one counts). A refused placement or a failed request is counted by its code and
 * kept out of both histograms.
 */

import type { NatsConnection } from '@nats-io/transport-node'
import { ALL_STATUSES_SUBJECT, placeSubject } from '../protocol/subjects.ts'
import { nowUs, openLoop } from './open-loop.ts'
import {
  type Histogram,
  histograms,
  latencyHistogram,
  planSeconds,
  type WindowPlan,
  windowOf,
} from './windows.ts'

/** A placement without a reply within this is an error (`nats:TimeoutError`), not a latency. */
const REQUEST_TIMEOUT_MS = 10_000
/** How long finals may trail the last reply before the missing ones are counted as missing. */
const FINALS_DRAIN_MS = 10_000

export interface BetLoadOptions {
  readonly rate: number
  readonly plan: WindowPlan
  readonly marketId: string
  readonly users: number
  /** The region's ledger shards: each bet goes to its user's shard. */
  readonly shards: number
  readonly stakeCents: number
  /** Makes this load's bet ids unique in the run. */
  readonly tag: string
}

export interface BetWindow {
  readonly provisional: Histogram
  readonly final: Histogram
  /** Successful provisional answers. */
  served: number
  /** Refusals by error code, and failed requests by `nats:<error name>`. */
  readonly errors: Map<string, number>
  /** Bets answered `ok` whose final status did not arrive within the drain time. */
  finalsMissing: number
}

interface PendingBet {
  readonly scheduledUs: number
  readonly window: BetWindow
  /** The ok reply came; the bet now waits for its final status. */
  ok: boolean
  /** The final status came before the reply. */
  finalUs?: number
}

const count = (errors: Map<string, number>, code: string) => errors.set(code, (errors.get(code) ?? 0) + 1)

/** The JSON of a message, or undefined if it is not JSON. */
function jsonOf(message: { json<T>(): T }): unknown {
  try {
    return message.json<unknown>()
  } catch {
    return undefined
  }
}

/** The code of a placement reply, 'ok' for a successful provisional answer. */
function replyCode(reply: unknown): string {
  if (typeof reply !== 'object' || reply === null) return 'MALFORMED_REPLY'
  const { ok, error } = reply as { ok?: unknown; error?: { code?: unknown } }
  if (ok === true) return 'ok'
  return typeof error?.code === 'string' ? error.code : 'MALFORMED_REPLY'
}

/** Place bets at the plan's rate; resolves with every window once replies and finals are in. */
export async function placeBets(nc: NatsConnection, options: BetLoadOptions): Promise<BetWindow[]> {
  const { plan } = options
  const windows: BetWindow[] = histograms(plan.windows).map((provisional) => ({
    provisional,
    final: latencyHistogram(),
    served: 0,
    errors: new Map(),
    finalsMissing: 0,
  }))
  // Only measured bets are tracked; a warm-up bet's answers are not looked at.
  const pending = new Map<string, PendingBet>()
  const statuses = nc.subscribe(ALL_STATUSES_SUBJECT, {
    callback: (_error, message) => {
      const status = jsonOf(message) as { betId?: unknown; status?: unknown } | undefined
      if (status?.status !== 'final' || typeof status.betId !== 'string') return
      const bet = pending.get(status.betId)
      if (bet === undefined || bet.finalUs !== undefined) return
      if (!bet.ok) bet.finalUs = nowUs()
      else {
        bet.window.final.recordValue(nowUs() - bet.scheduledUs)
        pending.delete(status.betId)
      }
    },
  })
  try {
    await sendAll(nc, options, windows, pending)
    const deadline = Date.now() + FINALS_DRAIN_MS
    while (pending.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
    for (const bet of pending.values()) bet.window.finalsMissing++
    return windows
  } finally {
    statuses.unsubscribe()
  }
}

/** The open loop itself; resolves once every placement has its reply or has failed. */
async function sendAll(
  nc: NatsConnection,
  options: BetLoadOptions,
  windows: BetWindow[],
  pending: Map<string, PendingBet>,
): Promise<void> {
  const { plan } = options
  let inFlight = 0
  let drained: () => void = () => {}
  const answered = (betId: string, bet: PendingBet | undefined, code: string) => {
    if (bet !== undefined) record(betId, bet, code, pending)
    if (--inFlight === 0) drained()
  }
  const send = (scheduledUs: number, i: number) => {
    const betId = `bench-${options.tag}-${i}`
    const index = windowOf(plan, scheduledUs)
    const window = windows[index]
    const bet = window === undefined ? undefined : { scheduledUs, window, ok: false }
    if (bet !== undefined) pending.set(betId, bet)
    const request = {
      betId,
      userId: `user-${i % options.users}`,
      gameId: 'match-1',
      marketId: options.marketId,
      selectionId: 'home',
      stakeCents: options.stakeCents,
      odds: 1_001,
      policy: 'any',
    }
    inFlight++
    nc.request(placeSubject(request.userId, options.shards), JSON.stringify(request), {
      timeout: REQUEST_TIMEOUT_MS,
    }).then(
      (reply) => answered(betId, bet, replyCode(jsonOf(reply))),
      (error: unknown) => answered(betId, bet, `nats:${error instanceof Error ? error.name : 'Error'}`),
    )
  }
  await openLoop(options.rate, planSeconds(plan), send, plan.startUs)
  if (inFlight > 0) await new Promise<void>((resolve) => (drained = resolve))
}

function record(betId: string, bet: PendingBet, code: string, pending: Map<string, PendingBet>): void {
  const { window } = bet
  if (code !== 'ok') {
    count(window.errors, code)
    pending.delete(betId)
    return
  }
  window.served++
  window.provisional.recordValue(nowUs() - bet.scheduledUs)
  bet.ok = true
  if (bet.finalUs !== undefined) {
    window.final.recordValue(bet.finalUs - bet.scheduledUs)
    pending.delete(betId)
  }
}
