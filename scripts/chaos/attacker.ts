/**
 * The hostile-mix attacker: hostile clients beside the normal bettors, reaching the stack only as any
 * client can, through the gateway's WebSocket and HTTP, with tokens it signs for its own users with
 * the stack's secret (as the workload does) or forges. Seven classes of attack, each in variants:
 *
 * 1. colliding ids: bets under ids the bettors will use (workload.ts betIdOf is predictable), under
 *    settlement ids (`settle/<id>`: refused as malformed) and old-style ones (`settle-<id>`: ordinary);
 * 2. foreign ids: bets under ids the bettors have used, a `place` naming another user, and HTTP
 *    queries of another user's bets and balance: each answered about the attacker's own, or refused;
 * 3. absurd odds: `odds: 1000000, policy: "any"` and `odds: 1001, policy: "better"`;
 * 4. limit races: bursts of 8 placements of the largest stake, on one socket and across two;
 * 5. floods: reconnect cycles (connect, 40 frames, close), bursts of upgrades, unfunded placements;
 * 6. changed retry: one bet id with two stakes from two sockets at once;
 * 7. bad credentials: a numeric `sub`, `alg: none`, an expired token, a foreign Origin, a forged Host
 *    with a foreign Origin (and the page's own origin, which must get in), on sockets and HTTP.
 *
 * Each variant runs on its own timer, at most `max` rounds, one at a time, over the attack window, so
 * every class is bounded in count and rate and all are mixed. Its floods come from loopback
 * addresses of their own, as a remote attacker's would, so that they spend the attacker's
 * connection-attempt budget rather than the bettors'. Every answer is counted by class and code; an
 * answer a variant must never get is `wrong` (the run fails on it), and what is worth reporting but
 * is the gateway's relay rather than a safety property is a `finding`.
 */

import { createPrng, type Prng } from '../../nodes/fabric/prng.ts'
import {
  type Answer,
  type Answers,
  createAnswers,
  type ForgedToken,
  forgedTokens,
  goodToken,
  type HostileSocket,
  httpGet,
  type MarketWatch,
  openSocket,
  watchMarkets,
} from './attacker-client.ts'
import { betIdOf } from './workload.ts'

export type AttackClass =
  | 'colliding ids'
  | 'foreign ids'
  | 'absurd odds'
  | 'limit races'
  | 'floods'
  | 'changed retry'
  | 'bad credentials'

const CLASSES: readonly AttackClass[] = [
  'colliding ids',
  'foreign ids',
  'absurd odds',
  'limit races',
  'floods',
  'changed retry',
  'bad credentials',
]

/** The attacker's users: one per part, so that one part's limits never hide another's answers. */
export const ATTACKER_USERS = {
  ids: 'mallory-ids',
  odds: 'mallory-odds',
  race: 'mallory-race',
  /** Races across two sockets, with open stakes of its own. */
  raceSplit: 'mallory-race-split',
  retry: 'mallory-retry',
  probe: 'mallory-probe',
  cycles: 'mallory-cycles',
  upgrades: 'mallory-upgrades',
  /** Never funded. */
  broke: 'mallory-broke',
} as const

/** What the runner deposits for the attacker before it starts (at most 10,000,000 cents a deposit). */
export const ATTACKER_DEPOSITS: readonly { readonly userId: string; readonly amountCents: number }[] = [
  { userId: ATTACKER_USERS.ids, amountCents: 1_000_000 },
  { userId: ATTACKER_USERS.odds, amountCents: 5_000_000 },
  { userId: ATTACKER_USERS.race, amountCents: 10_000_000 },
  { userId: ATTACKER_USERS.race, amountCents: 10_000_000 },
  { userId: ATTACKER_USERS.raceSplit, amountCents: 10_000_000 },
  { userId: ATTACKER_USERS.raceSplit, amountCents: 10_000_000 },
  { userId: ATTACKER_USERS.retry, amountCents: 100_000 },
]

