/**
 * The bet load of the placement benchmark: open-loop placements over a window plan, each window
 * keeping its own histograms of successful answers only. The provisional latency runs from the
 * scheduled send to an `ok` reply; the final latency from the scheduled send to the first `final`
 * status on the user's status subject (the accepting API node announces it, and settlement nodes
 * too: the first one counts). A refused placement or a failed request is counted by its code and
 * kept out of both histograms.
 *
 * Every bet goes to one market of `match-1` (bench/bets.ts), or each to the game, market,
 * selection and price a `target` callback gives (bench/games.ts). With `verdictRefusals`, an `ok`
 * reply whose verdict refuses the bet (a market closed between the look and the stamp, say) is
 * counted by its reason apart from the errors, and kept out of both histograms too.
 */

import type { NatsConnection } from '@nats-io/transport-node'
import { ALL_STATUSES_SUBJECT, depositSubject, placeSubject } from '../protocol/subjects.ts'
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

/**
 * The API nodes' environment that lifts the per-user and per-market bet limits, so that a
 * benchmark's few hundred users can carry its whole load.
 */
export const LIFTED_BET_LIMITS_ENV: Readonly<Record<string, string>> = {
  API_USER_OPEN_STAKE_CENTS_MAX: '100000000',
  API_MARKET_LIABILITY_CENTS_MAX: '1000000000000',
}

/** Where one bet goes, and the odds it asks for. */
export interface BetTarget {
  readonly gameId: string
  readonly marketId: string
  readonly selectionId: string
  readonly odds: number
}

interface BetLoadCommon {
  readonly rate: number
  readonly plan: WindowPlan
  readonly users: number
  /** The region's ledger shards: each bet goes to its user's shard. */
  readonly shards: number
  readonly stakeCents: number
  /** Makes this load's bet ids unique in the run. */
  readonly tag: string
  /** Count `ok` replies whose verdict refuses the bet in `refused`, out of the histograms. */
  readonly verdictRefusals?: boolean
}

export type BetLoadOptions = BetLoadCommon &
  (
    | {
        /** Every bet on this market of `match-1`, on `home`, policy `any` at any odds. */
        readonly marketId: string
      }
    | {
        /** Bet `i`'s game, market, selection and odds, asked for at its scheduled send. */
        readonly target: (i: number) => BetTarget
      }
  )

export interface BetWindow {
  readonly provisional: Histogram
  readonly final: Histogram
  /** Successful provisional answers. */
  served: number
  /** Refusals by error code, and failed requests by `nats:<error name>`. */
  readonly errors: Map<string, number>
  /** With `verdictRefusals`: `ok` replies whose verdict refused the bet, by reason. */
  readonly refused: Map<string, number>
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

/** The prefix of a reply code for an `ok` reply whose verdict refuses the bet. */
const REFUSED_PREFIX = 'refused:'

/**
 * The code of a placement reply, 'ok' for a successful provisional answer; with `verdictRefusals`,
 * `refused:<reason>` for an `ok` reply whose verdict refuses the bet.
 */
function replyCode(reply: unknown, verdictRefusals: boolean): string {
  if (typeof reply !== 'object' || reply === null) return 'MALFORMED_REPLY'
  const { ok, error, verdict } = reply as {
    ok?: unknown
    error?: { code?: unknown }
    verdict?: { accepted?: unknown; reason?: unknown }
  }
  if (ok === true) {
    if (!verdictRefusals || verdict?.accepted !== false) return 'ok'
    return `${REFUSED_PREFIX}${typeof verdict.reason === 'string' ? verdict.reason : 'UNKNOWN'}`
  }
  return typeof error?.code === 'string' ? error.code : 'MALFORMED_REPLY'
}

/** Credit `users` users (`user-0`...) through the API nodes, retrying while none answers yet. */
export async function creditUsers(
  nc: NatsConnection,
  options: { readonly users: number; readonly shards: number; readonly timeoutMs?: number },
): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 60_000)
  for (let i = 0; i < options.users; i++) {
    for (;;) {
      try {
        const reply = (
          await nc.request(
            depositSubject(`user-${i}`, options.shards),
            JSON.stringify({ id: `bench-deposit-${i}`, userId: `user-${i}`, amountCents: 10_000_000 }),
            { timeout: 5_000 },
          )
        ).json<{ ok: boolean }>()
        if (reply.ok) break
      } catch {
        if (Date.now() > deadline) throw new Error('API nodes did not come up')
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
    }
  }
}

/** The default target of every bet: one market of match-1, at odds any price beats. */
function fixedTarget(marketId: string): () => BetTarget {
  const target: BetTarget = { gameId: 'match-1', marketId, selectionId: 'home', odds: 1_001 }
  return () => target
}

/** Place bets at the plan's rate; resolves with every window once replies and finals are in. */
export async function placeBets(nc: NatsConnection, options: BetLoadOptions): Promise<BetWindow[]> {
  const { plan } = options
  const windows: BetWindow[] = histograms(plan.windows).map((provisional) => ({
    provisional,
    final: latencyHistogram(),
    served: 0,
    errors: new Map(),
    refused: new Map(),
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
  const verdictRefusals = options.verdictRefusals === true
  const targetOf = 'target' in options ? options.target : fixedTarget(options.marketId)
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
    const target = targetOf(i)
    const request = {
      betId,
      userId: `user-${i % options.users}`,
      gameId: target.gameId,
      marketId: target.marketId,
      selectionId: target.selectionId,
      stakeCents: options.stakeCents,
      odds: target.odds,
      policy: 'any',
    }
    inFlight++
    nc.request(placeSubject(request.userId, options.shards), JSON.stringify(request), {
      timeout: REQUEST_TIMEOUT_MS,
    }).then(
      (reply) => answered(betId, bet, replyCode(jsonOf(reply), verdictRefusals)),
      (error: unknown) => answered(betId, bet, `nats:${error instanceof Error ? error.name : 'Error'}`),
    )
  }
  await openLoop(options.rate, planSeconds(plan), send, plan.startUs)
  if (inFlight > 0) await new Promise<void>((resolve) => (drained = resolve))
}

function record(betId: string, bet: PendingBet, code: string, pending: Map<string, PendingBet>): void {
  const { window } = bet
  if (code.startsWith(REFUSED_PREFIX)) {
    count(window.refused, code.slice(REFUSED_PREFIX.length))
    pending.delete(betId)
    return
  }
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
