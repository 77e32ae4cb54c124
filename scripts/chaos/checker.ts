/**
 * The chaos checker: reads what a run recorded (history.ts) and says, invariant by invariant,
 * whether the fabric kept its promises (docs/architecture.md, "Chaos runs").
 *
 * Pure and deterministic: the same run gives the same report, counterexamples in the same order
 * (input order: history order, node order, record key order). It judges acceptances against the
 * trader's own log rather than against any replica, so a bug in the replicas cannot vouch for itself.
 *
 * Cost is linear in the recorded data: bets are indexed by key and market states by game and market
 * (a state at a stamp is a binary search), so 100,000 bets over a handful of nodes check in well
 * under a second.
 *
 * A bet id is its user's own, so a bet is known by its key, `betKeyOf(userId, betId)`
 * (protocol/ids.ts), in every index here as in the ledger fold and the node states: two users' bets
 * of one id are two bets, each checked on its own. Counterexamples name a bet as `userId/betId`.
 */

import { stampWall } from '../../crdt/index.ts'
import { payoutCents, SETTLEMENT_OUTCOMES, type SettlementOutcome } from '../../ledger/index.ts'
import { betKeyOf, entryKeyParts } from '../../protocol/ids.ts'
import type {
  DepositEvent,
  FaultEvent,
  FinalStatusEvent,
  HistoryEvent,
  LedgerBetView,
  LedgerView,
  MarketStateEntry,
  NodeFinalState,
  PlaceEvent,
  ProvisionalAnswer,
  RefusedAnswer,
  SettledStatusEvent,
  TraderLog,
  VerdictView,
  VoidWindow,
} from './history.ts'

/** Counterexamples kept per invariant unless the run asks otherwise. */
export const COUNTEREXAMPLES_MAX = 10

export interface CheckRun {
  readonly history: readonly HistoryEvent[]
  readonly traderLog: TraderLog
  readonly finalStates: readonly NodeFinalState[]
  /** When the last fault healed; null when none was injected (every final is then held to the bound). */
  readonly healedAtMs: number | null
  readonly bounds: { readonly finalizeWithinMs: number }
  /**
   * Each user's home region, for a multi-region run: a node with a region is then expected to hold
   * only the ledgers of the users homed there. Absent: every ledger node holds every user.
   */
  readonly homeRegions?: Readonly<Record<string, string>>
  readonly counterexamplesMax?: number
}

export type InvariantId = 'no-lost-bets' | 'agreement' | 'sound-acceptances' | 'money' | 'convergence'

export interface Counterexample {
  readonly kind: 'bet' | 'user' | 'node' | 'game'
  /** A bet's user and id (`userId/betId`, see betName), a user or game id, or a node's name. */
  readonly id: string
  readonly problem: string
}

export interface InvariantResult {
  readonly id: InvariantId
  readonly number: number
  readonly title: string
  readonly pass: boolean
  /** Subjects examined (bets, users, nodes, games: `details` breaks them down). */
  readonly checked: number
  /** Subjects that broke the invariant, each counted once. */
  readonly violations: number
  readonly counterexamples: readonly Counterexample[]
  readonly details: Readonly<Record<string, number>>
}

export interface RunCounts {
  readonly betsPlaced: number
  readonly acknowledged: number
  readonly acknowledgedAccepted: number
  readonly refusedByCode: Readonly<Record<string, number>>
  readonly errorsByCode: Readonly<Record<string, number>>
  readonly timedOut: number
  /** Placed and never answered at all. */
  readonly unanswered: number
  readonly finalizedAccepted: number
  readonly finalizedRejectedByReason: Readonly<Record<string, number>>
  /** By the outcome the clients were told. */
  readonly settledByOutcome: Readonly<Record<string, number>>
  /** Bets whose clients were told they won a payout above zero. */
  readonly paid: number
  readonly depositsAcknowledged: number
  readonly depositsUnacknowledged: number
  readonly depositCentsAcknowledged: number
  /** Faults started, by kind. */
  readonly faultsByKind: Readonly<Record<string, number>>
}

/** How long bets took to finalize once they could: after the heal, or after placement if later. */
export interface FinalizationStats {
  readonly boundMs: number
  readonly healedAtMs: number | null
  readonly measured: number
  readonly maxMs: number | null
  readonly p99Ms: number | null
}

export interface Report {
  readonly pass: boolean
  readonly invariants: readonly InvariantResult[]
  readonly counts: RunCounts
  readonly finalization: FinalizationStats
}

// ---------------------------------------------------------------------------------------------
// Indexes: one pass over the input, so that every check after is a lookup

interface BetFacts {
  /** betKeyOf(userId, betId): the bet's key in every index and node state. */
  readonly key: string
  readonly userId: string
  place: PlaceEvent | null
  provisional: ProvisionalAnswer | null
  refusal: RefusedAnswer | null
  timedOut: boolean
  readonly finals: FinalStatusEvent[]
  readonly settled: SettledStatusEvent[]
}

interface MarketIndex {
  readonly entries: readonly MarketStateEntry[]
  readonly voids: VoidWindow[]
  readonly winners: readonly string[] | null
}

/** A ledger's per-user stakes and payouts, summed once and shared by the checks that need them. */
interface LedgerSums {
  readonly stakesCents: number
  readonly payoutsCents: number
  readonly byUser: Map<string, { stakesCents: number; payoutsCents: number }>
}