/** Where each part connects from: the floods from addresses of their own. */
const SOURCES = { clients: '127.0.0.4', cycles: '127.0.0.3', upgrades: '127.0.0.2' } as const
const FOREIGN_ORIGIN = 'http://evil.example'
const ABSURD_ODDS = 1_000_000
const ABSURD_STAKE_CENTS = 5_000
const ORDINARY_STAKE_CENTS = 100
const RACE_PLACEMENTS = 8
const CYCLE_FRAMES = 40
const CYCLE_ANSWER_MS = 2_000
const UPGRADE_BURST = 30
/** A standing bet's final status comes within this of its provisional one when nothing is wrong. */
const FINAL_WITHIN_MS = 3_000
const WRONG_KEPT_MAX = 50

/** Answers that say nothing about the attack: a node not ready or busy, a bet that may stand. */
const UNRELATED = [
  'refused REPLICA_STALE',
  'refused CLOCK_DRIFT',
  'refused OVERLOADED',
  'refused UNKNOWN_GAME',
  'refused BET_UNAVAILABLE',
  'error BET_UNAVAILABLE',
]
/** What an ordinary bet of the attacker's own may be told. */
const ORDINARY = ['provisional', 'refused INSUFFICIENT_FUNDS', 'refused USER_STAKE_LIMIT', ...UNRELATED]
/** A socket the gateway may turn away for the rate or number of the attacker's own attempts. */
const ATTEMPT_LIMITS = ['close 4030', 'close 4009']

export interface AttackerOptions {
  /** ws://host:port/v1/ws and http://host:port of one gateway. */
  readonly wsUrl: string
  readonly httpUrl: string
  /** The origin the gateway's page is served from (its --public-origin). */
  readonly ownOrigin: string
  readonly secret: string
  readonly gameId: string
  readonly seed: number
  /** The normal bettors, whose bet ids the attacker places as its own. */
  readonly victims: readonly string[]
  /** A bettor places at most one bet per this, since `victimsSinceMs`: how far their ids have come. */
  readonly victimPauseMs: number
  readonly victimsSinceMs: number
  readonly stakeCentsMax: number
  /** The attack window: no round starts after it, whether or not `stop` was called. */
  readonly durationMs: number
}

/** A bet the attacker placed under a bettor's id, and the stamp it was answered at. */
export interface OwnBet {
  readonly victim: string
  readonly betId: string
  readonly stamp: string
  /** When the answer came. */
  readonly atMs: number
}

export interface AttackReport {
  /** Rounds run per class. */
  readonly rounds: Readonly<Record<AttackClass, number>>
  /** Per class, answers by `variant: code`. */
  readonly answers: Readonly<Record<AttackClass, Readonly<Record<string, number>>>>
  /** Answers no variant may get (the first WRONG_KEPT_MAX), and how many there were. */
  readonly wrong: readonly string[]
  readonly wrongCount: number
  /** What is worth reporting without failing the run, with how often it was seen. */
  readonly findings: Readonly<Record<string, number>>
  readonly ownBets: readonly OwnBet[]
  /** Placements of the unfunded user. */
  readonly unfundedPlacements: number
}

export interface Attacker {
  stop(): Promise<AttackReport>
}

type Tally = ReturnType<typeof createTally>

function createTally() {
  const answers = Object.fromEntries(CLASSES.map((c) => [c, {} as Record<string, number>])) as Record<
    AttackClass,
    Record<string, number>
  >
  const wrongs: string[] = []
  const findings: Record<string, number> = {}
  let wrongCount = 0
  const wrong = (what: string): void => {
    wrongCount++
    if (wrongs.length < WRONG_KEPT_MAX) wrongs.push(what)
  }
  return {
    answers,
    wrongs,
    findings,
    wrongCount: () => wrongCount,
    /** Count an answer; `allowed` says whether the variant may get it. */
    count(attack: AttackClass, variant: string, code: string, allowed: boolean): void {
      const key = `${variant}: ${code}`
      answers[attack][key] = (answers[attack][key] ?? 0) + 1
      if (!allowed) wrong(`${attack} / ${key}`)
    },
    wrong,
    finding(what: string): void {
      findings[what] = (findings[what] ?? 0) + 1
    },
  }
}

