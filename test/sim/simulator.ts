/**
 * The deterministic simulator of the fabric (the Yjs test-connector idea, grown up).
 *
 * One seed owns all randomness and all time. A trader writer plays a generated tennis match; two
 * API nodes place bets during open and suspended windows, stamping them with their own clocks
 * (skewed) and judging them on their own replicas; a settlement node and the others judge every
 * bet they hear of. Updates and bets cross a network that delays, reorders, duplicates, loses
 * (then redelivers) and partitions; nodes restart from snapshots. At the end everything is
 * delivered and the invariants are checked (checks.ts). A failure names the seed to replay.
 */

import {
  AFTER_ALL_STAMPS,
  BACKENDS,
  type BackendName,
  type BetTerms,
  correctionDeadline,
  createHlc,
  decodeStamp,
  type Entry,
  encodeStamp,
  type Heartbeat,
  type Hlc,
  isFinal,
  judge,
  maxStamp,
  ODDS_POLICIES,
  type Replica,
  resultOf,
  stampOps,
  type TransitionOp,
  transitionAt,
  type Verdict,
} from '../../crdt/index.ts'
import { createPrng, type Prng } from '../../nodes/fabric/prng.ts'
import { checkInvariants } from './checks.ts'
import { createNetwork, type Network, type NetworkStats } from './network.ts'
import { createScheduler, type Scheduler } from './scheduler.ts'
import { isHeartbeat, tennisScript } from './tennis-script.ts'

export interface SimOptions {
  readonly seed: number
  readonly backend: BackendName
  readonly points?: number
  /** Narration for the demo: called as things happen, in simulated time. */
  readonly onEvent?: (event: SimEvent) => void
}

export type SimEvent =
  | { readonly type: 'ops'; readonly atMs: number; readonly entries: readonly Entry[] }
  | { readonly type: 'bet'; readonly atMs: number; readonly bet: SimBet }
  | { readonly type: 'final'; readonly atMs: number; readonly bet: SimBet; readonly verdict: Verdict }
  | { readonly type: 'partition'; readonly atMs: number; readonly sides: ReadonlyMap<string, number> }
  | { readonly type: 'heal'; readonly atMs: number }
  | { readonly type: 'restart'; readonly atMs: number; readonly node: string }

export const SIM_LIMITS = {
  maxDriftMs: 500,
  skewMsMax: 220,
  windowMs: 2_000,
  betIntervalMsMin: 30,
  betIntervalMsMax: 300,
  /** Chance that an API node bets the instant an update with new entries arrives. */
  snipeChance: 0.3,
  partitionsMax: 3,
  partitionMsMax: 6_000,
  /** Chance per node per 100 ms of a restart from snapshots. */
  restartChancePerTick: 0.005,
  stepsMax: 2_000_000,
} as const

export const TRADER = 'trader-1'
export const API_NODES = ['api-1', 'api-2'] as const
export const SETTLEMENT = 'settle-1'
const NODES = [TRADER, ...API_NODES, SETTLEMENT]

export interface SimBet {
  readonly id: string
  readonly node: string
  readonly terms: BetTerms
  readonly provisional: Verdict
  /** The latest transition of the market the placing node had seen when it stamped the bet. */
  readonly seen: Entry<TransitionOp> | null
}

export interface SimNode {
  readonly id: string
  replica: Replica
  hlc: Hlc
  readonly skewMs: number
  /** Bets this node has heard of whose verdict it does not yet hold final. */
  readonly undecided: Map<string, SimBet>
  /** The verdict each bet had when this node first saw it final. */
  readonly firstFinal: Map<string, Verdict>
  /**
   * Per market this node would have paid (result agreed and final, correction deadline final):
   * the verdict of every bet on it that was final at that moment. Nothing may change them after.
   */
  readonly paid: Map<string, Map<string, Verdict>>
}

export interface SimReport {
  readonly seed: number
  readonly backend: BackendName
  readonly bets: number
  readonly accepted: number
  readonly provisionalChanged: number
  readonly restarts: number
  readonly network: NetworkStats
  readonly stateHash: string
  readonly failures: readonly string[]
}

export interface SimWorld {
  readonly prng: Prng
  readonly scheduler: Scheduler
  readonly network: Network
  readonly nodes: ReadonlyMap<string, SimNode>
  readonly bets: SimBet[]
  /** Every transition the trader committed: the ground truth the checks compare against. */
  readonly traderLog: Entry<TransitionOp>[]
  restarts: number
  readonly emit: (event: SimEvent) => void
}

function createNode(world: Pick<SimWorld, 'prng' | 'scheduler'>, backend: BackendName, id: string): SimNode {
  const skewMs = world.prng.int(-SIM_LIMITS.skewMsMax, SIM_LIMITS.skewMsMax)
  return {
    id,
    replica: BACKENDS[backend].create({ actor: world.prng.uint32() }),
    hlc: createHlc({
      node: id,
      clock: () => world.scheduler.nowMs() + skewMs,
      maxDriftMs: SIM_LIMITS.maxDriftMs,
    }),
    skewMs,
    undecided: new Map(),
    firstFinal: new Map(),
    paid: new Map(),
  }
}