interface Context {
  readonly run: CheckRun
  readonly limit: number
  readonly bets: Map<string, BetFacts>
  readonly deposits: DepositEvent[]
  readonly faults: FaultEvent[]
  readonly markets: Map<string, Map<string, MarketIndex>>
  /** API and settlement nodes: they fold the ledger and judge bets. */
  readonly judges: NodeFinalState[]
  /** Every node with a ledger, whatever its kind. */
  readonly ledgers: (NodeFinalState & { readonly ledger: LedgerView })[]
  /** Per ledger node (keyed by its state, so that two nodes of one name cannot mix). */
  readonly sums: Map<NodeFinalState, LedgerSums>
}

/** A record's own value only: a user id such as `constructor` must not read Object's. */
function own<T>(record: Readonly<Record<string, T>> | undefined, key: string): T | undefined {
  return record !== undefined && Object.hasOwn(record, key) ? record[key] : undefined
}

/** How a report names a bet: its user and its id (neither may hold a '/'). */
export function betName(key: string): string {
  const { userId, id } = entryKeyParts(key)
  return `${userId}/${id}`
}

function factsOf(bets: Map<string, BetFacts>, userId: string, betId: string): BetFacts {
  const key = betKeyOf(userId, betId)
  let facts = bets.get(key)
  if (facts === undefined) {
    facts = {
      key,
      userId,
      place: null,
      provisional: null,
      refusal: null,
      timedOut: false,
      finals: [],
      settled: [],
    }
    bets.set(key, facts)
  }
  return facts
}

function indexHistory(history: readonly HistoryEvent[]) {
  const bets = new Map<string, BetFacts>()
  const deposits: DepositEvent[] = []
  const faults: FaultEvent[] = []
  for (const event of history) {
    if (event.type === 'deposit') deposits.push(event)
    else if (event.type === 'fault') faults.push(event)
    else {
      const facts = factsOf(bets, event.userId, event.betId)
      if (event.type === 'place') facts.place ??= event
      else if (event.type === 'status') {
        if (event.status === 'final') facts.finals.push(event)
        else facts.settled.push(event)
      } else if (event.kind === 'provisional') facts.provisional ??= event
      else if (event.kind === 'timeout') facts.timedOut = true
      else facts.refusal = event
    }
  }
  // Events may be recorded slightly out of time order by concurrent clients; order by time, stably.
  for (const facts of bets.values()) {
    if (facts.finals.length > 1) facts.finals.sort((a, b) => a.atMs - b.atMs)
    if (facts.settled.length > 1) facts.settled.sort((a, b) => a.atMs - b.atMs)
  }
  return { bets, deposits, faults }
}

function indexTraderLog(log: TraderLog): Map<string, Map<string, MarketIndex>> {
  const games = new Map<string, Map<string, MarketIndex>>()
  for (const [gameId, game] of Object.entries(log.games)) {
    const winners = new Map(game.results.map((result) => [result.marketId, result.winners]))
    const markets = new Map<string, MarketIndex>()
    const marketOf = (marketId: string): MarketIndex => {
      let market = markets.get(marketId)
      if (market === undefined) {
        market = { entries: [], voids: [], winners: winners.get(marketId) ?? null }
        markets.set(marketId, market)
      }
      return market
    }
    for (const [marketId, entries] of Object.entries(game.markets)) {
      // The runner promises stamp order; a copy is sorted only when it broke the promise.
      const sorted = entries.every(
        (entry, i) => i === 0 || (entries[i - 1] as MarketStateEntry).stamp < entry.stamp,
      )
      markets.set(marketId, {
        entries: sorted ? entries : [...entries].sort((a, b) => (a.stamp < b.stamp ? -1 : 1)),
        voids: [],
        winners: winners.get(marketId) ?? null,
      })
    }
    for (const window of game.voids) marketOf(window.marketId).voids.push(window)
    for (const result of game.results) marketOf(result.marketId)
    games.set(gameId, markets)
  }
  return games
}

// Records of a big run hold 100,000 keys and more. They are walked by Object.keys rather than
// Object.entries, which would allocate a pair per key on every pass and double the checker's
// time in garbage collection.

function sumLedger(ledger: LedgerView): LedgerSums {
  const byUser = new Map<string, { stakesCents: number; payoutsCents: number }>()
  let stakesCents = 0
  let payoutsCents = 0
  for (const key of Object.keys(ledger.bets)) {
    const bet = ledger.bets[key] as LedgerBetView
    // A bet the fold refused for funds debited nothing.
    if (bet.status === 'rejected') continue
    const payout = bet.payoutCents ?? 0
    stakesCents += bet.stakeCents
    payoutsCents += payout
    const user = byUser.get(bet.userId) ?? { stakesCents: 0, payoutsCents: 0 }
    user.stakesCents += bet.stakeCents
    user.payoutsCents += payout
    byUser.set(bet.userId, user)
  }
  return { stakesCents, payoutsCents, byUser }
}

function buildContext(run: CheckRun): Context {
  const { bets, deposits, faults } = indexHistory(run.history)
  const ledgers = run.finalStates.filter(
    (state): state is NodeFinalState & { ledger: LedgerView } => state.ledger !== undefined,
  )
  return {
    run,
    limit: run.counterexamplesMax ?? COUNTEREXAMPLES_MAX,
    bets,
    deposits,
    faults,
    markets: indexTraderLog(run.traderLog),
    judges: run.finalStates.filter((state) => state.kind === 'api' || state.kind === 'settlement'),
    ledgers,
    sums: new Map(ledgers.map((state) => [state, sumLedger(state.ledger)])),
  }
}