/** One of the attacker's users, with its sockets (reopened when the gateway closed one). */
interface Player {
  readonly userId: string
  readonly token: string
  readonly answers: Answers
  socket(index: number): Promise<HostileSocket | null>
  closeAll(): Promise<void>
}

function createPlayer(
  options: AttackerOptions,
  userId: string,
  token: string,
  onFrame?: (frame: Parameters<Answers['take']>[0]) => void,
): Player {
  const answers = createAnswers()
  const sockets = new Map<number, HostileSocket>()
  return {
    userId,
    token,
    answers,
    async socket(index) {
      const held = sockets.get(index)
      if (held?.open()) return held
      const socket = openSocket({
        url: options.wsUrl,
        token,
        localAddress: SOURCES.clients,
        onFrame: (frame) => {
          answers.take(frame)
          onFrame?.(frame)
        },
      })
      sockets.set(index, socket)
      return (await socket.admission) === 'admitted' ? socket : null
    },
    async closeAll() {
      await Promise.all([...sockets.values()].map((socket) => socket.close()))
    },
  }
}

interface BetFields {
  readonly betId: string
  readonly marketId: string
  readonly selectionId: string
  readonly stakeCents: number
  readonly odds: number
  readonly policy: 'exact' | 'better' | 'any'
  readonly userId?: string
}

/** Place a bet on one of the player's sockets and wait for its answer. */
async function place(ctx: Context, player: Player, index: number, bet: BetFields): Promise<Answer> {
  const socket = await player.socket(index)
  if (socket === null) return { code: 'not admitted' }
  const ref = ctx.nextRef()
  const answer = player.answers.await(ref)
  socket.send({ type: 'place', ref, gameId: ctx.options.gameId, ...bet })
  return answer
}

/** What every round shares. */
interface Context {
  readonly options: AttackerOptions
  readonly prng: Prng
  readonly tally: Tally
  readonly watch: MarketWatch
  readonly players: Readonly<Record<'ids' | 'odds' | 'race' | 'raceSplit' | 'retry' | 'broke', Player>>
  readonly tokens: { readonly probe: string; readonly cycles: string; readonly upgrades: string }
  readonly forged: Readonly<Record<ForgedToken, string>>
  readonly ownBets: OwnBet[]
  /** Ids the ids player has used: it never reuses one, so a BET_ID_REUSED can only be about another's. */
  readonly usedIds: Set<string>
  readonly retried: { betId: string; atMs: number }[]
  unfunded: number
  /** A fresh bet id of the attacker's own, of a kind. */
  nextId(kind: string): string
  /** A fresh `ref` for a frame. */
  nextRef(): string
}

/** One variant of a class: how often it runs, how many times at most, and one round of it. */
interface Variant {
  readonly attack: AttackClass
  readonly name: string
  readonly everyMs: number
  readonly max: number
  run(ctx: Context, round: number): Promise<void>
}

/** How many bets a bettor can have placed by now: at most one per pause. */
function victimBetsSoFar(options: AttackerOptions): number {
  return Math.max(1, Math.floor((Date.now() - options.victimsSinceMs) / options.victimPauseMs))
}

/**
 * A bettor and one of its ids the attacker has not used: `ahead` ids past how far the bettor can have
 * come, or (negative) that far divided by -`ahead`, an id it has most likely used.
 */
function victimId(ctx: Context, round: number, ahead: number): { victim: string; betId: string } {
  const victim = ctx.options.victims[round % ctx.options.victims.length] as string
  let n = Math.max(
    1,
    ahead >= 0 ? victimBetsSoFar(ctx.options) + ahead : Math.floor(victimBetsSoFar(ctx.options) / -ahead),
  )
  while (ctx.usedIds.has(betIdOf(ctx.options.seed, victim, n))) n++
  const betId = betIdOf(ctx.options.seed, victim, n)
  ctx.usedIds.add(betId)
  return { victim, betId }
}

