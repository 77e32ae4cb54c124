/**
 * The product simulator: the nodes' own code (trader node, bet service, settler, replica sync,
 * ledger fold) in one seeded world (world.ts), with faults and hostile bettors, checked against
 * what an outside observer can establish (checks.ts). TigerBeetle's VOPR is the model: the real
 * state machines, a simulated network and clock, one seed for everything, and a replay command.
 *
 * Faults, drawn from the seed: clock offsets up to `skewMs` per node (beyond the 5 s drift bound
 * when asked), nodes cut off and paused, API nodes restarted with nothing in memory, the active
 * trader restarted (one writer) or paused past its standbys' takeover (two or three writers), core
 * messages lost and every delivery delayed. Bettors race their balance and send ids that collide
 * with other users' bets, with changed bodies, and in the settlement namespace.
 */

import { AFTER_ALL_STAMPS, BACKENDS, type BackendName, transitionAt } from '../../../crdt/index.ts'
import type { AllowanceReceiptEntry } from '../../../ledger/index.ts'
import type { Ask } from '../../../nodes/api/allowance.ts'
import { createPrng, type Prng } from '../../../nodes/fabric/prng.ts'
import { BEAT_FULL_EVERY } from '../../../nodes/fabric/writer-beats.ts'
import type { TraderNode } from '../../../nodes/trader/trader-node.ts'
import type { PlaceBetReply } from '../../../protocol/bets.ts'
import { shardOf } from '../../../protocol/shards.ts'
import { DEFAULT_NETWORK } from '../network.ts'
import { checkRun, type PlacedBet } from './checks.ts'
import {
  type ApiSim,
  GAME,
  HEARTBEAT_MS,
  type HeardFinal,
  joinWorld,
  POINT_MS,
  type SettlementSim,
  SHARDS,
  startApi,
  startSettlement,
  startTrader,
} from './nodes.ts'
import { createWorld, runUntil, type World } from './world.ts'

export const PRODUCT_SIM_DEFAULTS = { skewMs: 150, writers: 1, points: 6, backend: 'yjs' as BackendName }
export const SKEW_MS_MAX = 60_000
export const WRITERS_MAX = 3
const START_MS = 1_800_000_000_000
const USERS = ['alice', 'bob', 'carol', 'dave', 'erin', 'mallory'] as const
const DEPOSIT_CENTS = 20_000
/**
 * Tight enough that racing bettors (four stakes of 6,000 at once) run into the open-stake limit,
 * and that busy markets use up their shard's share of the liability limit and move allowance.
 */
export const SIM_BET_LIMITS = { userOpenStakeCentsMax: 8_000, marketLiabilityCentsMax: 24_000 } as const
const STEPS_MAX = 2_000_000
/** After the match: time for every final, settlement and restart to land. */
const QUIESCE_MS = 6_000
/** The grace after the match's end before it is archived, in the runs that archive it. */
const ARCHIVE_AFTER_MS_MIN = 200
const ARCHIVE_AFTER_MS_MAX = 3_000
/** api-1 serves every shard; api-2 a seeded set of shards, and api-3 the others (all when none). */
const API_NODES = ['api-1', 'api-2', 'api-3'] as const

export interface ProductSimOptions {
  readonly seed: number
  readonly skewMs?: number
  readonly writers?: number
  readonly points?: number
  readonly backend?: BackendName
}

export interface ProductSimReport {
  readonly seed: number
  readonly failures: readonly string[]
  readonly stats: Record<string, number>
}

/** Settle `promise` while the world runs (startups wait for simulated time). */
async function drive<T>(world: World, promise: Promise<T>, maxMs = 30_000): Promise<T> {
  let done = false
  let value: T | undefined
  let failure: unknown
  promise.then(
    (v) => {
      done = true
      value = v
    },
    (error: unknown) => {
      done = true
      failure = error ?? new Error('rejected')
    },
  )
  const deadline = world.scheduler.nowMs() + maxMs
  while (!done) {
    if (world.scheduler.nowMs() >= deadline) throw new Error(`a startup took over ${maxMs} simulated ms`)
    await runUntil(world, world.scheduler.nowMs() + 10, STEPS_MAX)
  }
  if (failure !== undefined) throw failure
  return value as T
}