/** Whether a node is expected to hold this user's ledger. */
function serves(ctx: Context, node: NodeFinalState, userId: string | undefined): boolean {
  if (node.region === undefined || userId === undefined) return true
  const home = own(ctx.run.homeRegions, userId)
  return home === undefined || home === node.region
}

/** The latest state the trader committed at or before the stamp. */
function stateAt(entries: readonly MarketStateEntry[], stamp: string): MarketStateEntry | null {
  let low = 0
  let high = entries.length - 1
  let found: MarketStateEntry | null = null
  while (low <= high) {
    const middle = (low + high) >>> 1
    const entry = entries[middle] as MarketStateEntry
    if (entry.stamp <= stamp) {
      found = entry
      low = middle + 1
    } else high = middle - 1
  }
  return found
}

function voidAt(market: MarketIndex, stamp: string): VoidWindow | null {
  return market.voids.find((window) => window.from <= stamp && stamp <= window.to) ?? null
}

/** The bet's stamp: as answered, else as finalized, else as any ledger booked it. */
function stampOf(ctx: Context, facts: BetFacts): string | null {
  if (facts.provisional !== null) return facts.provisional.stamp
  const final = facts.finals[0]
  if (final !== undefined) return final.stamp
  for (const node of ctx.ledgers) {
    const bet = own(node.ledger.bets, facts.key)
    if (bet !== undefined) return bet.stamp
  }
  return null
}

function honours(policy: string, offered: number, taken: number): boolean {
  return policy === 'any' || (policy === 'better' ? offered >= taken : offered === taken)
}

// ---------------------------------------------------------------------------------------------
// Tallies: violations counted once per subject, the first few kept as counterexamples

function createTally(limit: number) {
  const failed = new Set<string>()
  const counterexamples: Counterexample[] = []
  let checked = 0
  return {
    check(count = 1): void {
      checked += count
    },
    fail(kind: Counterexample['kind'], id: string, problem: string): void {
      const key = `${kind}\u0000${id}`
      if (failed.has(key)) return
      failed.add(key)
      if (counterexamples.length < limit) counterexamples.push({ kind, id, problem })
    },
    result(id: InvariantId, details: Record<string, number>): InvariantResult {
      const { number, title } = INVARIANTS[id]
      const violations = failed.size
      return { id, number, title, pass: violations === 0, checked, violations, counterexamples, details }
    },
  }
}

type Tally = ReturnType<typeof createTally>

export const INVARIANTS: Readonly<Record<InvariantId, { readonly number: number; readonly title: string }>> =
  {
    'no-lost-bets': { number: 1, title: 'no acknowledged bet or deposit lost' },
    agreement: { number: 2, title: 'every replica and client agrees on each final verdict' },
    'sound-acceptances': {
      number: 3,
      title: 'no bet accepted on a closed market, at an unoffered price or in a void window',
    },
    money: { number: 4, title: 'no negative balance, at most one payout per bet, ledgers sum and agree' },
    convergence: { number: 5, title: 'replicas converge and pending bets finalize within the bound' },
  }

type VerdictLike = Pick<VerdictView, 'accepted' | 'reason' | 'gameClockMs'>

function sameVerdict(a: VerdictLike, b: VerdictLike): boolean {
  return a.accepted === b.accepted && a.reason === b.reason && a.gameClockMs === b.gameClockMs
}

/**
 * A void window may be written after the fact (a feed correction): it turns an accepted verdict
 * into VOIDED and changes nothing else, the one change a final verdict may undergo (crdt/judge.ts).
 */
function voidedLater(before: VerdictLike, after: VerdictLike): boolean {
  return before.accepted && after.reason === 'VOIDED' && before.gameClockMs === after.gameClockMs
}

function describe(verdict: VerdictLike): string {
  const decision = verdict.accepted ? 'accepted' : `rejected ${verdict.reason}`
  return `${decision} at game clock ${verdict.gameClockMs ?? 'none'}`
}

// ---------------------------------------------------------------------------------------------
// 1. No acknowledged bet or deposit lost

/** What is wrong with one node's record of an acknowledged bet, or null. */
function bookingProblem(bet: LedgerBetView, facts: BetFacts, answered: ProvisionalAnswer): string | null {
  if (bet.status === 'rejected') return 'holds it refused for funds, though it was acknowledged'
  if (bet.stamp !== answered.stamp)
    return `holds it at stamp ${bet.stamp}, it was acknowledged at ${answered.stamp}`
  const place = facts.place
  if (place === null) return null
  const same =
    bet.userId === place.userId &&
    bet.stakeCents === place.stakeCents &&
    bet.odds === place.odds &&
    bet.marketId === place.marketId
  if (same) return null
  return `holds ${bet.userId}/${bet.marketId} ${bet.stakeCents}c @${bet.odds}, placed as ${place.userId}/${place.marketId} ${place.stakeCents}c @${place.odds}`
}

function lostBetProblem(ctx: Context, facts: BetFacts, answered: ProvisionalAnswer): string | null {
  const missing: string[] = []
  for (const node of ctx.judges) {
    if (node.ledger === undefined || !serves(ctx, node, facts.userId)) continue
    const bet = own(node.ledger.bets, facts.key)
    if (bet === undefined) {
      missing.push(node.node)
      continue
    }
    const problem = bookingProblem(bet, facts, answered)
    if (problem !== null) return `${node.node} ${problem}`
  }
  if (missing.length === 0) return null
  return `acknowledged at ${answered.atMs} (stamp ${answered.stamp}) but missing from the ledger of ${missing.join(', ')}`
}