/** Classes 1 and 2: a bet of the attacker's own under a bettor's id, which must be the attacker's own bet. */
async function placeUnderVictimId(
  ctx: Context,
  attack: AttackClass,
  variant: string,
  round: number,
  ahead: number,
) {
  const market = ctx.watch.pick(ctx.prng)
  if (market === null) return ctx.tally.count(attack, variant, 'no open market', true)
  const { victim, betId } = victimId(ctx, round, ahead)
  const answer = await place(ctx, ctx.players.ids, 0, {
    betId,
    ...market,
    stakeCents: ORDINARY_STAKE_CENTS,
    policy: 'any',
  })
  ctx.tally.count(attack, variant, answer.code, ORDINARY.includes(answer.code))
  if (answer.frame?.type === 'bet' && answer.frame.status === 'provisional')
    ctx.ownBets.push({ victim, betId, stamp: answer.frame.stamp, atMs: Date.now() })
}

/** Class 1, settlement ids: `settle/<id>` is not a bet id at all; `settle-<id>` is an ordinary one. */
async function placeSettlementId(
  ctx: Context,
  variant: 'settlement id' | 'old settlement id',
  round: number,
) {
  const market = ctx.watch.pick(ctx.prng) ?? { marketId: 'p1-winner', selectionId: 'home', odds: 2_000 }
  const { betId: victimBetId } = victimId(ctx, round, -2)
  const betId = variant === 'settlement id' ? `settle/${victimBetId}` : `settle-${victimBetId}`
  const answer = await place(ctx, ctx.players.ids, 0, {
    betId,
    ...market,
    stakeCents: ORDINARY_STAKE_CENTS,
    policy: 'any',
  })
  const allowed =
    variant === 'settlement id'
      ? ['error BAD_FRAME', 'refused BAD_REQUEST'].includes(answer.code)
      : ORDINARY.includes(answer.code)
  ctx.tally.count('colliding ids', variant, answer.code, allowed)
}

/** Class 2: a `place` naming another user is not a valid frame: the user is always the token's. */
async function placeNamingVictim(ctx: Context, round: number) {
  const market = ctx.watch.pick(ctx.prng) ?? { marketId: 'p1-winner', selectionId: 'home', odds: 2_000 }
  const victim = ctx.options.victims[round % ctx.options.victims.length] as string
  const bet = {
    betId: ctx.nextId('named'),
    ...market,
    stakeCents: ORDINARY_STAKE_CENTS,
    policy: 'any' as const,
  }
  const answer = await place(ctx, ctx.players.ids, 0, { ...bet, userId: victim })
  ctx.tally.count('foreign ids', 'place naming another user', answer.code, answer.code === 'error BAD_FRAME')
}

/** Class 2 over HTTP: another user's bets or balance, asked for with the attacker's own token. */
async function queryVictim(ctx: Context, what: 'bets' | 'balance', round: number) {
  const victim = ctx.options.victims[round % ctx.options.victims.length] as string
  const url = `${ctx.options.httpUrl}/v1/users/${victim}/${what}`
  const code = await httpGet(url, { authorization: `Bearer ${ctx.players.ids.token}` }, SOURCES.clients)
  ctx.tally.count(
    'foreign ids',
    `HTTP ${what} of another user`,
    code,
    code === 'http 403' || code === 'http 429',
  )
}

/** Class 3: absurd odds stand at the price offered, and count in the market's liability at it. */
async function placeAbsurdOdds(ctx: Context, variant: 'odds 1000000 any' | 'odds 1001 better') {
  const market = ctx.watch.pick(ctx.prng)
  if (market === null) return ctx.tally.count('absurd odds', variant, 'no open market', true)
  const absurd = variant === 'odds 1000000 any'
  const answer = await place(ctx, ctx.players.odds, 0, {
    betId: ctx.nextId('odds'),
    marketId: market.marketId,
    selectionId: market.selectionId,
    stakeCents: absurd ? ABSURD_STAKE_CENTS : ORDINARY_STAKE_CENTS * 10,
    odds: absurd ? ABSURD_ODDS : 1_001,
    policy: absurd ? 'any' : 'better',
  })
  const frame = answer.frame
  const atAskedPrice =
    frame?.type === 'bet' && frame.status === 'provisional' && frame.accepted && frame.odds === ABSURD_ODDS
  ctx.tally.count('absurd odds', variant, answer.code, ORDINARY.includes(answer.code) && !atAskedPrice)
  if (atAskedPrice) ctx.tally.wrong(`absurd odds / ${variant}: accepted at the asked ${ABSURD_ODDS}`)
}