export async function runProductSimulation(options: ProductSimOptions): Promise<ProductSimReport> {
  const { seed } = options
  const skewMs = options.skewMs ?? PRODUCT_SIM_DEFAULTS.skewMs
  const writerCount = options.writers ?? PRODUCT_SIM_DEFAULTS.writers
  const points = options.points ?? PRODUCT_SIM_DEFAULTS.points
  const backend = BACKENDS[options.backend ?? PRODUCT_SIM_DEFAULTS.backend]
  const world = createWorld(createPrng(seed), START_MS)
  const prng = world.prng
  const writers = Array.from({ length: writerCount }, (_, i) => `trader-${i + 1}`)
  for (const node of [...writers, ...API_NODES, 'settle-1']) {
    world.setOffset(node, prng.int(-skewMs, skewMs))
  }
  const stats: Record<string, number> = { apiRestarts: 0, traderRestarts: 0, traderPauses: 0, cuts: 0 }
  const heard: HeardFinal[] = []
  const onFinal = (final: HeardFinal) => heard.push(final)

  const shardsOf = planShards(prng)
  const apis = new Map<string, ApiSim | null>()
  const ask = (node: string) => askBetweenNodes(world, apis, node)
  for (const node of API_NODES)
    apis.set(node, await startApi(world, backend, node, SIM_BET_LIMITS, onFinal, ask(node), shardsOf(node)))
  const settlement: SettlementSim = await startSettlement(world, backend, 'settle-1', onFinal)
  const admin = apis.get('api-1') as ApiSim
  for (const userId of USERS)
    void admin.ledger.append({ type: 'deposit', id: `deposit-${userId}`, userId, amountCents: DEPOSIT_CENTS })
  await runUntil(world, world.scheduler.nowMs() + 50, STEPS_MAX)

  // Half the runs archive the match soon after it ends, while settlements may still be running: then
  // every check below runs on the archived replica, as later lookups and settlements would.
  const archiveAfterMs = prng.chance(0.5) ? prng.int(ARCHIVE_AFTER_MS_MIN, ARCHIVE_AFTER_MS_MAX) : 0
  stats.archived = 0
  const traders = new Map<string, TraderNode | null>()
  for (const [i, node] of writers.entries())
    traders.set(
      node,
      await drive(
        world,
        startTrader(world, backend, node, writers, i === 0 ? 'active' : 'standby', points, archiveAfterMs),
      ),
    )

  const placed: PlacedBet[] = []
  const matchEndMs = world.scheduler.nowMs() + points * POINT_MS + 1_500
  scheduleBettors(world, apis, placed, matchEndMs, stats)
  const errors: string[] = []
  scheduleFaults(world, {
    apis,
    traders,
    writers,
    backend,
    points,
    archiveAfterMs,
    onFinal,
    stats,
    matchEndMs,
    errors,
    shardsOf,
    ask,
  })
  await runUntil(world, matchEndMs + QUIESCE_MS, STEPS_MAX)

  // An auditor joins at the end and reads the whole log, as a fresh node would.
  const auditor = await joinWorld(world, backend, 'auditor')
  // 7. The open-stake limit holds at every entry of the log, however the bettors raced.
  const open = new Map<string, number>()
  auditor.ledger.onEntry((_shard, _seq, result, entry) => {
    if (result.status !== 'applied' || entry === null) return
    if (entry.type === 'bet') {
      const cents = (open.get(entry.userId) ?? 0) + entry.stakeCents
      open.set(entry.userId, cents)
      if (cents > SIM_BET_LIMITS.userOpenStakeCentsMax)
        errors.push(`${entry.userId} held ${cents} cents of open stakes after ${entry.id}, past the limit`)
    } else if (entry.type === 'settlement') {
      const bet = auditor.ledger.foldFor(entry.userId).bet(entry.userId, entry.betId)
      if (bet !== null) open.set(entry.userId, (open.get(entry.userId) ?? 0) - bet.stakeCents)
    }
  })
  // 8. The market liability escrow: after every message of every shard, each market's open
  // liability is within the shard's share plus the allowance moved to it, and every receipt has its
  // grant, applied on the shard it names, for the same cents, to this shard.
  const shareCents = Math.floor(SIM_BET_LIMITS.marketLiabilityCentsMax / SHARDS)
  const receipts: { shard: number; entry: AllowanceReceiptEntry }[] = []
  auditor.ledger.onEntry((shard, seq, result, entry) => {
    if (entry === null || entry.type === 'deposit' || entry.type === 'withdrawal') return
    if (entry.type === 'settlement') return
    const fold = auditor.ledger.fold(shard)
    const held = fold.marketLiability(entry.gameId, entry.marketId)
    const allowance = shareCents + fold.allowanceMoved(entry.gameId, entry.marketId)
    if (held > allowance)
      errors.push(
        `shard ${shard} held ${held} cents of liability on ${entry.marketId} at ${seq}, past ${allowance}`,
      )
    if (entry.type === 'allowance-receipt' && result.status === 'applied') receipts.push({ shard, entry })
  })
  await drive(
    world,
    (async () => {
      while (!(auditor.replicas.caughtUp() && auditor.ledger.caughtUp()))
        await new Promise<void>((resolve) => world.timers('auditor').setTimeout(resolve, 20))
    })(),
  )
  // A node that just joined finalizes nothing of a writer's before it hears the writer's next full
  // beat (nodes/fabric/writer-beats.ts): wait for three of them, in case one is lost or delayed.
  await runUntil(
    world,
    world.scheduler.nowMs() + 3 * BEAT_FULL_EVERY * HEARTBEAT_MS + DEFAULT_NETWORK.delayMsMax,
    STEPS_MAX,
  )
  // An archived match answers from its archive: every node and the auditor load it.
  for (const view of [auditor, ...apis.values(), settlement])
    if (
      view !== null &&
      (await drive(world, view.replicas.loadArchive(GAME))) !== null &&
      view.replicas.isArchived(GAME)
    )
      stats.archived++
  for (const { shard, entry } of receipts) {
    const grant = auditor.ledger.fold(entry.fromShard).transfer('allowance-grant', entry.id)
    if (grant?.type !== 'allowance-grant' || grant.toShard !== shard || grant.cents !== entry.cents)
      errors.push(`receipt ${entry.id} on shard ${shard} has no matching grant on shard ${entry.fromShard}`)
  }
  stats.allowanceMoves = receipts.length
  const failures = [
    ...errors,
    ...shardsOf.strayReads(),
    ...checkRun({
      world,
      placed,
      heard,
      auditor,
      nodes: [
        ...[...apis.values()].filter((api): api is ApiSim => api !== null),
        { node: 'settle-1', ...settlement },
      ],
      gameId: GAME,
    }),
  ]
  for (const api of apis.values()) await api?.close()
  await settlement.close()
  for (const trader of traders.values()) await trader?.close()
  await auditor.ledger.close()
  await auditor.replicas.close()
  stats.bets = placed.length
  stats.acknowledged = placed.filter((bet) => bet.reply?.ok === true).length
  for (const code of ['MARKET_ALLOWANCE_MOVING', 'MARKET_LIABILITY_LIMIT'] as const)
    stats[code] = placed.filter((bet) => bet.reply?.ok === false && bet.reply.error.code === code).length
  return { seed, failures, stats }
}