/** Markets that became payable on this node: record the verdict of every bet on them. */
function recordPayable(world: SimWorld, node: SimNode): void {
  const game = node.replica.game
  for (const marketId of game.markets.keys()) {
    if (node.paid.has(marketId)) continue
    const result = resultOf(game, marketId)
    const deadline = correctionDeadline(game, marketId)
    if (result.state !== 'agreed' || deadline === null) continue
    if (!isFinal(game, result.stamp) || !isFinal(game, deadline)) continue
    const verdicts = new Map<string, Verdict>()
    for (const bet of world.bets) {
      if (bet.terms.marketId !== marketId) continue
      // A bet stamped past the watermark is not final yet, and a settler would not touch it.
      const verdict = judge(game, bet.terms)
      if (verdict.final) verdicts.set(bet.id, verdict)
    }
    node.paid.set(marketId, verdicts)
  }
}

/** Re-judge the bets a node holds undecided; record the verdict of those that became final. */
function settleUndecided(world: SimWorld, node: SimNode): void {
  for (const [id, bet] of node.undecided) {
    const verdict = judge(node.replica.game, bet.terms)
    if (!verdict.final) continue
    node.firstFinal.set(id, verdict)
    node.undecided.delete(id)
    if (bet.node === node.id) world.emit({ type: 'final', atMs: world.scheduler.nowMs(), bet, verdict })
  }
}

function receiveUpdate(world: SimWorld, node: SimNode, update: Uint8Array): void {
  const { added, maxStamp: raised } = node.replica.apply(update)
  if (raised !== null) node.hlc.receive(decodeStamp(raised))
  settleUndecided(world, node)
  recordPayable(world, node)
  // Bettors snipe: some bets land the instant a change arrives, when clock skew matters most.
  const snipe = world.prng.chance(SIM_LIMITS.snipeChance)
  if (snipe && added > 0 && (API_NODES as readonly string[]).includes(node.id)) placeBet(world, node)
}

function receiveHeartbeat(world: SimWorld, node: SimNode, heartbeat: Heartbeat): void {
  const { maxStamp: raised } = node.replica.applyHeartbeat(heartbeat)
  if (raised !== null) node.hlc.receive(decodeStamp(raised))
  settleUndecided(world, node)
  recordPayable(world, node)
}

function sendHeartbeat(world: SimWorld, trader: SimNode): void {
  const heartbeat = trader.replica.heartbeat(encodeStamp(trader.hlc.now()))
  settleUndecided(world, trader)
  broadcast(world, trader.id, (node) => receiveHeartbeat(world, node, heartbeat))
}

function broadcast(world: SimWorld, from: string, deliver: (node: SimNode) => void): void {
  for (const node of world.nodes.values()) {
    if (node.id !== from) world.network.send(from, node.id, () => deliver(node))
  }
}

/** A node restarts: it loads a peer's snapshot, merges its own, and resumes its clock past both. */
function restart(world: SimWorld, backend: BackendName, node: SimNode): void {
  const peer = world.prng.pick([...world.nodes.values()])
  const replica = BACKENDS[backend].restore(peer.replica.snapshot(), { actor: world.prng.uint32() })
  replica.apply(node.replica.snapshot())
  node.replica = replica
  node.hlc = createHlc({
    node: node.id,
    clock: () => world.scheduler.nowMs() + node.skewMs,
    maxDriftMs: SIM_LIMITS.maxDriftMs,
  })
  const latest = maxStamp(replica.game)
  if (latest !== null) node.hlc.receive(decodeStamp(latest))
  world.restarts++
  world.emit({ type: 'restart', atMs: world.scheduler.nowMs(), node: node.id })
}

function scheduleTrader(world: SimWorld, points: number): number {
  const trader = world.nodes.get(TRADER) as SimNode
  const steps = tennisScript(world.prng, {
    gameId: 'match-1',
    writers: [TRADER],
    points,
    startMs: world.scheduler.nowMs(),
    windowMs: SIM_LIMITS.windowMs,
    heartbeatMs: world.prng.int(40, 200),
  })
  for (const step of steps) {
    world.scheduler.at(step.atMs, () => {
      if (isHeartbeat(step)) {
        sendHeartbeat(world, trader)
        return
      }
      const entries = stampOps(trader.hlc, step.ops)
      for (const entry of entries) if (entry.kind === 'transition') world.traderLog.push(entry)
      world.emit({ type: 'ops', atMs: world.scheduler.nowMs(), entries })
      const update = trader.replica.commit(entries)
      settleUndecided(world, trader)
      broadcast(world, TRADER, (node) => receiveUpdate(world, node, update))
    })
  }
  return Math.max(...steps.map((step) => step.atMs))
}

/** The odds a bettor takes: what the node shows, sometimes stale or mistyped. */
function chooseOdds(prng: Prng, shown: number | undefined): number {
  if (shown === undefined || prng.chance(0.1)) return prng.int(1_100, 3_000)
  return prng.chance(0.2) ? shown + prng.int(-20, 20) : shown
}