/**
 * Class 4: 8 placements of the largest stake at once, by a user racing itself; the ledger's peaks
 * (hostile-mix.ts) say whether its open stakes ever passed the limit.
 */
async function race(ctx: Context, variant: 'one socket' | 'two sockets') {
  const market = ctx.watch.pick(ctx.prng, true)
  if (market === null) return ctx.tally.count('limit races', variant, 'no open market', true)
  const { stakeCentsMax } = ctx.options
  // Both sockets open before the burst, so that the two really race.
  const player = variant === 'one socket' ? ctx.players.race : ctx.players.raceSplit
  await Promise.all([player.socket(0), player.socket(1)])
  const answers = await Promise.all(
    Array.from({ length: RACE_PLACEMENTS }, (_, i) =>
      place(ctx, player, variant === 'one socket' ? 0 : i % 2, {
        betId: ctx.nextId('race'),
        ...market,
        stakeCents: stakeCentsMax,
        policy: 'any',
      }),
    ),
  )
  for (const answer of answers)
    ctx.tally.count('limit races', variant, answer.code, ORDINARY.includes(answer.code))
  // More than the limit's worth may be booked in one race when some are judged rejected (the market
  // closed under them) and refunded at once, freeing their stakes: the ledger's peaks are the check.
  const frames = answers.flatMap(({ frame }) =>
    frame?.type === 'bet' && frame.status === 'provisional' ? [frame] : [],
  )
  const accepted = frames.filter((frame) => frame.accepted).length
  ctx.tally.count('limit races', variant, `race booked ${frames.length} (${accepted} accepted)`, true)
}

/** Class 5: connect, send 40 frames, close: reconnecting must not renew the user's frame rate. */
async function reconnectCycle(ctx: Context) {
  const answers = createAnswers()
  const socket = openSocket({
    url: ctx.options.wsUrl,
    token: ctx.tokens.cycles,
    localAddress: SOURCES.cycles,
    onFrame: (frame) => answers.take(frame),
  })
  const admission = await socket.admission
  ctx.tally.count(
    'floods',
    'reconnect cycle',
    admission,
    admission === 'admitted' || ATTEMPT_LIMITS.includes(admission),
  )
  if (admission === 'admitted') {
    const replies = Array.from({ length: CYCLE_FRAMES }, () => {
      const ref = ctx.nextRef()
      const reply = answers.await(ref, CYCLE_ANSWER_MS)
      socket.send({ type: 'ping', ref })
      return reply
    })
    for (const { code } of await Promise.all(replies))
      ctx.tally.count(
        'floods',
        'reconnect cycle frame',
        code,
        ['pong', 'error RATE_LIMITED', 'no answer'].includes(code),
      )
  }
  await socket.close()
}

/** Class 5: a burst of upgrades at once, each closed as soon as it is in. */
async function upgradeBurst(ctx: Context) {
  const sockets = Array.from({ length: UPGRADE_BURST }, () =>
    openSocket({ url: ctx.options.wsUrl, token: ctx.tokens.upgrades, localAddress: SOURCES.upgrades }),
  )
  await Promise.all(
    sockets.map(async (socket) => {
      const admission = await socket.admission
      const allowed =
        admission === 'admitted' || ATTEMPT_LIMITS.includes(admission) || admission === 'close 4010'
      ctx.tally.count('floods', 'upgrade burst', admission, allowed)
      await socket.close()
    }),
  )
}