/** Bettors place bets through whichever API node is up, some of them hostile. */
function scheduleBettors(
  world: World,
  apis: Map<string, ApiSim | null>,
  placed: PlacedBet[],
  untilMs: number,
  stats: Record<string, number>,
): void {
  const prng = world.prng
  let counter = 0
  const send = (userId: string, betId: string, body: Record<string, unknown>, sentAs: PlacedBet['kind']) => {
    let kind = sentAs
    const up = [...apis.values()].filter((api): api is ApiSim => api !== null && world.isUp(api.node))
    // A queue group per shard: a request reaches a node that serves the user's shard; now and then
    // a misrouted one reaches a node that does not, and must be refused.
    const shard = shardOf(userId, SHARDS)
    const others = up.filter((api) => !api.ledger.serves(shard))
    const misrouted = others.length > 0 && prng.chance(MISROUTED_SHARE)
    const candidates = misrouted ? others : up.filter((api) => api.ledger.serves(shard))
    if (candidates.length === 0) return
    const api = prng.pick(candidates)
    if (misrouted) kind = 'misrouted'
    const marketId = String(body.marketId)
    const seen = transitionAt(api.replicas.replica(GAME)?.game ?? emptyGame, marketId, AFTER_ALL_STAMPS)
    const bet: PlacedBet = {
      userId,
      betId,
      body,
      node: api.node,
      kind,
      sentAtMs: world.scheduler.nowMs(),
      seen: seen === null ? null : { status: seen.status, stamp: seen.stamp },
      reply: null,
    }
    placed.push(bet)
    api.service.place(new TextEncoder().encode(JSON.stringify({ betId, userId, ...body }))).then(
      (reply: PlaceBetReply) => {
        bet.reply = reply
      },
      (error: unknown) => {
        bet.reply = { ok: false, error: { code: 'OVERLOADED', message: `threw: ${String(error)}` } }
        stats.threw = (stats.threw ?? 0) + 1
      },
    )
  }
  const tick = () => {
    if (world.scheduler.nowMs() > untilMs) return
    world.scheduler.after(prng.int(20, 90), tick)
    const api = [...apis.values()].find((a) => a !== null)
    const game = api?.replicas.replica(GAME)?.game
    if (game === undefined) return
    let point = 0
    for (const marketId of game.markets.keys())
      point = Math.max(point, Number(/^p(\d+)-/.exec(marketId)?.[1] ?? 0))
    if (point === 0) return
    const marketId = prng.chance(0.7) ? `p${point}-winner` : `p${point}-ace`
    const selections = marketId.endsWith('winner') ? ['home', 'away'] : ['yes', 'no']
    const selectionId = prng.pick(selections)
    const offered = transitionAt(game, marketId, AFTER_ALL_STAMPS)?.prices[selectionId] ?? 2_000
    const userId = prng.pick(USERS)
    const body = {
      gameId: GAME,
      marketId,
      selectionId,
      stakeCents: prng.int(100, 3_000),
      odds: offered,
      policy: prng.pick(['exact', 'better', 'any']),
    }
    const previous = placed.length > 0 ? prng.pick(placed) : null
    const roll = prng.next()
    if (previous !== null && previous.userId !== userId && roll < 0.08) {
      send(userId, previous.betId, body, 'colliding id')
    } else if (previous !== null && roll < 0.13) {
      send(
        previous.userId,
        previous.betId,
        { ...previous.body, stakeCents: Number(previous.body.stakeCents) + 1 },
        'changed body',
      )
    } else if (previous !== null && roll < 0.16) {
      send(userId, `settle/${previous.betId}`, body, 'settlement id')
    } else if (roll < 0.2) {
      for (let i = 0; i < 4; i++)
        send(userId, `race-${prng.seed}-${++counter}`, { ...body, stakeCents: 6_000 }, 'race')
    } else {
      send(userId, `bet-${prng.seed}-${++counter}`, body, 'plain')
    }
  }
  world.scheduler.after(100, tick)
}