function placeBet(world: SimWorld, node: SimNode): void {
  const { prng } = world
  const game = node.replica.game
  const marketIds = [...game.markets.keys()]
  const marketId =
    marketIds.length > 0 && prng.chance(0.95) ? prng.pick(marketIds.slice(-3)) : `point-${prng.int(1, 99)}`
  const spec = game.markets.get(marketId)?.specs[0]
  const selectionId = spec && prng.chance(0.97) ? prng.pick(spec.selections).id : 'nobody'
  const seen = transitionAt(game, marketId, AFTER_ALL_STAMPS)
  const terms: BetTerms = {
    stamp: encodeStamp(node.hlc.now()),
    marketId,
    selectionId,
    odds: chooseOdds(prng, seen?.prices[selectionId]),
    policy: prng.pick(ODDS_POLICIES),
  }
  const bet: SimBet = {
    id: `${node.id}/${world.bets.length}`,
    node: node.id,
    terms,
    provisional: judge(game, terms),
    seen,
  }
  world.bets.push(bet)
  world.emit({ type: 'bet', atMs: world.scheduler.nowMs(), bet })
  node.undecided.set(bet.id, bet)
  settleUndecided(world, node)
  broadcast(world, node.id, (peer) => {
    peer.undecided.set(bet.id, bet)
    settleUndecided(world, peer)
  })
}

function scheduleBettor(world: SimWorld, node: SimNode, untilMs: number): void {
  const next = () => {
    if (world.scheduler.nowMs() > untilMs) return
    placeBet(world, node)
    world.scheduler.after(world.prng.int(SIM_LIMITS.betIntervalMsMin, SIM_LIMITS.betIntervalMsMax), next)
  }
  world.scheduler.after(world.prng.int(0, SIM_LIMITS.betIntervalMsMax), next)
}

function schedulePartitions(world: SimWorld, startMs: number, endMs: number): void {
  const { prng, scheduler, network } = world
  for (let i = prng.int(0, SIM_LIMITS.partitionsMax); i > 0; i--) {
    const fromMs = prng.int(startMs, endMs)
    scheduler.at(fromMs, () => {
      if (network.isPartitioned()) return
      const sides = new Map(NODES.map((id) => [id, prng.int(0, 1)]))
      network.partition(sides)
      world.emit({ type: 'partition', atMs: scheduler.nowMs(), sides })
      scheduler.after(prng.int(200, SIM_LIMITS.partitionMsMax), () => {
        network.heal()
        world.emit({ type: 'heal', atMs: scheduler.nowMs() })
      })
    })
  }
}

function scheduleRestarts(world: SimWorld, backend: BackendName, untilMs: number): void {
  const tick = () => {
    if (world.scheduler.nowMs() > untilMs) return
    for (const node of world.nodes.values()) {
      if (world.prng.chance(SIM_LIMITS.restartChancePerTick)) restart(world, backend, node)
    }
    world.scheduler.after(100, tick)
  }
  world.scheduler.after(100, tick)
}

/** Heal, deliver everything, then let the trader's clock pass every bet and deliver again. */
function finish(world: SimWorld): void {
  const { scheduler, network } = world
  network.heal()
  scheduler.drain(SIM_LIMITS.stepsMax)
  scheduler.runUntil(scheduler.nowMs() + 4 * SIM_LIMITS.maxDriftMs, SIM_LIMITS.stepsMax)
  sendHeartbeat(world, world.nodes.get(TRADER) as SimNode)
  network.heal()
  scheduler.drain(SIM_LIMITS.stepsMax)
}

export function runSimulation(options: SimOptions): SimReport {
  const prng = createPrng(options.seed)
  const scheduler = createScheduler(1_700_000_000_000)
  const nodes = new Map<string, SimNode>()
  for (const id of NODES) nodes.set(id, createNode({ prng, scheduler }, options.backend, id))
  const world: SimWorld = {
    prng,
    scheduler,
    network: createNetwork(prng, scheduler),
    nodes,
    bets: [],
    traderLog: [],
    restarts: 0,
    emit: options.onEvent ?? (() => {}),
  }
  const startMs = scheduler.nowMs()
  const endMs = scheduleTrader(world, options.points ?? prng.int(3, 6))
  for (const id of API_NODES) scheduleBettor(world, nodes.get(id) as SimNode, endMs)
  schedulePartitions(world, startMs, endMs)
  scheduleRestarts(world, options.backend, endMs)
  scheduler.runUntil(endMs + SIM_LIMITS.windowMs, SIM_LIMITS.stepsMax)
  finish(world)
  const failures = checkInvariants(world)
  const reference = nodes.get(TRADER) as SimNode
  return {
    seed: options.seed,
    backend: options.backend,
    bets: world.bets.length,
    accepted: world.bets.filter((bet) => judge(reference.replica.game, bet.terms).accepted).length,
    provisionalChanged: world.bets.filter(
      (bet) =>
        JSON.stringify({ ...judge(reference.replica.game, bet.terms), final: false }) !==
        JSON.stringify({ ...bet.provisional, final: false }),
    ).length,
    restarts: world.restarts,
    network: world.network.stats,
    stateHash: reference.replica.stateHash(),
    failures,
  }
}