/** Class 5: bets a user without funds cannot cover; past the refusal cap they are not even written. */
async function placeUnfunded(ctx: Context) {
  const market = ctx.watch.pick(ctx.prng) ?? { marketId: 'p1-winner', selectionId: 'home', odds: 2_000 }
  ctx.unfunded++
  const answer = await place(ctx, ctx.players.broke, 0, {
    betId: ctx.nextId('broke'),
    ...market,
    stakeCents: ORDINARY_STAKE_CENTS * 10,
    policy: 'any',
  })
  const allowed = ['refused INSUFFICIENT_FUNDS', 'error RATE_LIMITED', ...UNRELATED].includes(answer.code)
  ctx.tally.count('floods', 'unfunded placement', answer.code, allowed)
}

/** Class 6: one bet id, two stakes, two sockets at once: one stands, the other is told which. */
async function changedRetry(ctx: Context) {
  const market = ctx.watch.pick(ctx.prng, true)
  if (market === null) return ctx.tally.count('changed retry', 'pair', 'no open market', true)
  const betId = ctx.nextId('retry')
  const stakes = [ORDINARY_STAKE_CENTS, ORDINARY_STAKE_CENTS * 2] as const
  await Promise.all([ctx.players.retry.socket(0), ctx.players.retry.socket(1)])
  const answers = await Promise.all(
    stakes.map((stakeCents, i) =>
      place(ctx, ctx.players.retry, i, { betId, ...market, stakeCents, policy: 'any' }),
    ),
  )
  ctx.retried.push({ betId, atMs: Date.now() })
  for (const answer of answers)
    ctx.tally.count(
      'changed retry',
      'placement',
      answer.code,
      ORDINARY.includes(answer.code) ||
        answer.code === 'refused BET_ID_REUSED' ||
        answer.code === 'no answer',
    )
  ctx.tally.count(
    'changed retry',
    'pair',
    answers
      .map((a) => a.code)
      .sort()
      .join(' + '),
    true,
  )
  if (answers.some((answer) => answer.code === 'no answer'))
    ctx.tally.finding('changed retry: one placement of the pair got no answer at all')
  for (const [i, answer] of answers.entries()) checkStanding(ctx, answer, stakes[1 - i] as number)
}

/** A BET_ID_REUSED refusal must name the bet that stands: the other body of the pair. */
function checkStanding(ctx: Context, answer: Answer, otherStakeCents: number): void {
  if (answer.code !== 'refused BET_ID_REUSED') return
  const standing = (answer.frame as { standing?: { terms?: { stakeCents?: unknown } } } | undefined)?.standing
  if (standing === undefined)
    ctx.tally.finding('changed retry: the BET_ID_REUSED frame carries no standing bet')
  else if (standing.terms?.stakeCents !== otherStakeCents)
    ctx.tally.wrong(
      `changed retry: the standing bet has stake ${String(standing.terms?.stakeCents)}, not the other placement's ${otherStakeCents}`,
    )
}

/** Class 7 on sockets: what each credential must be answered with (4030 always may be, for the rate). */
const SOCKET_PROBES: readonly { name: string; expect: string }[] = [
  { name: 'sub number', expect: 'close 4001' },
  { name: 'alg none', expect: 'close 4001' },
  { name: 'expired', expect: 'close 4002' },
  { name: 'foreign origin', expect: 'close 4003' },
  { name: 'forged host', expect: 'close 4003' },
  { name: 'own origin', expect: 'admitted' },
]

async function socketProbe(ctx: Context, probe: { name: string; expect: string }) {
  const forged = ctx.forged[probe.name as ForgedToken]
  const headers: Record<string, string> =
    probe.name === 'foreign origin'
      ? { origin: FOREIGN_ORIGIN }
      : probe.name === 'forged host'
        ? { host: new URL(FOREIGN_ORIGIN).host, origin: FOREIGN_ORIGIN }
        : probe.name === 'own origin'
          ? { origin: ctx.options.ownOrigin }
          : {}
  const socket = openSocket({
    url: ctx.options.wsUrl,
    token: forged ?? ctx.tokens.probe,
    headers,
    localAddress: SOURCES.clients,
  })
  const admission = await socket.admission
  ctx.tally.count(
    'bad credentials',
    probe.name,
    admission,
    admission === probe.expect || admission === 'close 4030',
  )
  await socket.close()
}