const emptyGame = BACKENDS.yjs.create().game

/**
 * A request from `from` to an API node serving `shard`, as NATS carries it in the world: to one up
 * node of the shard's queue group, there and back after network delays, lost to a node that is cut
 * off or paused on the way; no answer within the timeout rejects, and no node serving the shard
 * rejects at once (no responders).
 */
function askBetweenNodes(world: World, apis: Map<string, ApiSim | null>, from: string): Ask {
  const prng = world.prng
  return (shard, request, timeoutMs) =>
    new Promise((resolve, reject) => {
      let done = false
      const finish = (settle: () => void) => {
        if (done) return
        done = true
        cancel()
        settle()
      }
      const cancel = world
        .timers(from)
        .setTimeout(() => finish(() => reject(new Error(`no answer in ${timeoutMs} ms`))), timeoutMs)
      const serving = [...apis.values()].filter(
        (api): api is ApiSim => api !== null && world.isUp(api.node) && api.ledger.serves(shard),
      )
      if (serving.length === 0) return finish(() => reject(new Error('no responders')))
      const to = prng.pick(serving)
      world.scheduler.after(prng.int(1, 5), () => {
        if (!world.isUp(to.node)) return
        void to.service.allowances.give(shard, request).then((reply) =>
          world.scheduler.after(prng.int(1, 5), () => {
            if (world.isUp(from)) finish(() => resolve(JSON.parse(JSON.stringify(reply))))
          }),
        )
      })
    })
}

interface FaultContext {
  readonly apis: Map<string, ApiSim | null>
  readonly traders: Map<string, TraderNode | null>
  readonly writers: readonly string[]
  readonly backend: (typeof BACKENDS)[BackendName]
  readonly points: number
  readonly archiveAfterMs: number
  readonly onFinal: (final: HeardFinal) => void
  readonly stats: Record<string, number>
  readonly matchEndMs: number
  /** What went wrong in the simulation's own moves (a restart that threw). */
  readonly errors: string[]
  /** The shards a node serves, and the hook that records what it reads (planShards). */
  readonly shardsOf: ReturnType<typeof planShards>
  readonly ask: (node: string) => Ask
}