/**
 * Deposits: every ledger must hold at least the acknowledged ones. Per user this is derivable
 * only where no withdrawal muddies it: the deposits a balance implies are balance + stakes -
 * payouts, and must reach what was acknowledged (unacknowledged deposits may or may not be in).
 */
function checkDeposits(ctx: Context, tally: Tally): Record<string, number> {
  const acknowledged = new Map<string, number>()
  for (const deposit of ctx.deposits) {
    if (deposit.acknowledged)
      acknowledged.set(deposit.userId, (acknowledged.get(deposit.userId) ?? 0) + deposit.amountCents)
  }
  let usersReconstructed = 0
  let nodesSkipped = 0
  for (const node of ctx.judges) {
    if (node.ledger === undefined) continue
    let expectedCents = 0
    for (const [userId, cents] of acknowledged) if (serves(ctx, node, userId)) expectedCents += cents
    tally.check()
    const held = node.ledger.totals.depositsCents
    if (held < expectedCents) {
      tally.fail(
        'node',
        node.node,
        `its ledger holds ${held} cents of deposits, below the ${expectedCents} acknowledged`,
      )
    }
    if (node.ledger.totals.withdrawalsCents !== 0) {
      nodesSkipped++
      continue
    }
    const sums = ctx.sums.get(node)
    for (const [userId, cents] of acknowledged) {
      if (!serves(ctx, node, userId)) continue
      usersReconstructed++
      const balance = own(node.ledger.balances, userId) ?? 0
      const flows = sums?.byUser.get(userId) ?? { stakesCents: 0, payoutsCents: 0 }
      const implied = balance + flows.stakesCents - flows.payoutsCents
      if (implied < cents) {
        tally.fail(
          'user',
          userId,
          `${node.node}: balance ${balance} + stakes ${flows.stakesCents} - payouts ${flows.payoutsCents} implies ${implied} cents deposited, below the ${cents} acknowledged`,
        )
      }
    }
  }
  return {
    usersWithDeposits: acknowledged.size,
    userBalancesReconstructed: usersReconstructed,
    nodesWithWithdrawalsSkipped: nodesSkipped,
  }
}

function checkNoLostBets(ctx: Context): InvariantResult {
  const tally = createTally(ctx.limit)
  for (const node of ctx.judges) {
    if (node.ledger === undefined)
      tally.fail(
        'node',
        node.node,
        'no ledger was collected from this node, so nothing it holds can be checked',
      )
  }
  let acknowledged = 0
  for (const facts of ctx.bets.values()) {
    if (facts.provisional === null) continue
    acknowledged++
    tally.check()
    const problem = lostBetProblem(ctx, facts, facts.provisional)
    if (problem !== null) tally.fail('bet', betName(facts.key), problem)
  }
  const ledgerNodes = ctx.judges.filter((node) => node.ledger !== undefined).length
  if (ledgerNodes === 0 && acknowledged > 0)
    tally.fail('node', '(none)', 'no API or settlement node ledger was collected')
  const deposits = checkDeposits(ctx, tally)
  return tally.result('no-lost-bets', { acknowledgedBets: acknowledged, ledgerNodes, ...deposits })
}

// ---------------------------------------------------------------------------------------------
// 2. Agreement

interface Agreement {
  /** Per bet key, the first final verdict any replica holds, and whose it is. */
  readonly reference: Map<string, { readonly node: string; readonly verdict: VerdictView }>
  /** Keys of the bets that some replica or client holds finally accepted. */
  readonly acceptedSomewhere: Set<string>
}

function clientProblem(facts: BetFacts, reference: Agreement['reference']): string | null {
  const finals = facts.finals
  const answered = facts.provisional?.stamp
  for (const [i, final] of finals.entries()) {
    if (answered !== undefined && final.stamp !== answered) {
      return `the client saw a final at stamp ${final.stamp}, the bet was acknowledged at ${answered}`
    }
    const before = finals[i - 1]
    if (before !== undefined && !sameVerdict(before, final) && !voidedLater(before, final)) {
      return `the client saw final ${describe(before)} at ${before.atMs}, then final ${describe(final)} at ${final.atMs}`
    }
  }
  const last = finals[finals.length - 1]
  const held = reference.get(facts.key)
  if (last === undefined || held === undefined) return null
  if (sameVerdict(last, held.verdict) || voidedLater(last, held.verdict)) return null
  return `the client saw final ${describe(last)}, ${held.node} holds ${describe(held.verdict)}`
}

function checkAgreement(ctx: Context): { result: InvariantResult; agreement: Agreement } {
  const tally = createTally(ctx.limit)
  const reference: Agreement['reference'] = new Map()
  const acceptedSomewhere = new Set<string>()
  let finalVerdicts = 0
  for (const node of ctx.run.finalStates) {
    for (const replica of Object.values(node.replicas ?? {})) {
      for (const key of Object.keys(replica.verdicts)) {
        const verdict = replica.verdicts[key] as VerdictView
        if (!verdict.final) continue
        finalVerdicts++
        if (verdict.accepted) acceptedSomewhere.add(key)
        const held = reference.get(key)
        if (held === undefined) reference.set(key, { node: node.node, verdict })
        else if (!sameVerdict(held.verdict, verdict)) {
          tally.fail(
            'bet',
            betName(key),
            `${node.node} holds ${describe(verdict)}, ${held.node} holds ${describe(held.verdict)}`,
          )
        }
      }
    }
  }
  let clientFinals = 0
  for (const facts of ctx.bets.values()) {
    if (facts.finals.length === 0) continue
    clientFinals++
    if (!reference.has(facts.key)) tally.check()
    if (facts.finals.some((final) => final.accepted)) acceptedSomewhere.add(facts.key)
    const problem = clientProblem(facts, reference)
    if (problem !== null) tally.fail('bet', betName(facts.key), problem)
  }
  tally.check(reference.size)
  const result = tally.result('agreement', {
    replicaFinalVerdicts: finalVerdicts,
    betsWithClientFinals: clientFinals,
  })
  return { result, agreement: { reference, acceptedSomewhere } }
}