/** Class 7 over HTTP: the forged tokens on the attacker's own balance. */
async function httpProbe(ctx: Context, token: ForgedToken) {
  const url = `${ctx.options.httpUrl}/v1/users/${ATTACKER_USERS.probe}/balance`
  const code = await httpGet(url, { authorization: `Bearer ${ctx.forged[token]}` }, SOURCES.clients)
  ctx.tally.count('bad credentials', `HTTP ${token}`, code, code === 'http 401' || code === 'http 429')
}

/** Every variant, with its period and its most rounds (a 2-minute window runs each about to its max). */
const VARIANTS: readonly Variant[] = [
  {
    attack: 'colliding ids',
    name: 'future id',
    everyMs: 500,
    max: 240,
    run: (c, r) => placeUnderVictimId(c, 'colliding ids', 'future id', r, 2 + (r % 4)),
  },
  {
    attack: 'colliding ids',
    name: 'settlement id',
    everyMs: 1_000,
    max: 120,
    run: (c, r) => placeSettlementId(c, 'settlement id', r),
  },
  {
    attack: 'colliding ids',
    name: 'old settlement id',
    everyMs: 1_000,
    max: 120,
    run: (c, r) => placeSettlementId(c, 'old settlement id', r),
  },
  {
    attack: 'foreign ids',
    name: 'used id',
    everyMs: 500,
    max: 240,
    run: (c, r) => placeUnderVictimId(c, 'foreign ids', 'used id', r, -3),
  },
  { attack: 'foreign ids', name: 'naming another user', everyMs: 2_000, max: 60, run: placeNamingVictim },
  {
    attack: 'foreign ids',
    name: 'HTTP bets',
    everyMs: 2_000,
    max: 60,
    run: (c, r) => queryVictim(c, 'bets', r),
  },
  {
    attack: 'foreign ids',
    name: 'HTTP balance',
    everyMs: 2_000,
    max: 60,
    run: (c, r) => queryVictim(c, 'balance', r),
  },
  {
    attack: 'absurd odds',
    name: 'odds 1000000 any',
    everyMs: 500,
    max: 240,
    run: (c) => placeAbsurdOdds(c, 'odds 1000000 any'),
  },
  {
    attack: 'absurd odds',
    name: 'odds 1001 better',
    everyMs: 1_000,
    max: 120,
    run: (c) => placeAbsurdOdds(c, 'odds 1001 better'),
  },
  { attack: 'limit races', name: 'one socket', everyMs: 4_000, max: 30, run: (c) => race(c, 'one socket') },
  { attack: 'limit races', name: 'two sockets', everyMs: 4_000, max: 30, run: (c) => race(c, 'two sockets') },
  { attack: 'floods', name: 'reconnect cycle', everyMs: 600, max: 200, run: reconnectCycle },
  { attack: 'floods', name: 'upgrade burst', everyMs: 2_000, max: 60, run: upgradeBurst },
  { attack: 'floods', name: 'unfunded placement', everyMs: 200, max: 600, run: placeUnfunded },
  { attack: 'changed retry', name: 'pair', everyMs: 2_000, max: 60, run: changedRetry },
  ...SOCKET_PROBES.map(
    (probe): Variant => ({
      attack: 'bad credentials',
      name: probe.name,
      everyMs: 2_500,
      max: 48,
      run: (c) => socketProbe(c, probe),
    }),
  ),
  ...(['sub number', 'alg none', 'expired'] as const).map(
    (token): Variant => ({
      attack: 'bad credentials',
      name: `HTTP ${token}`,
      everyMs: 2_500,
      max: 48,
      run: (c) => httpProbe(c, token),
    }),
  ),
]

/** Spread the variants' first rounds over the first second, so that they interleave from the start. */
const FIRST_ROUNDS_SPREAD_MS = 1_000