/** Cuts, pauses and restarts at random times during the match, all over before it ends. */
function scheduleFaults(world: World, context: FaultContext): void {
  const prng = world.prng
  const { apis, traders, writers, stats } = context
  const during = () =>
    world.scheduler.nowMs() +
    prng.int(300, Math.max(400, context.matchEndMs - world.scheduler.nowMs() - 2_500))
  for (let i = prng.int(0, 2); i > 0; i--) {
    world.scheduler.at(during(), () => {
      world.cut(prng.pick([...writers, ...API_NODES, 'settle-1']), prng.int(200, 1_200))
      stats.cuts = (stats.cuts ?? 0) + 1
    })
  }
  for (let i = prng.int(0, 2); i > 0; i--) {
    const node = prng.pick(API_NODES)
    world.scheduler.at(during(), () => {
      const api = apis.get(node)
      if (api === null || api === undefined) return
      apis.set(node, null)
      stats.apiRestarts = (stats.apiRestarts ?? 0) + 1
      void (async () => {
        await api.close()
        world.scheduler.after(prng.int(100, 800), () => {
          startApi(
            world,
            context.backend,
            node,
            SIM_BET_LIMITS,
            context.onFinal,
            context.ask(node),
            context.shardsOf(node),
          ).then(
            (fresh) => apis.set(node, fresh),
            (error: unknown) => context.errors.push(`restarting ${node} failed: ${String(error)}`),
          )
        })
      })()
    })
  }
  const active = writers[0] as string
  if (writers.length === 1 && prng.chance(0.5)) {
    world.scheduler.at(during(), () => {
      const trader = traders.get(active)
      if (!trader) return
      traders.set(active, null)
      stats.traderRestarts = (stats.traderRestarts ?? 0) + 1
      void (async () => {
        await trader.close()
        world.scheduler.after(prng.int(100, 1_000), () => {
          startTrader(
            world,
            context.backend,
            active,
            writers,
            'active',
            context.points,
            context.archiveAfterMs,
          ).then(
            (fresh) => traders.set(active, fresh),
            (error: unknown) => context.errors.push(`restarting ${active} failed: ${String(error)}`),
          )
        })
      })()
    })
  }
  if (writers.length > 1 && prng.chance(0.6)) {
    world.scheduler.at(during(), () => {
      world.pause(active, prng.int(800, 2_000))
      stats.traderPauses = (stats.traderPauses ?? 0) + 1
    })
  }
}

/** Beyond-the-bound offsets the mixed profile gives every fourth seed (SIM_MAX_DRIFT_MS is 400). */
export const BEYOND_BOUND_SKEW_MS = 700

/**
 * The fault space `npm test` covers, seed by seed: one, two or three writers in turn, and clock
 * offsets beyond the drift bound for every fourth seed.
 */
export function mixedProfile(seed: number): Required<Pick<ProductSimOptions, 'skewMs' | 'writers'>> {
  return {
    writers: 1 + (seed % WRITERS_MAX),
    skewMs: seed % 4 === 3 ? BEYOND_BOUND_SKEW_MS : PRODUCT_SIM_DEFAULTS.skewMs,
  }
}

/** The command that replays one run exactly. */
export function replayCommand(options: ProductSimOptions): string {
  const writers = options.writers ?? PRODUCT_SIM_DEFAULTS.writers
  const skewMs = options.skewMs ?? PRODUCT_SIM_DEFAULTS.skewMs
  return `npm run sim -- --seed ${options.seed} --skew-ms ${skewMs} --writers ${writers}`
}

/** Bets sent on purpose to a node that does not serve the user's shard. */
const MISROUTED_SHARE = 0.03

/**
 * Which shards each API node serves (api-1 all; api-2 a seeded subset, api-3 the rest, or all when
 * api-2 took every shard), with what each node read: a node must read only the shards it serves.
 */
function planShards(prng: Prng) {
  const all = Array.from({ length: SHARDS }, (_, shard) => shard)
  const second = all.filter(() => prng.chance(0.5))
  const secondServed = second.length > 0 ? second : [prng.int(0, SHARDS - 1)]
  const third = all.filter((shard) => !secondServed.includes(shard))
  const served: Record<string, readonly number[]> = {
    'api-1': all,
    'api-2': secondServed,
    'api-3': third.length > 0 ? third : all,
  }
  const read = new Map<string, Set<number>>()
  const shardsOf = (node: string) => {
    const reads = read.get(node) ?? new Set<number>()
    read.set(node, reads)
    return { served: served[node] ?? all, onRead: (shard: number) => reads.add(shard) }
  }
  shardsOf.strayReads = () =>
    [...read].flatMap(([node, shards]) =>
      [...shards]
        .filter((shard) => !(served[node] ?? all).includes(shard))
        .map((shard) => `${node} read ledger shard ${shard}, which it does not serve`),
    )
  return shardsOf
}