/** The verdict a bet ended with: the replicas', else the last final a client saw. */
function endVerdict(agreement: Agreement, facts: BetFacts): VerdictLike | null {
  return agreement.reference.get(facts.key)?.verdict ?? facts.finals[facts.finals.length - 1] ?? null
}

// ---------------------------------------------------------------------------------------------
// 3. Sound acceptances, against the trader's log

/** How far a placement may follow the trader's suspension by the wall clock and still stand. */
export const REAL_TIME_SLACK_MS = 250

function acceptanceProblem(
  market: MarketIndex | undefined,
  place: PlaceEvent,
  stamp: string,
  facts: BetFacts,
): string | null {
  if (market === undefined || market.entries.length === 0) {
    return `accepted on ${place.gameId}/${place.marketId}, a market the trader log never opened`
  }
  const state = stateAt(market.entries, stamp)
  if (state === null) return `accepted at ${stamp}, before the trader first opened ${place.marketId}`
  if (state.status !== 'open') {
    return `accepted at ${stamp}, but the trader had ${place.marketId} ${state.status} since ${state.stamp}`
  }
  const offered = own(state.prices, place.selectionId)
  if (offered === undefined)
    return `accepted on ${place.selectionId}, which the trader did not price at ${state.stamp}`
  if (!honours(place.policy, offered, place.odds)) {
    return `accepted under '${place.policy}' at odds ${place.odds}, but the trader offered ${offered} (since ${state.stamp})`
  }
  const told = facts.finals.find((final) => final.accepted && final.odds !== offered)
  if (told !== undefined)
    return `the client was told it stands at odds ${told.odds}, the trader offered ${offered}`
  return lateInRealTime(market, state, place)
}

/**
 * Stamps can lie when a clock does: a node far behind its trader stamps a bet before a suspension
 * it has already applied. So an accepted bet is also judged by the wall clock: it must have been
 * placed before the trader suspended the market, by the trader's clock (which the runner never
 * skews), give or take REAL_TIME_SLACK_MS. With sound clocks a bet's stamp is never earlier than
 * its placement, so an accepted bet always passes.
 */
function lateInRealTime(market: MarketIndex, state: MarketStateEntry, place: PlaceEvent): string | null {
  const next = market.entries.find((entry) => entry.stamp > state.stamp && entry.status !== 'open')
  if (next === undefined) return null
  const lateMs = place.atMs - stampWall(next.stamp)
  if (lateMs <= REAL_TIME_SLACK_MS) return null
  return `accepted, though placed ${lateMs} ms after the trader had ${place.marketId} ${next.status} (${next.stamp}), by the wall clock`
}

/** Inside a void window a bet must end rejected, and be refunded rather than settled won or lost. */
function voidProblem(ctx: Context, agreement: Agreement, facts: BetFacts, window: VoidWindow): string | null {
  const span = `the void window ${window.from}..${window.to}`
  if (endVerdict(agreement, facts)?.accepted === true) return `ends accepted inside ${span}`
  for (const node of ctx.ledgers) {
    const outcome = own(node.ledger.bets, facts.key)?.outcome
    if (outcome === 'won' || outcome === 'lost')
      return `${node.node} settled it ${outcome} inside ${span}, not refunded`
  }
  const told = facts.settled.find((status) => status.outcome === 'won' || status.outcome === 'lost')
  return told === undefined ? null : `the client was told ${told.outcome} inside ${span}, not a refund`
}

function checkSoundAcceptances(ctx: Context, agreement: Agreement): InvariantResult {
  const tally = createTally(ctx.limit)
  let accepted = 0
  let inVoidWindows = 0
  let unchecked = 0
  for (const facts of ctx.bets.values()) {
    const place = facts.place
    const wasAccepted = agreement.acceptedSomewhere.has(facts.key)
    const market = place === null ? undefined : ctx.markets.get(place.gameId)?.get(place.marketId)
    if (!wasAccepted && (market === undefined || market.voids.length === 0)) continue
    const stamp = stampOf(ctx, facts)
    if (place === null || stamp === null) {
      // A final verdict on a bet the history never placed: the runner lost its terms.
      if (wasAccepted) unchecked++
      continue
    }
    if (wasAccepted) {
      accepted++
      tally.check()
      const problem = acceptanceProblem(market, place, stamp, facts)
      if (problem !== null) tally.fail('bet', betName(facts.key), problem)
    }
    const window = market === undefined ? null : voidAt(market, stamp)
    if (window === null) continue
    inVoidWindows++
    if (!wasAccepted) tally.check()
    const problem = voidProblem(ctx, agreement, facts, window)
    if (problem !== null) tally.fail('bet', betName(facts.key), problem)
  }
  return tally.result('sound-acceptances', {
    acceptedBets: accepted,
    betsInVoidWindows: inVoidWindows,
    acceptedWithoutTerms: unchecked,
  })
}

// ---------------------------------------------------------------------------------------------
// 4. Money