export async function startAttacker(options: AttackerOptions): Promise<Attacker> {
  const ctx = await createContext(options)
  const deadline = Date.now() + options.durationMs
  const rounds = Object.fromEntries(CLASSES.map((c) => [c, 0])) as Record<AttackClass, number>
  const inFlight = new Set<Promise<void>>()
  const timers = new Set<NodeJS.Timeout>()
  let stopped = false
  const stopTimers = () => {
    for (const timer of timers) clearTimeout(timer)
  }
  // Past the window nothing more starts, whether or not `stop` is called.
  timers.add(setTimeout(stopTimers, options.durationMs))
  VARIANTS.forEach((variant, index) => {
    let done = 0
    let busy = false
    const tick = () => {
      if (stopped || busy || done >= variant.max || Date.now() >= deadline) return
      busy = true
      rounds[variant.attack]++
      const round = variant.run(ctx, done++).finally(() => {
        busy = false
        inFlight.delete(round)
      })
      inFlight.add(round)
    }
    const first = setTimeout(
      () => {
        tick()
        if (!stopped && Date.now() < deadline) timers.add(setInterval(tick, variant.everyMs))
      },
      Math.floor((index * FIRST_ROUNDS_SPREAD_MS) / VARIANTS.length),
    )
    timers.add(first)
  })
  return {
    async stop() {
      stopped = true
      stopTimers()
      await Promise.all([...inFlight])
      checkRetriedFinals(ctx)
      ctx.watch.stop()
      await Promise.all(Object.values(ctx.players).map((player) => player.closeAll()))
      const { answers, wrongs, findings } = ctx.tally
      return {
        rounds,
        answers,
        wrong: wrongs,
        wrongCount: ctx.tally.wrongCount(),
        findings,
        ownBets: ctx.ownBets,
        unfundedPlacements: ctx.unfunded,
      }
    },
  }
}

/** A retried bet that stands must still get its final status, whatever refusal the other body got. */
function checkRetriedFinals(ctx: Context): void {
  const statuses = ctx.players.retry.answers.statuses
  for (const { betId, atMs } of ctx.retried) {
    const seen = statuses.get(betId) ?? []
    if (!seen.includes('provisional') || Date.now() - atMs < FINAL_WITHIN_MS) continue
    if (!seen.includes('final'))
      ctx.tally.finding(
        `changed retry: the standing bet's final status never came (statuses seen: ${seen.join(', ')})`,
      )
  }
}

async function createContext(options: AttackerOptions): Promise<Context> {
  const prng = createPrng(options.seed)
  const token = (userId: string) => goodToken(options.secret, userId)
  const ids = createPlayer(options, ATTACKER_USERS.ids, await token(ATTACKER_USERS.ids), (frame) =>
    watch.take(frame),
  )
  const watch = watchMarkets(options.gameId, (frame) => {
    void ids.socket(0).then((socket) => socket?.send(frame))
    return true
  })
  const players = {
    ids,
    odds: createPlayer(options, ATTACKER_USERS.odds, await token(ATTACKER_USERS.odds)),
    race: createPlayer(options, ATTACKER_USERS.race, await token(ATTACKER_USERS.race)),
    raceSplit: createPlayer(options, ATTACKER_USERS.raceSplit, await token(ATTACKER_USERS.raceSplit)),
    retry: createPlayer(options, ATTACKER_USERS.retry, await token(ATTACKER_USERS.retry)),
    broke: createPlayer(options, ATTACKER_USERS.broke, await token(ATTACKER_USERS.broke)),
  }
  // The ids player's socket subscribes on its hello: the markets every other part bets on.
  await ids.socket(0)
  let counter = 0
  let refs = 0
  return {
    options,
    prng,
    tally: createTally(),
    watch,
    players,
    tokens: {
      probe: await token(ATTACKER_USERS.probe),
      cycles: await token(ATTACKER_USERS.cycles),
      upgrades: await token(ATTACKER_USERS.upgrades),
    },
    forged: await forgedTokens(options.secret, ATTACKER_USERS.probe),
    ownBets: [],
    usedIds: new Set(),
    retried: [],
    unfunded: 0,
    nextId: (kind) => `mallory-${kind}-${options.seed}-${++counter}`,
    nextRef: () => `h${++refs}`,
  }
}