function ledgerSumsProblem(ledger: LedgerView, sums: LedgerSums): string | null {
  const { depositsCents, withdrawalsCents, stakesCents, payoutsCents } = ledger.totals
  let balancesCents = 0
  for (const cents of Object.values(ledger.balances)) balancesCents += cents
  const net = depositsCents - withdrawalsCents - stakesCents + payoutsCents
  if (net !== balancesCents) {
    return `deposits ${depositsCents} - withdrawals ${withdrawalsCents} - stakes ${stakesCents} + payouts ${payoutsCents} = ${net}, but balances sum to ${balancesCents}`
  }
  if (sums.stakesCents !== stakesCents)
    return `its bets' stakes sum to ${sums.stakesCents}, its totals say ${stakesCents}`
  if (sums.payoutsCents !== payoutsCents)
    return `its bets' payouts sum to ${sums.payoutsCents}, its totals say ${payoutsCents}`
  return null
}

/** payoutCents, or null where its arguments are out of range (which is itself worth reporting). */
function expectedPayout(stakeCents: number, odds: number, outcome: SettlementOutcome): number | null {
  try {
    return payoutCents(stakeCents, odds, outcome)
  } catch {
    return null
  }
}

/** The odds a won bet stands at: as the client was told, else as the trader offered at its stamp. */
function standingOdds(ctx: Context, facts: BetFacts | undefined, bet: LedgerBetView): number {
  const told = facts?.finals.find((final) => final.accepted && final.odds !== null)?.odds
  if (told != null) return told
  const place = facts?.place
  const market = place == null ? undefined : ctx.markets.get(place.gameId)?.get(place.marketId)
  const offered =
    market === undefined || place == null
      ? undefined
      : own(stateAt(market.entries, bet.stamp)?.prices, place.selectionId)
  return offered ?? bet.settledOdds ?? bet.odds
}

function settlementProblem(
  ctx: Context,
  agreement: Agreement,
  key: string,
  bet: LedgerBetView,
): string | null {
  const outcome = bet.outcome as SettlementOutcome
  if (!SETTLEMENT_OUTCOMES.includes(outcome)) return `settled with an unknown outcome ${bet.outcome}`
  const facts = ctx.bets.get(key)
  const odds = outcome === 'won' ? standingOdds(ctx, facts, bet) : bet.odds
  const expected = expectedPayout(bet.stakeCents, odds, outcome)
  if (expected === null) return `settled ${outcome} with stake ${bet.stakeCents} or odds ${odds} out of range`
  if (bet.payoutCents !== expected) {
    return `settled ${outcome} paying ${bet.payoutCents ?? 'nothing'}, payoutCents(${bet.stakeCents}, ${odds}, '${outcome}') is ${expected}`
  }
  if (outcome !== 'won' && outcome !== 'lost') return null
  const end = facts === undefined ? null : endVerdict(agreement, facts)
  if (end !== null && !end.accepted)
    return `settled ${outcome} though its final verdict is rejected ${end.reason}`
  const place = facts?.place
  if (place == null) return null
  const winners = ctx.markets.get(place.gameId)?.get(place.marketId)?.winners ?? null
  if (winners === null)
    return `settled ${outcome} with no agreed result for ${place.marketId} in the trader log`
  if (winners.includes(place.selectionId) === (outcome === 'won')) return null
  return `settled ${outcome} on ${place.selectionId}, but the agreed winners are [${winners.join(', ')}]`
}

function checkLedgerNode(
  ctx: Context,
  agreement: Agreement,
  node: NodeFinalState & { ledger: LedgerView },
  tally: Tally,
): number {
  const { ledger } = node
  tally.check()
  const sums = ctx.sums.get(node) as LedgerSums
  const sumsProblem = ledgerSumsProblem(ledger, sums)
  if (sumsProblem !== null) tally.fail('node', node.node, sumsProblem)
  for (const userId of Object.keys(ledger.balances)) {
    const cents = ledger.balances[userId] as number
    if (cents < 0) tally.fail('user', userId, `${node.node} holds a balance of ${cents}`)
  }
  for (const key of Object.keys(ledger.settlementsPerBet)) {
    const count = ledger.settlementsPerBet[key] as number
    if (count > 1) tally.fail('bet', betName(key), `${node.node} applied ${count} settlements to it`)
  }
  let settled = 0
  for (const key of Object.keys(ledger.bets)) {
    const bet = ledger.bets[key] as LedgerBetView
    if (bet.status !== 'settled' && bet.outcome === undefined) continue
    settled++
    const problem = settlementProblem(ctx, agreement, key, bet)
    if (problem !== null) tally.fail('bet', betName(key), `${node.node}: ${problem}`)
  }
  return settled
}

/** Ledger nodes of one region (or all, in a one-region run) must hold the same balances. */
function checkBalancesAgree(ctx: Context, tally: Tally): void {
  const firstOfRegion = new Map<string | undefined, NodeFinalState & { ledger: LedgerView }>()
  for (const node of ctx.ledgers) {
    const reference = firstOfRegion.get(node.region)
    if (reference === undefined) {
      firstOfRegion.set(node.region, node)
      continue
    }
    const users = new Set([...Object.keys(reference.ledger.balances), ...Object.keys(node.ledger.balances)])
    for (const userId of users) {
      const expected = own(reference.ledger.balances, userId) ?? 0
      const held = own(node.ledger.balances, userId) ?? 0
      if (held !== expected)
        tally.fail('user', userId, `${node.node} holds ${held}, ${reference.node} holds ${expected}`)
    }
  }
}

/** What the clients were told at settlement must be one story, and the ledgers' story. */
function checkToldSettlements(ctx: Context, tally: Tally): void {
  for (const facts of ctx.bets.values()) {
    const first = facts.settled[0]
    if (first === undefined) continue
    const other = facts.settled.find(
      (status) => status.outcome !== first.outcome || status.payoutCents !== first.payoutCents,
    )
    if (other !== undefined) {
      tally.fail(
        'bet',
        betName(facts.key),
        `the client was told ${first.outcome} ${first.payoutCents}, then ${other.outcome} ${other.payoutCents}`,
      )
      continue
    }
    for (const node of ctx.ledgers) {
      const bet = own(node.ledger.bets, facts.key)
      if (bet === undefined || (bet.outcome === first.outcome && bet.payoutCents === first.payoutCents))
        continue
      tally.fail(
        'bet',
        betName(facts.key),
        `the client was told ${first.outcome} ${first.payoutCents}, ${node.node} holds ${bet.outcome ?? bet.status} ${bet.payoutCents ?? 0}`,
      )
      break
    }
  }
}

/**
 * Bets a client was told were refused, yet some ledger booked (a refusal after an append that
 * timed out but was stored). No money is lost, since the bet is judged and settled like any other,
 * but the client was told something untrue, so the report shows how often.
 */
/**
 * A client told `refused` (the bet never entered the book) whose bet the ledger holds all the same:
 * money moved on a bet its owner was told did not exist. A bet that may stand is answered otherwise
 * (`error` BET_UNAVAILABLE, or a timeout), so this is always a violation.
 */
function checkRefusedYetBooked(ctx: Context, tally: Tally): number {
  let count = 0
  for (const facts of ctx.bets.values()) {
    if (facts.provisional !== null || facts.refusal?.kind !== 'refused') continue
    tally.check()
    const holder = ctx.ledgers.find((node) => {
      const bet = own(node.ledger.bets, facts.key)
      return bet !== undefined && bet.status !== 'rejected'
    })
    if (holder === undefined) continue
    count++
    tally.fail(
      'bet',
      betName(facts.key),
      `the client was told refused (${facts.refusal.code}) but ${holder.node}'s ledger booked it`,
    )
  }
  return count
}

function checkMoney(ctx: Context, agreement: Agreement): InvariantResult {
  const tally = createTally(ctx.limit)
  let settledBets = 0
  for (const node of ctx.ledgers) settledBets += checkLedgerNode(ctx, agreement, node, tally)
  tally.check(settledBets)
  checkBalancesAgree(ctx, tally)
  checkToldSettlements(ctx, tally)
  const refusedYetBooked = checkRefusedYetBooked(ctx, tally)
  return tally.result('money', {
    ledgerNodes: ctx.ledgers.length,
    settledBetsAcrossNodes: settledBets,
    refusedYetBooked,
  })
}

// ---------------------------------------------------------------------------------------------
// 5. Convergence and liveness

function checkStateHashes(ctx: Context, tally: Tally): number {
  const byGame = new Map<string, Map<string, string[]>>()
  for (const node of ctx.run.finalStates) {
    for (const [gameId, replica] of Object.entries(node.replicas ?? {})) {
      const hashes = byGame.get(gameId) ?? new Map<string, string[]>()
      hashes.set(replica.stateHash, [...(hashes.get(replica.stateHash) ?? []), node.node])
      byGame.set(gameId, hashes)
    }
  }
  for (const [gameId, hashes] of byGame) {
    tally.check()
    if (hashes.size < 2) continue
    const groups = [...hashes].map(([hash, nodes]) => `${nodes.join(', ')} at ${hash.slice(0, 12)}`)
    tally.fail('game', gameId, `replicas diverged: ${groups.join('; ')}`)
  }
  return byGame.size
}

/** A judging node's replica of a game must hold a final verdict on every bet of that game it was asked about. */
function checkPendingVerdicts(ctx: Context, tally: Tally): void {
  for (const node of ctx.judges) {
    for (const replica of Object.values(node.replicas ?? {})) {
      for (const key of Object.keys(replica.verdicts)) {
        if (!replica.verdicts[key]?.final)
          tally.fail('bet', betName(key), `${node.node} still holds its verdict provisional at the end`)
      }
    }
  }
}

function unfinalizedProblem(ctx: Context, facts: BetFacts, answered: ProvisionalAnswer): string | null {
  const gameId = facts.place?.gameId
  const missing: string[] = []
  for (const node of ctx.judges) {
    // A node judges the bets of the ledger it folds: in a multi-region run, its own region's users.
    if (!serves(ctx, node, facts.userId)) continue
    const replica = gameId === undefined ? undefined : own(node.replicas, gameId)
    if (replica !== undefined && own(replica.verdicts, facts.key) === undefined) missing.push(node.node)
  }
  if (missing.length > 0)
    return `acknowledged at ${answered.atMs}, but no verdict on it in the replica of ${missing.join(', ')}`
  if (facts.finals.length === 0)
    return `acknowledged at ${answered.atMs}, but the client never saw a final status`
  return null
}

/** Nearest-rank percentile of ascending values. */
function percentile(sorted: readonly number[], fraction: number): number | null {
  if (sorted.length === 0) return null
  return sorted[Math.max(0, Math.ceil(fraction * sorted.length) - 1)] as number
}

/**
 * Finalization delay: from the heal, or from placement when the bet came after the heal (a bet
 * placed a minute after the heal owes nothing to it). Finals seen before the heal are not held to
 * the bound: faults may legitimately delay them.
 */
function checkFinalizationDelays(ctx: Context, tally: Tally): FinalizationStats {
  const { healedAtMs, bounds } = ctx.run
  const delays: number[] = []
  for (const facts of ctx.bets.values()) {
    const first = facts.finals[0]
    if (first === undefined || (healedAtMs !== null && first.atMs <= healedAtMs)) continue
    const placedAtMs = facts.place?.atMs ?? facts.provisional?.atMs ?? first.atMs
    const fromMs = healedAtMs === null ? placedAtMs : Math.max(healedAtMs, placedAtMs)
    const delay = first.atMs - fromMs
    delays.push(delay)
    if (delay > bounds.finalizeWithinMs) {
      const since = fromMs === placedAtMs ? 'its placement' : 'the heal'
      tally.fail(
        'bet',
        betName(facts.key),
        `its first final status came ${delay} ms after ${since}, beyond the ${bounds.finalizeWithinMs} ms bound`,
      )
    }
  }
  delays.sort((a, b) => a - b)
  return {
    boundMs: bounds.finalizeWithinMs,
    healedAtMs,
    measured: delays.length,
    maxMs: delays[delays.length - 1] ?? null,
    p99Ms: percentile(delays, 0.99),
  }
}

function checkConvergence(ctx: Context): { result: InvariantResult; finalization: FinalizationStats } {
  const tally = createTally(ctx.limit)
  const games = checkStateHashes(ctx, tally)
  checkPendingVerdicts(ctx, tally)
  let acknowledged = 0
  for (const facts of ctx.bets.values()) {
    if (facts.provisional === null) continue
    acknowledged++
    const problem = unfinalizedProblem(ctx, facts, facts.provisional)
    if (problem !== null) tally.fail('bet', betName(facts.key), problem)
  }
  tally.check(acknowledged)
  const finalization = checkFinalizationDelays(ctx, tally)
  const details: Record<string, number> = {
    games,
    acknowledgedBets: acknowledged,
    finalsMeasured: finalization.measured,
  }
  if (finalization.maxMs !== null) details.finalizeMaxMs = finalization.maxMs
  if (finalization.p99Ms !== null) details.finalizeP99Ms = finalization.p99Ms
  return { result: tally.result('convergence', details), finalization }
}

// ---------------------------------------------------------------------------------------------
// Counts and the report

/** Counts keyed by codes from the run: a null prototype, so that no code can reach Object's. */
function tallyRecord(): Record<string, number> {
  return Object.create(null)
}

function bump(counts: Record<string, number>, key: string): void {
  counts[key] = (counts[key] ?? 0) + 1
}

function countBets(ctx: Context, agreement: Agreement) {
  const refusedByCode = tallyRecord()
  const errorsByCode = tallyRecord()
  const finalizedRejectedByReason = tallyRecord()
  const settledByOutcome = tallyRecord()
  const counts = {
    betsPlaced: 0,
    acknowledged: 0,
    acknowledgedAccepted: 0,
    timedOut: 0,
    unanswered: 0,
    finalizedAccepted: 0,
    paid: 0,
  }
  for (const facts of ctx.bets.values()) {
    if (facts.place !== null) counts.betsPlaced++
    // Each bet is counted once, by the best answer it got: a retry may have turned a timeout into a booking.
    if (facts.provisional !== null) {
      counts.acknowledged++
      if (facts.provisional.accepted) counts.acknowledgedAccepted++
    } else if (facts.refusal !== null)
      bump(facts.refusal.kind === 'refused' ? refusedByCode : errorsByCode, facts.refusal.code)
    else if (facts.timedOut) counts.timedOut++
    else if (facts.place !== null) counts.unanswered++
    const end = endVerdict(agreement, facts)
    if (end?.accepted === true) counts.finalizedAccepted++
    else if (end != null) bump(finalizedRejectedByReason, String(end.reason))
    const settled = facts.settled[facts.settled.length - 1]
    if (settled === undefined) continue
    bump(settledByOutcome, settled.outcome)
    if (settled.outcome === 'won' && settled.payoutCents > 0) counts.paid++
  }
  return { ...counts, refusedByCode, errorsByCode, finalizedRejectedByReason, settledByOutcome }
}

function countRun(ctx: Context, agreement: Agreement): RunCounts {
  const faultsByKind = tallyRecord()
  for (const fault of ctx.faults) if (fault.phase === 'start') bump(faultsByKind, fault.kind)
  const acknowledgedDeposits = ctx.deposits.filter((deposit) => deposit.acknowledged)
  return {
    ...countBets(ctx, agreement),
    depositsAcknowledged: acknowledgedDeposits.length,
    depositsUnacknowledged: ctx.deposits.length - acknowledgedDeposits.length,
    depositCentsAcknowledged: acknowledgedDeposits.reduce((sum, deposit) => sum + deposit.amountCents, 0),
    faultsByKind,
  }
}

/** Check every invariant of a chaos run. Pure: reads only `run`. */
export function check(run: CheckRun): Report {
  const ctx = buildContext(run)
  const lost = checkNoLostBets(ctx)
  const { result: agreementResult, agreement } = checkAgreement(ctx)
  const sound = checkSoundAcceptances(ctx, agreement)
  const money = checkMoney(ctx, agreement)
  const { result: convergence, finalization } = checkConvergence(ctx)
  const invariants = [lost, agreementResult, sound, money, convergence]
  return {
    pass: invariants.every((invariant) => invariant.pass),
    invariants,
    counts: countRun(ctx, agreement),
    finalization,
  }
}
