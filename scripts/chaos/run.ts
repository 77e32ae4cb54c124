/**
 * Chaos runs (`npm run chaos`): for each scenario, the whole stack on a fresh 3-server cluster
 * (a trader with a simulated match, two API nodes, two settlement nodes, the gateway, each its own
 * process), bettors placing bets through the gateway, and a fault injected mid-run and healed.
 * Then the bettors stop, every pending bet gets time to finalize, the trader stops, and the
 * checker reads the history, the trader's own commit log and every node's state (`/debug/state`)
 * and verifies the invariants. Prints a report per scenario and writes JSON reports.
 *
 * Scenarios run one after another, but what does not depend on a run is done beside the one
 * before it: the next scenario's servers form, take their streams and idle, and its nodes'
 * processes load their code at the lowest CPU priority and wait to be configured (warm-nodes.ts).
 * The servers form before the fault is injected, never during it. A scenario's time is then mostly
 * its own workload, fault and checks.
 *
 * Each scenario's report gives the fault's figures (figures.ts): the acceptance ratio while
 * faulted, on every shard and on the shards whose stream leader stayed with the majority, the first
 * answer's p99 and max, finals after the heal, convergence, and for a fault that takes servers away
 * the leader window of each ledger shard, the fabric stream and the snapshot bucket, sampled every
 * 250 ms, and the acceptance once every one of them has a new leader. The soak
 * profile fails a run that misses a goal (goals.ts); the short one reports the misses only.
 *
 *   npm run chaos                                  # the short profile: every scenario, ~12 s each
 *   npm run chaos -- --profile soak                # longer runs, more bettors
 *   npm run chaos -- --scenarios api-kill,api-pause --report-dir /tmp/chaos
 *   npm run chaos -- --scenarios isolate-server --fault-ms 10000   # a 10 s fault window
 *   npm run chaos -- --scenarios hostile-mix --fault-ms 120000     # a 2-minute attack
 *
 * These faults need no privileges: SIGKILL and restart, SIGSTOP/SIGCONT, clock skew, and killing
 * or pausing a nats-server. Every run is bounded in time and stops everything it started, by PID.
 */

import { type ChildProcess, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { jetstreamManager } from '@nats-io/jetstream'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { correctionDeadlineAfter, type Entry, writerOf } from '../../crdt/index.ts'
import { DEFAULT_BET_LIMITS } from '../../nodes/api/bet-limits.ts'
import { DIVERGED_EXIT_CODE, REBUILDS_PER_NODE_MAX, rebuildBackoffMs } from '../../nodes/fabric/node-main.ts'
import type { NodeState } from '../../nodes/fabric/node-state.ts'
import { ensureFabricFor, homeRegionOf } from '../../nodes/fabric/regions.ts'
import { options as settlementOptions } from '../../nodes/settlement/options.ts'
import { betKeyOf } from '../../protocol/ids.ts'
import { DEFAULT_SHARDS, SHARDS_MAX, shardOf } from '../../protocol/shards.ts'
import { depositSubject, names } from '../../protocol/subjects.ts'
import { parseCommandLine, usageError } from '../command-line.ts'
import {
  freePorts,
  type NatsCluster,
  type NatsSuperCluster,
  startNatsCluster,
  startSuperCluster,
} from '../nats-cluster.ts'
import { stopProcesses } from '../node-process.ts'
import { ATTACKER_DEPOSITS, type AttackReport, startAttacker } from './attacker.ts'
import { check } from './checker.ts'
import {
  describeFigures,
  describeWindow,
  describeWindows,
  faultFigures,
  leaderWindows,
  majorityLedShards,
} from './figures.ts'
import { unexplainedByForks } from './fork-attribution.ts'
import { type AcceptanceGoal, missedGoals } from './goals.ts'
import type { FaultKind, HistoryEvent, NodeFinalState, NodeKind, TraderLog } from './history.ts'
import { HOSTILE_USER, startHostileClient } from './hostile-client.ts'
import { checkHostileMix, describeAttack } from './hostile-mix.ts'
import { type LeaderSampler, sampleLeaders } from './leader-sampler.ts'
import {
  createLabAsync,
  type Lab,
  type LabCluster,
  type LabSuperCluster,
  networkFaultsAvailable,
  startLabCluster,
  startLabSuperCluster,
  sweepStaleLabs,
} from './netns.ts'
import { forksInLogDir } from './node-forks.ts'
import {
  CONTENT_READS_PER_SEQ,
  contentDisagreements,
  lastingDisagreements,
  replicaStates,
} from './replica-states.ts'
import { renderJson, renderText } from './report.ts'
import { createWarmNodes, type WarmNodes } from './warm-nodes.ts'
import { startWorkload } from './workload.ts'

const REGION = 'eu'
/** `--keep-logs`: a run that passed keeps its nodes' logs too (a failed one always does). */
const KEEP_LOGS = process.argv.includes('--keep-logs')
/** The region's ledger shards (`--ledger-shards`, default DEFAULT_SHARDS): one stream each. */
const SHARDS = numberOption('--ledger-shards', DEFAULT_SHARDS)
/**
 * How often settle-1 checkpoints every ledger shard and purges the streams below its previous
 * checkpoint (`--ledger-checkpoint-ms`, 0: never). Far more often than a region would (`npm start`
 * gives 5 minutes), so that a run checkpoints and purges before its fault, and a node started
 * again restores from a checkpoint: the invariants are checked with them at work.
 */
const CHAOS_LEDGER_CHECKPOINT_MS = 1_000
const LEDGER_CHECKPOINT_MS = numberOption('--ledger-checkpoint-ms', CHAOS_LEDGER_CHECKPOINT_MS)
/** A bettor's deposit is tried this many times, DEPOSIT_RETRY_MS apart, before the run goes on without it. */
const DEPOSIT_ATTEMPTS = 5
const DEPOSIT_RETRY_MS = 500
/** The longest a run waits for nodes that exited to rebuild to start again (backoff up to 30 s). */
const RESTARTS_WAIT_MS = 35_000
const GAME = 'match-1'
const DEPOSIT_CENTS = 1_000_000
const READY_TIMEOUT_MS = 60_000
/** How far the clock scenarios move an API node's clock: beyond DEFAULT_MAX_DRIFT_MS (5 s). */
const CLOCK_FAULT_MS = 8_000
const ANSWER_TIMEOUT_MS = 10_000
/** After healing, every acknowledged bet must be final within this. */
const FINALIZE_WITHIN_MS = 30_000
/** How long the run waits for replicas and ledgers to agree before it reads them anyway. */
const CONVERGE_TIMEOUT_MS = 30_000
/** How long the traders keep running for a node restarted to rebuild to finalize what it holds. */
const REBUILT_FINAL_WITHIN_MS = 30_000
/** How a node's state names the position of its reading of ledger shard N: `ledger-N` (node-state.ts). */
const LEDGER_STREAM_KEY = 'ledger-'
const CONVERGE_POLL_MS = 50
/** Waits that ask the nodes for their states (a fold's worth of JSON each) poll this often. */
const STATE_POLL_MS = 200
/**
 * Waits for what costs next to nothing to check (a node's /healthz or /readyz, the run's own
 * history) poll this often: a node's start or a last answer is seen within this of happening.
 */
const CHEAP_POLL_MS = 50
/** The longest fault window `--fault-ms` may ask for: every run stops by itself. */
const FAULT_MS_MAX = 120_000
const STATE_FETCH_TIMEOUT_MS = 10_000
const LAB_NAME = 'chaos'
/**
 * Nodes warm at the lowest CPU priority, so that the next scenario's, warming while one runs, take
 * only the CPU it leaves; a node gets its normal priority back when it starts. Only root may give
 * it back, so other users warm at normal priority.
 */
const WARM_IN_BACKGROUND = process.getuid?.() === 0
/** A standby trader takes over after hearing nothing from the trader for this long. */
const TAKEOVER_AFTER_MS = 1_500
/** Times a node whose state diverged from a stream is started again in one run. */
/** Packet loss on every server link in the lossy-links scenario. */
const LINK_LOSS_PCT = 20

interface Profile {
  readonly bettors: number
  readonly meanPauseMs: number
  readonly beforeFaultMs: number
  readonly faultMs: number
  readonly afterFaultMs: number
  readonly timeScale: number
  /** A run that misses a goal (goals.ts) fails; otherwise the misses are only reported. */
  readonly enforceGoals: boolean
}

const PROFILES: Readonly<Record<string, Profile>> = {
  short: {
    bettors: 12,
    meanPauseMs: 300,
    beforeFaultMs: 2_000,
    faultMs: 5_000,
    afterFaultMs: 2_000,
    timeScale: 2,
    enforceGoals: false,
  },
  soak: {
    bettors: 40,
    meanPauseMs: 200,
    beforeFaultMs: 15_000,
    faultMs: 20_000,
    afterFaultMs: 25_000,
    timeScale: 1,
    enforceGoals: true,
  },
}

interface NodeSpec {
  readonly name: string
  readonly kind: NodeKind
  readonly main: string
  readonly region: string
}

const MAINS: Readonly<Record<NodeKind, string>> = {
  trader: 'nodes/trader/main.ts',
  api: 'nodes/api/main.ts',
  settlement: 'nodes/settlement/main.ts',
  gateway: 'gateway/main.ts',
}

/**
 * The one-region stack; a multi-region one has an API node, a settlement node and a gateway per
 * region. `standby` adds a standby trader, `trader-2`, beside `trader-1`.
 */
function topology(regions: readonly string[], standby = false): NodeSpec[] {
  const node = (name: string, kind: NodeKind, region: string) => ({ name, kind, main: MAINS[kind], region })
  if (regions.length === 1) {
    const region = regions[0] as string
    return [
      node('trader-1', 'trader', region),
      ...(standby ? [node('trader-2', 'trader', region)] : []),
      node('api-1', 'api', region),
      node('api-2', 'api', region),
      node('settle-1', 'settlement', region),
      node('settle-2', 'settlement', region),
      node('gateway-1', 'gateway', region),
    ]
  }
  return [
    node('trader-1', 'trader', regions[0] as string),
    ...regions.flatMap((region) => [
      node(`api-${region}`, 'api', region),
      node(`settle-${region}`, 'settlement', region),
      node(`gateway-${region}`, 'gateway', region),
    ]),
  ]
}

/** One fault: what it does at the start, and how it heals. */
interface Scenario {
  readonly name: string
  readonly description: string
  /** Runs the servers in a network lab (a namespace each, root only) so that links can be cut. */
  readonly lab?: boolean
  /** A super-cluster of these regions (each 3 servers) instead of one region. */
  readonly regions?: readonly string[]
  /** A standby trader runs beside the trader, ready to take over (one region only). */
  readonly standby?: boolean
  /** What the fault leaves standing, and so which acceptance goal applies (goals.ts); default none. */
  readonly acceptance?: AcceptanceGoal
  /**
   * The nats-servers the fault takes from the majority (their shards' leaders must move): the run
   * samples the ledger shards' leaders and reports each such shard's leader window. None: every
   * shard's leader stays with the majority.
   */
  readonly faultedServers?: readonly string[]
  inject(stack: Stack, run: ScenarioRun): Promise<Fault>
}

/** What a scenario may use of its run besides the stack: the bettors, the gateway, the history. */
interface ScenarioRun {
  readonly seed: number
  readonly secret: string
  readonly profile: Profile
  readonly nodes: readonly NodeSpec[]
  /** The bettors, and when they began. */
  readonly users: readonly string[]
  readonly workloadStartedAtMs: number
  /** The first gateway's socket URL, HTTP URL and page origin (its --public-origin). */
  readonly gateway: { readonly wsUrl: string; readonly httpUrl: string; readonly origin: string }
  readonly record: (event: HistoryEvent) => void
}

/** What the run knows once the checker has run, for a scenario's own checks. */
interface FinishedRun {
  readonly history: readonly HistoryEvent[]
  /** The bettors' placements over the run, and how many of them were acknowledged. */
  readonly bettorPlacements: { readonly placed: number; readonly acknowledged: number }
}

interface Fault {
  readonly kind: FaultKind
  readonly target: string
  heal(): Promise<void>
  /** The scenario's own checks beyond the invariants: each problem returned fails the run. */
  verify?(finished: FinishedRun): Promise<readonly string[]>
}

const LAB_HOSTS = ['n1', 'n2', 'n3'] as const
/** The network lab's hosts when it runs two regions. */
const LAB_REGIONS = { eu: ['n1', 'n2', 'n3'], us: ['n4', 'n5', 'n6'] } as const

/** Where a scenario's nats-servers run. */
type AnyCluster = NatsCluster | LabCluster | NatsSuperCluster | LabSuperCluster

const SCENARIOS: readonly Scenario[] = [
  {
    name: 'api-kill',
    acceptance: 'all',
    description: 'SIGKILL an API node while bets are in flight, restart it after the fault window',
    async inject(stack) {
      await stack.kill('api-1')
      stack.warm('api-1')
      return { kind: 'kill', target: 'api-1', heal: () => stack.start('api-1') }
    },
  },
  {
    name: 'settlement-kill',
    acceptance: 'all',
    description: 'SIGKILL a settlement node mid-market, restart it (it rebuilds from the ledger)',
    async inject(stack) {
      await stack.kill('settle-1')
      stack.warm('settle-1')
      return { kind: 'kill', target: 'settle-1', heal: () => stack.start('settle-1') }
    },
  },
  {
    name: 'api-pause',
    acceptance: 'all',
    description: 'SIGSTOP an API node (requests queued to it wait), SIGCONT after the fault window',
    async inject(stack) {
      stack.signal('api-2', 'SIGSTOP')
      return { kind: 'pause', target: 'api-2', heal: async () => stack.signal('api-2', 'SIGCONT') }
    },
  },
  {
    name: 'trader-restart',
    description:
      'SIGKILL the active trader (no standby) mid-match and start it again: it resumes after its last point, its clock past its last watermark',
    async inject(stack) {
      await stack.kill('trader-1')
      stack.warm('trader-1')
      return { kind: 'kill', target: 'trader-1', heal: () => stack.start('trader-1') }
    },
  },
  {
    name: 'colliding-ids',
    acceptance: 'all',
    description:
      "a client sends bet ids of other users on its ledger shard (booked as its own bets), ids in the settlement namespace and ids like the old settlement ids: each is answered with its code, every victim and every bet booked under a victim's id is settled as its own, and no API node restarts",
    async inject(stack) {
      const nc = await stack.connect()
      const hostile = await startHostileClient(nc, { gameId: GAME, shards: SHARDS })
      return {
        kind: 'hostile',
        target: HOSTILE_USER,
        async heal() {
          const report = await hostile.stop()
          await nc.close()
          console.log(
            `hostile client: ${report.sent} colliding ids sent, answers ${JSON.stringify(report.answers)}`,
          )
          const restarted = Object.keys(stack.rebuilds()).filter((name) => name.startsWith('api'))
          if (report.wrong.length > 0 || restarted.length > 0)
            throw new Error(
              `colliding ids were not all answered with their codes (${report.wrong.slice(0, 5).join('; ')}), or API nodes restarted (${restarted.join(', ')})`,
            )
          if (report.unsettled.length > 0)
            throw new Error(
              `bets of colliding ids were not all settled in time: ${report.unsettled.slice(0, 5).join(', ')}`,
            )
          // Two users' bets of one id on one shard must both stand: at least one such pair must have been made.
          if ((report.answers['same shard'].accepted ?? 0) === 0)
            throw new Error(`no bet under another user's id on the hostile user's shard was accepted`)
        },
      }
    },
  },
  {
    name: 'hostile-mix',
    acceptance: 'all',
    description:
      'an attacker mixes every hostile class with the bettors through the gateway: colliding and foreign bet ids, absurd odds, limit races, reconnect, upgrade and unfunded floods, a retry with a changed body, bad tokens and origins; no node restarts, no limit is passed, the bettors are still served',
    inject: injectHostileMix,
  },
  {
    name: 'trader-pause',
    description: 'SIGSTOP the trader: its markets go stale and API nodes refuse bets (REPLICA_STALE)',
    async inject(stack) {
      stack.signal('trader-1', 'SIGSTOP')
      return { kind: 'pause', target: 'trader-1', heal: async () => stack.signal('trader-1', 'SIGCONT') }
    },
  },
  {
    name: 'trader-takeover',
    acceptance: 'all',
    description:
      'SIGKILL the trader; the standby fences it, voids the unresulted markets and runs the match on',
    standby: true,
    async inject(stack) {
      await stack.kill('trader-1')
      return { kind: 'kill', target: 'trader-1', heal: async () => {} }
    },
  },
  {
    name: 'trader-zombie',
    acceptance: 'all',
    description:
      'SIGSTOP the trader until the standby has taken over, then SIGCONT: what it writes is dropped',
    standby: true,
    async inject(stack) {
      stack.signal('trader-1', 'SIGSTOP')
      return { kind: 'pause', target: 'trader-1', heal: async () => stack.signal('trader-1', 'SIGCONT') }
    },
  },
  {
    name: 'server-kill',
    acceptance: 'majority-led',
    faultedServers: ['n1'],
    description: 'SIGKILL a nats-server (a stream replica and maybe a leader), restart it',
    async inject(stack) {
      const cluster = stack.cluster as NatsCluster
      await cluster.stopServer(0, 'SIGKILL')
      return { kind: 'kill', target: 'nats-server-1', heal: () => cluster.startServer(0) }
    },
  },
  {
    name: 'isolate-server',
    acceptance: 'majority-led',
    faultedServers: ['n1'],
    description: 'cut one nats-server off from the other two (iptables), heal after the fault window',
    lab: true,
    async inject(stack) {
      const lab = stack.lab as Lab
      lab.partition(['n1'], ['n2', 'n3'])
      return { kind: 'partition', target: 'n1|n2,n3', heal: async () => lab.heal() }
    },
  },
  {
    name: 'split-region',
    faultedServers: ['n1', 'n2', 'n3'],
    description: 'cut every link between the three nats-servers: no majority anywhere, then heal',
    lab: true,
    async inject(stack) {
      const lab = stack.lab as Lab
      lab.partition(['n1'], ['n2', 'n3'])
      lab.partition(['n2'], ['n3'])
      return { kind: 'partition', target: 'n1|n2|n3', heal: async () => lab.heal() }
    },
  },
  {
    name: 'api-cut-off',
    acceptance: 'all',
    description: 'cut an API node off from every nats-server (iptables in its own namespace), then heal',
    lab: true,
    async inject(stack) {
      const lab = stack.lab as Lab
      lab.partition(['api-1'], LAB_HOSTS)
      return { kind: 'partition', target: 'api-1|n1,n2,n3', heal: async () => lab.heal() }
    },
  },
  {
    name: 'trader-cut-off',
    acceptance: 'all',
    description:
      'cut the trader off from every nats-server while a standby runs: it takes over; healed, the trader stands down',
    lab: true,
    standby: true,
    async inject(stack) {
      const lab = stack.lab as Lab
      lab.partition(['trader-1'], LAB_HOSTS)
      return { kind: 'partition', target: 'trader-1|n1,n2,n3', heal: async () => lab.heal() }
    },
  },
  {
    name: 'bridge-partition',
    acceptance: 'majority-led',
    description: 'cut n1 from n3 only: n2 still reaches both, a partition that is not transitive',
    lab: true,
    async inject(stack) {
      const lab = stack.lab as Lab
      lab.partition(['n1'], ['n3'])
      return { kind: 'partition', target: 'n1|n3 (n2 bridges)', heal: async () => lab.heal() }
    },
  },
  {
    name: 'lossy-links',
    acceptance: 'majority-led',
    description: `drop ${LINK_LOSS_PCT} % of the packets on every link between the nats-servers (iptables), then heal`,
    lab: true,
    async inject(stack) {
      const lab = stack.lab as Lab
      lab.lose(['n1'], ['n2', 'n3'], LINK_LOSS_PCT)
      lab.lose(['n2'], ['n3'], LINK_LOSS_PCT)
      return { kind: 'loss', target: `every server link, ${LINK_LOSS_PCT} %`, heal: async () => lab.heal() }
    },
  },
  {
    name: 'region-outage',
    description: 'two regions; SIGSTOP every nats-server of the second for the fault window, then SIGCONT',
    regions: ['eu', 'us'],
    async inject(stack) {
      const cluster = stack.cluster as NatsSuperCluster
      const servers = cluster.processesOf('us').map((server) => server.name)
      for (const name of servers) cluster.pauseServer(name)
      return {
        kind: 'pause',
        target: 'region us',
        heal: async () => {
          for (const name of servers) cluster.resumeServer(name)
        },
      }
    },
  },
  {
    name: 'region-cut',
    description:
      'two regions in the network lab: cut every link between them while all servers run, then heal',
    lab: true,
    regions: ['eu', 'us'],
    async inject(stack) {
      const lab = stack.lab as Lab
      lab.partition(LAB_REGIONS.eu, LAB_REGIONS.us)
      return { kind: 'partition', target: 'eu|us', heal: async () => lab.heal() }
    },
  },
  ...(['ahead', 'behind'] as const).map(
    (way): Scenario => ({
      name: `clock-${way}`,
      description: `restart an API node with its clock 8 s ${way === 'ahead' ? 'ahead of' : 'behind'} the trader's, beyond the 5 s drift bound: it must refuse every bet (CLOCK_DRIFT) and report not ready, then heal`,
      async inject(stack) {
        const skewMs = way === 'ahead' ? CLOCK_FAULT_MS : -CLOCK_FAULT_MS
        await stack.startUnready('api-2', { FABRIC_CLOCK_SKEW_MS: String(skewMs) })
        await waitUntil(
          'api-2 to refuse to judge with its clock off',
          async () => /clock/.test(await (await fetch(`${stack.opsUrl('api-2')}/readyz`)).text()),
          READY_TIMEOUT_MS,
          CHEAP_POLL_MS,
        )
        stack.warm('api-2')
        return { kind: 'skew', target: 'api-2', heal: () => stack.restart('api-2', {}) }
      },
    }),
  ),
]

/**
 * The hostile-mix scenario: the attacker (attacker.ts) runs over the fault window against the first
 * gateway; the heal stops it and prints its answers; the end of the run checks what it must not have
 * achieved (hostile-mix.ts). The runner funds the attacker's users, as it does the bettors.
 */
async function injectHostileMix(stack: Stack, run: ScenarioRun): Promise<Fault> {
  const nc = await stack.connect()
  try {
    for (const [i, { userId, amountCents }] of ATTACKER_DEPOSITS.entries()) {
      const request = { id: `hostile-deposit-${userId}-${i}`, userId, amountCents }
      const reply = await nc.request(depositSubject(userId, SHARDS), JSON.stringify(request), {
        timeout: 5_000,
      })
      const acknowledged = reply.json<{ ok: boolean }>().ok
      run.record({ type: 'deposit', atMs: Date.now(), userId, amountCents, acknowledged })
    }
  } finally {
    await nc.close()
  }
  const startedAtMs = Date.now()
  const attacker = await startAttacker({
    wsUrl: run.gateway.wsUrl,
    httpUrl: run.gateway.httpUrl,
    ownOrigin: run.gateway.origin,
    secret: run.secret,
    gameId: GAME,
    seed: run.seed,
    victims: run.users,
    victimPauseMs: run.profile.meanPauseMs / 2,
    victimsSinceMs: run.workloadStartedAtMs,
    stakeCentsMax: DEFAULT_BET_LIMITS.stakeCentsMax,
    durationMs: run.profile.faultMs,
  })
  let attack: AttackReport | null = null
  let attackMs = 0
  const exited = new Set<string>()
  const notRunning = (kinds: readonly NodeKind[]) =>
    run.nodes.filter(({ kind, name }) => kinds.includes(kind) && !stack.running(name)).map(({ name }) => name)
  return {
    kind: 'hostile',
    target: 'gateway',
    async heal() {
      attack = await attacker.stop()
      attackMs = Date.now() - startedAtMs
      for (const line of describeAttack(attack)) console.log(line)
      for (const name of notRunning(['trader', 'api', 'settlement', 'gateway'])) exited.add(name)
    },
    async verify(finished) {
      // The traders are stopped by now; every other node must still run.
      for (const name of notRunning(['api', 'settlement', 'gateway'])) exited.add(name)
      const apiNodes = run.nodes.filter(({ kind, name }) => kind === 'api' && stack.running(name))
      const apiStates = await Promise.all(
        apiNodes.map(async ({ name }) => ({ node: name, state: await stack.state(name) })),
      )
      const result = checkHostileMix({
        history: finished.history,
        apiStates,
        attack: attack as AttackReport,
        limits: {
          userOpenStakeCentsMax: DEFAULT_BET_LIMITS.userOpenStakeCentsMax,
          marketLiabilityCentsMax: DEFAULT_BET_LIMITS.marketLiabilityCentsMax,
          refusedPerUserPerMinuteMax: DEFAULT_BET_LIMITS.refusedPerUserPerMinuteMax,
        },
        attackMs,
        rebuilds: stack.rebuilds(),
        exited: [...exited],
        bettorPlacements: finished.bettorPlacements,
      })
      for (const figure of result.figures) console.log(`hostile mix: ${figure}`)
      return result.problems
    },
  }
}

/** A scenario that needs a network lab is skipped, with the reason, where none can be built. */
/**
 * FORKED: the run broke a check while the servers' own replicas of a stream held different logs
 * (replica-states.ts), after a fault of the servers or their links: nats-server's fault, which the
 * nodes cannot undo (docs/operations.md). Reported with every check it broke, and not a FAIL.
 */
type Outcome = 'PASS' | 'FAIL' | 'FORKED' | 'skipped'

interface Stack {
  readonly cluster: AnyCluster
  /** The network lab, for scenarios that run in one. */
  readonly lab: Lab | null
  kill(name: string): Promise<void>
  start(name: string, env?: Record<string, string>): Promise<void>
  restart(name: string, env: Record<string, string>): Promise<void>
  /** A NATS connection to the stack's (first) region. */
  connect(): Promise<NatsConnection>
  /** Stop a node and start it again without waiting for it to be ready (only for /healthz). */
  startUnready(name: string, env: Record<string, string>): Promise<void>
  opsUrl(name: string): string
  /** A graceful stop (SIGTERM), bounded like every stop. */
  stop(name: string): Promise<void>
  /**
   * Loads the code of a process for the node's next start now (warm-nodes.ts), in the background:
   * a restart at the heal is then the node's own start, not a second of loading code after it.
   */
  warm(name: string): void
  signal(name: string, signal: NodeJS.Signals): void
  /** Where the node listens: its lab host's address, or loopback. */
  address(name: string): string
  /** Whether the node's process is running (paused counts as running). */
  running(name: string): boolean
  /** Per node, the times it exited because its state diverged from a stream, and was started again. */
  rebuilds(): Record<string, number>
  /** Nodes that exited to rebuild and wait out their backoff before they start again. */
  restartsPending(): string[]
  /** The node's /debug/state; `replicasOnly` leaves the ledger out. */
  state(name: string, replicasOnly?: boolean): Promise<NodeState>
  /** Kills every node and every process warmed for one: for the end of a run, once it is judged. */
  stopAll(): Promise<void>
}

const FREE_PORT_ATTEMPTS_MAX = 100
/** Ports this run has handed out: the kernel may offer a port again once its probe closed. */
const portsHandedOut = new Set<number>()

/** A port free now and not handed out before in this run (a gateway once got its own ops port). */
async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < FREE_PORT_ATTEMPTS_MAX; attempt++) {
    const [port] = await freePorts(1)
    if (port === undefined || portsHandedOut.has(port)) continue
    portsHandedOut.add(port)
    return port
  }
  throw new Error(`no new free port in ${FREE_PORT_ATTEMPTS_MAX} attempts`)
}

async function fetchJson(url: string, timeoutMs: number): Promise<unknown> {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) })
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`)
  return response.json()
}

async function waitUntil(
  what: string,
  condition: () => Promise<boolean>,
  timeoutMs: number,
  pollMs = STATE_POLL_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await condition().catch(() => false)) return
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, pollMs))
  }
}

/** Where a stack's nodes connect: one region's servers, or each region's own in a super-cluster. */
function serversOf(cluster: AnyCluster, region: string): string {
  return ('regions' in cluster ? cluster.servers(region) : cluster.servers).join(',')
}

async function startStack(
  dir: string,
  cluster: AnyCluster,
  lab: Lab | null,
  nodes: readonly NodeSpec[],
  regions: readonly string[],
  profile: Profile,
  seed: number,
  secret: string,
  gatewayPorts: ReadonlyMap<string, number>,
  warmNodes: WarmNodes,
) {
  const opsPorts = new Map<string, number>()
  for (const { name } of nodes) opsPorts.set(name, await freePort())
  // In a network lab every node is a host of its own, listening on its address there.
  const addressOf = (name: string) => lab?.hosts[name]?.ip ?? '127.0.0.1'
  const standby = nodes.some((node) => node.name === 'trader-2')
  const children = new Map<string, ChildProcess>()
  const envOf = (name: string): Record<string, string> => {
    const spec = nodes.find((node) => node.name === name) as NodeSpec
    return {
      FABRIC_NATS_SERVERS: serversOf(cluster, spec.region),
      FABRIC_NODE_ID: name,
      FABRIC_REGION: spec.region,
      ...(regions.length > 1 ? { FABRIC_REGIONS: regions.join(',') } : {}),
      FABRIC_LEDGER_SHARDS: String(SHARDS),
      // One settlement node per region spreads the shard leaders and writes the ledger
      // checkpoints (nodes/settlement/options.ts).
      SETTLEMENT_LEADER_SPREAD_MS: name === 'settle-1' ? '15000' : '0',
      SETTLEMENT_LEDGER_CHECKPOINT_MS: name === 'settle-1' ? String(LEDGER_CHECKPOINT_MS) : '0',
      FABRIC_OPS_PORT: String(opsPorts.get(name)),
      FABRIC_OPS_HOST: addressOf(name),
      GATEWAY_HOST: addressOf(name),
      FABRIC_EXIT_WITH_PARENT: '1',
      LOG_LEVEL: 'info',
      TRADER_SEED: String(seed),
      TRADER_TIME_SCALE: String(profile.timeScale),
      TRADER_COMMIT_LOG: join(dir, 'trader-commits.jsonl'),
      ...(standby
        ? {
            TRADER_WRITERS: 'trader-1,trader-2',
            TRADER_TAKEOVER_AFTER_MS: String(TAKEOVER_AFTER_MS),
            ...(name === 'trader-2' ? { TRADER_STANDBY: '1' } : {}),
          }
        : {}),
      SETTLEMENT_DATABASE: join(dir, `${name}.db`),
      ...(gatewayPorts.has(name)
        ? {
            GATEWAY_PORT: String(gatewayPorts.get(name)),
            GATEWAY_PUBLIC_ORIGIN: `http://${addressOf(name)}:${gatewayPorts.get(name)}`,
          }
        : {}),
      GATEWAY_JWT_SECRET: secret,
    }
  }
  const opsUrl = (name: string) => `http://${addressOf(name)}:${opsPorts.get(name)}`
  const launch = (name: string, extra: Record<string, string> = {}) => {
    const child = warmNodes.launch(name, { ...envOf(name), ...extra })
    children.set(name, child)
    // A supervisor's part: a node that found its state diverged from a stream exits to be started
    // again, and rebuilds from the log (nodes/fabric/node-main.ts).
    child.once('exit', (code) => {
      const count = rebuilds.get(name) ?? 0
      if (code !== DIVERGED_EXIT_CODE || count >= REBUILDS_PER_NODE_MAX || children.get(name) !== child)
        return
      rebuilds.set(name, count + 1)
      pendingRestarts.add(name)
      // Started cold when its backoff is over, not warmed meanwhile: a rebuild then comes no sooner
      // than it always has, while the streams it diverged from may still be settling.
      const restart = setTimeout(() => {
        restarts.delete(restart)
        pendingRestarts.delete(name)
        if (children.get(name) === child) launch(name, extra)
      }, rebuildBackoffMs(count))
      restarts.add(restart)
    })
    return child
  }
  const rebuilds = new Map<string, number>()
  /** Restarts of diverged nodes waiting out their backoff; cleared when the stack stops. */
  const restarts = new Set<NodeJS.Timeout>()
  /** The nodes those restarts are for. */
  const pendingRestarts = new Set<string>()
  const ready = (name: string) =>
    waitUntil(
      `${name} ready`,
      async () => (await fetch(`${opsUrl(name)}/readyz`)).ok,
      READY_TIMEOUT_MS,
      CHEAP_POLL_MS,
    )
  const stack: Stack = {
    cluster,
    lab,
    async kill(name) {
      const child = children.get(name)
      if (child === undefined) return
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGKILL')
      await exited
    },
    warm: warmNodes.warm,
    async start(name, env = {}) {
      launch(name, env)
      await ready(name)
    },
    async restart(name, env) {
      warmNodes.warm(name)
      await stack.stop(name)
      await stack.start(name, env)
    },
    async startUnready(name, env) {
      warmNodes.warm(name)
      await stack.stop(name)
      launch(name, env)
      await waitUntil(
        `${name} alive`,
        async () => (await fetch(`${opsUrl(name)}/healthz`)).ok,
        READY_TIMEOUT_MS,
        CHEAP_POLL_MS,
      )
    },
    opsUrl,
    connect: () => connectFirst(cluster, regions),
    async stop(name) {
      const child = children.get(name)
      if (child !== undefined) await stopProcesses([child])
    },
    signal(name, signal) {
      children.get(name)?.kill(signal)
    },
    address: addressOf,
    rebuilds: () => Object.fromEntries(rebuilds),
    restartsPending: () => [...pendingRestarts],
    running(name) {
      const child = children.get(name)
      return child !== undefined && child.exitCode === null && child.signalCode === null
    },
    async state(name, replicasOnly = false) {
      const query = replicasOnly ? '?replicas-only=1' : ''
      return (await fetchJson(`${opsUrl(name)}/debug/state${query}`, STATE_FETCH_TIMEOUT_MS)) as NodeState
    },
    async stopAll() {
      for (const restart of restarts) clearTimeout(restart)
      restarts.clear()
      pendingRestarts.clear()
      // The run has been judged: nothing a node would still do in a graceful stop is looked at.
      await warmNodes.killAll()
    },
  }
  // The traders go first, on a machine not yet busy starting the other nodes: an active trader
  // fences a writer it has not heard from within TAKEOVER_AFTER_MS of its start, so a standby that
  // started seconds late (seen with every node starting at once on two cores) stays fenced.
  const traders = nodes.filter(({ kind }) => kind === 'trader')
  for (const { name } of traders) launch(name)
  await Promise.all(
    traders.map(({ name }) =>
      waitUntil(
        `${name} alive`,
        async () => (await fetch(`${opsUrl(name)}/healthz`)).ok,
        READY_TIMEOUT_MS,
        CHEAP_POLL_MS,
      ),
    ),
  )
  for (const { name, kind } of nodes) if (kind !== 'trader') launch(name)
  await Promise.all(nodes.map(({ name }) => ready(name)))
  return stack
}

/**
 * The traders' commit log as the checker reads it: each market's states, voids and results. An
 * entry a fenced trader stamped after its fence counts nowhere (crdt FenceOp), so it is left out.
 * `fenced` (writer: fencer) names the fences that count, as the nodes hold them: the log also has
 * fences that lost to another, or that a trader wrote after it was fenced itself.
 */
function traderLogOf(path: string, fenced: Readonly<Record<string, string>>): TraderLog {
  const markets: Record<
    string,
    { stamp: string; status: 'open' | 'suspended' | 'closed'; prices: Record<string, number> }[]
  > = {}
  const voids: { marketId: string; from: string; to: string; stamp: string }[] = []
  const results: { marketId: string; winners: string[] }[] = []
  const firstResults = new Map<string, string>()
  let text = ''
  try {
    text = readFileSync(path, 'utf8')
  } catch {
    // No commit at all (the trader never started): an empty log, and the checker will say so.
  }
  const entries = text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Entry)
  const fences = new Map<string, string>()
  for (const entry of entries)
    if (entry.kind === 'fence' && fenced[entry.writer] === writerOf(entry))
      fences.set(entry.writer, entry.stamp)
  for (const entry of entries) {
    const fence = fences.get(writerOf(entry))
    if (fence !== undefined && entry.stamp > fence) continue
    if (entry.kind === 'transition') {
      const list = markets[entry.marketId] ?? []
      list.push({ stamp: entry.stamp, status: entry.status, prices: { ...entry.prices } })
      markets[entry.marketId] = list
    } else if (entry.kind === 'market') markets[entry.marketId] ??= []
    else if (entry.kind === 'void')
      voids.push({ marketId: entry.marketId, from: entry.from, to: entry.to, stamp: entry.stamp })
    else if (entry.kind === 'result') {
      results.push({ marketId: entry.marketId, winners: [...entry.winners] })
      const first = firstResults.get(entry.marketId)
      if (first === undefined || entry.stamp < first) firstResults.set(entry.marketId, entry.stamp)
    }
  }
  // A void stamped after its market's correction deadline counts nowhere (crdt/game.ts).
  const counted = voids.filter(({ marketId, stamp }) => {
    const first = firstResults.get(marketId)
    return first === undefined || stamp <= correctionDeadlineAfter(first)
  })
  for (const list of Object.values(markets))
    list.sort((a, b) => (a.stamp < b.stamp ? -1 : a.stamp > b.stamp ? 1 : 0))
  return {
    games: {
      [GAME]: { markets, voids: counted.map(({ marketId, from, to }) => ({ marketId, from, to })), results },
    },
  }
}

function finalStateOf(spec: NodeSpec, multiRegion: boolean, state: NodeState): NodeFinalState {
  const ledger = state.ledger
  return {
    node: spec.name,
    kind: spec.kind,
    ...(multiRegion ? { region: spec.region } : {}),
    replicas: state.replicas,
    ...(ledger
      ? {
          ledger: {
            balances: ledger.balances,
            settlementsPerBet: ledger.settlementsPerBet,
            totals: ledger.totals,
            bets: Object.fromEntries(
              Object.entries(ledger.bets).map(([key, bet]) => [
                key,
                {
                  userId: bet.userId,
                  stakeCents: bet.stakeCents,
                  odds: bet.odds,
                  marketId: bet.marketId,
                  stamp: bet.stamp,
                  status: bet.status,
                  ...(bet.outcome !== undefined ? { outcome: bet.outcome } : {}),
                  ...(bet.payoutCents !== undefined ? { payoutCents: bet.payoutCents } : {}),
                  ...(bet.settledOdds !== undefined ? { settledOdds: bet.settledOdds } : {}),
                },
              ]),
            ),
          },
        }
      : {}),
  }
}

/**
 * Placements acknowledged over placements made, per region of the gateway the bettor used
 * (bettor i uses the i-th gateway, mod their number): what a region's users could do. With
 * `window`, only the placements made within it count.
 */
function availabilityByRegion(
  history: readonly HistoryEvent[],
  users: readonly string[],
  nodes: readonly NodeSpec[],
  window?: { readonly fromMs: number; readonly toMs: number },
): string {
  const counts = availabilityCounts(history, users, nodes, window)
  if (counts.size === 0) return 'no placement'
  return [...counts]
    .map(([region, { placed, acknowledged }]) => {
      const share = placed === 0 ? 100 : (100 * acknowledged) / placed
      return `${region} ${acknowledged}/${placed} (${share.toFixed(1)}%)`
    })
    .join(', ')
}

/** The bettors' placements and acknowledgements behind availabilityByRegion, per region. */
function availabilityCounts(
  history: readonly HistoryEvent[],
  users: readonly string[],
  nodes: readonly NodeSpec[],
  window?: { readonly fromMs: number; readonly toMs: number },
): Map<string, { placed: number; acknowledged: number }> {
  const gateways = nodes.filter((node) => node.kind === 'gateway')
  const regionOf = new Map(users.map((userId, i) => [userId, gateways[i % gateways.length]?.region ?? '']))
  /** Per bet key, the region its bettor placed it through. */
  const placedBy = new Map<string, string>()
  const counts = new Map<string, { placed: number; acknowledged: number }>()
  for (const event of history) {
    if (event.type === 'place') {
      if (window && (event.atMs < window.fromMs || event.atMs >= window.toMs)) continue
      const region = regionOf.get(event.userId) ?? ''
      placedBy.set(betKeyOf(event.userId, event.betId), region)
      const count = counts.get(region) ?? { placed: 0, acknowledged: 0 }
      count.placed++
      counts.set(region, count)
    } else if (event.type === 'answer' && event.kind === 'provisional') {
      const count = counts.get(placedBy.get(betKeyOf(event.userId, event.betId)) ?? '')
      if (count) count.acknowledged++
    }
  }
  return counts
}

/**
 * Milliseconds from `fromMs` until every running node holds the same replica of the game (a
 * trader that stood down holds updates nobody else does, so it is left out), polling every
 * CONVERGE_POLL_MS; null if they do not agree within CONVERGE_TIMEOUT_MS.
 */
async function convergenceMs(
  stack: Stack,
  nodes: readonly NodeSpec[],
  fromMs: number,
): Promise<number | null> {
  const deadline = fromMs + CONVERGE_TIMEOUT_MS
  while (Date.now() < deadline) {
    const hashes = await Promise.all(
      nodes
        .filter(({ name }) => stack.running(name))
        .map(async ({ name }) => {
          const state = await stack.state(name, true).catch(() => null)
          const replica = state?.replicas[GAME]
          if (replica?.fenced[name] !== undefined || state?.trader?.role === 'fenced') return 'fenced'
          return replica?.stateHash ?? null
        }),
    )
    const held = hashes.filter((hash) => hash !== 'fenced')
    if (held.length > 0 && held.every((hash) => hash !== null && hash === held[0])) return Date.now() - fromMs
    await new Promise((resolve) => setTimeout(resolve, CONVERGE_POLL_MS))
  }
  return null
}

/** Every node's state but the trader's (stopped by then: its record is the commit log). */
async function collect(
  stack: Stack,
  nodes: readonly NodeSpec[],
  multiRegion: boolean,
): Promise<NodeFinalState[]> {
  const reading = nodes.filter(({ kind, name }) => kind !== 'trader' && stack.running(name))
  return Promise.all(
    reading.map(async (spec) => finalStateOf(spec, multiRegion, await stack.state(spec.name))),
  )
}

/**
 * What the nodes say about the run, for the report: who fenced whom by the first node's account
 * (the fences that count: a trader's commit log also holds fences the log dropped), a line on
 * takeovers (whether every node agrees, and the updates each dropped after a fence; none without
 * a takeover), and the stream consumers each node replaced.
 */
async function nodeAccounts(
  stack: Stack,
  nodes: readonly NodeSpec[],
): Promise<{ fenced: Record<string, string>; summary: string | null; consumers: string; lookups: string }> {
  const reading = nodes.filter(({ kind, name }) => kind !== 'trader' && stack.running(name))
  // A node restarted to refold may not answer yet: its account is left out, not the run's report.
  const answers = await Promise.all(
    reading.map(async (spec) => [spec.name, await stack.state(spec.name, true).catch(() => null)] as const),
  )
  const states = answers.filter((answer): answer is readonly [string, NodeState] => answer[1] !== null)
  // Consumers the stream followers replaced (and of those, for a hole), where any were.
  const consumers = states
    .flatMap(([name, { streams }]) =>
      Object.entries(streams)
        .filter(([, position]) => position.restarts > 0)
        .map(([stream, position]) => `${name} ${stream} ${position.restarts} (${position.holes} for a hole)`),
    )
    .join(', ')
  // Statuses the gateways recovered by looking them up (gateway/bets.ts): they were lost on the way.
  const lookups = states
    .flatMap(([name, { relay }]) =>
      relay && relay.lookups > 0 ? [`${name} ${relay.recovered} statuses from ${relay.lookups} lookups`] : [],
    )
    .join(', ')
  const fenced = states[0]?.[1].replicas[GAME]?.fenced ?? {}
  const accounts = new Set(states.map(([, state]) => JSON.stringify(state.replicas[GAME]?.fenced ?? {})))
  if (Object.keys(fenced).length === 0 && accounts.size === 1)
    return { fenced, summary: null, consumers, lookups }
  const who = Object.entries(fenced).map(([writer, by]) => `${writer} by ${by}`)
  const dropped = states.map(([name, state]) => `${name} ${state.droppedUpdates}`).join(', ')
  const agree = accounts.size === 1 ? 'every node agrees' : 'NODES DISAGREE'
  return {
    fenced,
    consumers,
    lookups,
    summary: `takeover: fenced ${who.join(', ')} (${agree}); updates dropped after it: ${dropped}`,
  }
}

/** Where each running node's stream followers stand, for a run whose nodes did not converge. */
async function streamPositions(stack: Stack, nodes: readonly NodeSpec[]): Promise<string> {
  const running = nodes.filter(({ name }) => stack.running(name))
  const lines = await Promise.all(
    running.map(async ({ name }) => {
      const state = await stack.state(name, true).catch(() => null)
      if (state === null) return `${name} unreachable`
      const streams = Object.entries(state.streams).map(
        ([stream, p]) =>
          `${stream} ${p.lastSeq} ${p.phase} idle ${p.idleMs} ms${p.caughtUp ? '' : ' not caught up'}`,
      )
      return `${name} ${streams.join(', ')}`
    }),
  )
  return lines.join('; ')
}

/** Whether every running API and settlement node answers and holds only final verdicts. */
async function judgesHoldFinals(stack: Stack, nodes: readonly NodeSpec[]): Promise<boolean> {
  const judges = nodes.filter(
    ({ kind, name }) => (kind === 'api' || kind === 'settlement') && stack.running(name),
  )
  const states = await Promise.all(judges.map(({ name }) => stack.state(name, true).catch(() => null)))
  return states.every(
    (state) =>
      state !== null &&
      Object.values(state.replicas).every((replica) =>
        Object.values(replica.verdicts).every((verdict) => verdict.final),
      ),
  )
}

/**
 * Whether no node waits to restart and every API and settlement node running has finished comparing
 * what it folded with its streams: a follower audits what it handled lately after its consumer was
 * replaced, its stream's leader changed or the stream could not be reached, and a node whose audit
 * finds a message the stream does not hold exits to refold. Until then what it holds may be a
 * deposed leader's log, not the stream's (seen after split-region: a node read while the servers
 * re-formed held bets open that the stream had settled, and refolded only after it was read).
 */
async function foldsSettled(stack: Stack, nodes: readonly NodeSpec[]): Promise<boolean> {
  if (stack.restartsPending().length > 0) return false
  // One that gave up refolding stays down; the checks say so, not a wait.
  const judges = nodes.filter(
    ({ kind, name }) => (kind === 'api' || kind === 'settlement') && stack.running(name),
  )
  const states = await Promise.all(judges.map(({ name }) => stack.state(name, true).catch(() => null)))
  return states.every(
    (state) =>
      state !== null && Object.values(state.streams).every((stream) => !stream.auditing && !stream.diverged),
  )
}

/**
 * Whether every API and settlement node running has folded each ledger shard it serves as far as
 * the shard's stream reaches now. A node whose consumer stalled does not know it is behind until
 * its watchdog says so, seconds later, and the entries it folds then may hold bets that only the
 * traders' heartbeats finalize: seen in lossy-links, where a node found a gap (the stream purged
 * below a checkpoint while it was stalled) after the traders had stopped, refolded, and held four
 * verdicts provisional for good. A stream the servers cannot describe now is not waited for.
 */
async function foldsCaughtUp(stack: Stack, nodes: readonly NodeSpec[], nc: NatsConnection): Promise<boolean> {
  const jsm = await jetstreamManager(nc)
  const reaches = new Map<string, Promise<number | null>>()
  const reach = (stream: string) => {
    let known = reaches.get(stream)
    if (known === undefined) {
      known = jsm.streams.info(stream).then(
        (info) => info.state.last_seq,
        () => null,
      )
      reaches.set(stream, known)
    }
    return known
  }
  const judges = nodes.filter(
    ({ kind, name }) => (kind === 'api' || kind === 'settlement') && stack.running(name),
  )
  const behind = await Promise.all(
    judges.map(async ({ name, region }) => {
      const state = await stack.state(name, true).catch(() => null)
      if (state === null) return true
      for (const [key, position] of Object.entries(state.streams)) {
        if (!key.startsWith(LEDGER_STREAM_KEY)) continue
        const last = await reach(names.ledgerStream(region, Number(key.slice(LEDGER_STREAM_KEY.length))))
        if (last !== null && position.lastSeq < last) return true
      }
      return false
    }),
  )
  return !behind.includes(true)
}

/** The traders still running that stood down after a takeover, each with its reason. */
async function traderStandDowns(stack: Stack, nodes: readonly NodeSpec[]): Promise<string> {
  const traders = nodes.filter(({ kind, name }) => kind === 'trader' && stack.running(name))
  const states = await Promise.all(
    traders.map(async ({ name }) => [name, await stack.state(name, true).catch(() => null)] as const),
  )
  return states
    .filter(([, state]) => state?.trader?.role === 'fenced')
    .map(([name, state]) => `${name} (${state?.trader?.standDownReason})`)
    .join(', ')
}

/** Replicas of the game agree, and every ledger node has folded as far as the others. */
function converged(states: readonly NodeFinalState[]): boolean {
  const hashes = new Set(states.map((state) => state.replicas?.[GAME]?.stateHash))
  // Each region's ledger nodes fold the same ledger; regions hold different users.
  const ledgers = new Map<string, Set<string>>()
  for (const state of states) {
    if (!state.ledger) continue
    const region = state.region ?? ''
    ledgers.set(region, (ledgers.get(region) ?? new Set()).add(JSON.stringify(state.ledger.totals)))
  }
  return hashes.size === 1 && [...ledgers.values()].every((totals) => totals.size === 1)
}

/** A scenario's servers, formed, with its streams, and its nodes' processes warming: where its run starts. */
interface Prepared {
  readonly dir: string
  readonly nodes: readonly NodeSpec[]
  readonly regions: readonly string[]
  readonly lab: Lab | null
  readonly cluster: AnyCluster
  readonly warmNodes: WarmNodes
  /** How long preparing took: the lab, the servers forming, the streams. */
  readonly preparedInMs: number
}

/** A scenario that cannot run here, and why. */
interface Skipped {
  readonly skipped: string
}

/**
 * Everything of a scenario that does not depend on its run: a temp dir for its logs, its network
 * lab if it needs one, a process per node loading its code (warm-nodes.ts), and its servers,
 * formed, with the fabric's streams made once here so that the nodes starting at once do not all
 * race to. It prints nothing: it may run beside another scenario, which owns the output.
 */
async function prepareScenario(scenario: Scenario): Promise<Prepared | Skipped> {
  const startedAtMs = Date.now()
  const regions = scenario.regions ?? [REGION]
  const multiRegion = regions.length > 1
  const nodes = topology(regions, scenario.standby)
  let lab: Lab | null = null
  if (scenario.lab) {
    const available = networkFaultsAvailable()
    if (!available.ok) return { skipped: available.why }
    sweepStaleLabs(LAB_NAME)
    // The servers, and every node as a host of its own.
    const servers = multiRegion ? Object.values(LAB_REGIONS).flat() : [...LAB_HOSTS]
    lab = await createLabAsync({ name: LAB_NAME, hosts: [...servers, ...nodes.map((node) => node.name)] })
  }
  const dir = mkdtempSync(join(tmpdir(), `chaos-${scenario.name}-`))
  const warmNodes = createWarmNodes({
    dir,
    mains: new Map(nodes.map(({ name, main }) => [name, main])),
    spawn: (name, command, args, options) =>
      lab ? lab.exec(name, command, args, options) : spawn(command, args, options),
    background: WARM_IN_BACKGROUND,
  })
  let cluster: AnyCluster | null = null
  try {
    // Loading a node's code is most of its start: every node does it while the servers form.
    for (const { name } of nodes) warmNodes.warm(name)
    cluster = lab
      ? multiRegion
        ? await startLabSuperCluster(lab, LAB_REGIONS)
        : await startLabCluster(lab, LAB_HOSTS)
      : multiRegion
        ? await startSuperCluster({ regions: [...regions] })
        : await startNatsCluster()
    const nc = await connectFirst(cluster, regions)
    try {
      for (const region of regions)
        await ensureFabricFor(nc, region, multiRegion ? regions : undefined, SHARDS)
    } finally {
      await nc.close()
    }
    return { dir, nodes, regions, lab, cluster, warmNodes, preparedInMs: Date.now() - startedAtMs }
  } catch (error) {
    await warmNodes.killAll()
    await cluster?.close()
    lab?.destroy()
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}

/**
 * SIGKILLs every server of a judged run by its PID, so that close() finds them gone rather than
 * waiting for each to flush a store that nobody reads again.
 */
function killServers(cluster: AnyCluster): void {
  for (const { pid } of cluster.processes) {
    if (pid === undefined) continue
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // It exited by itself meanwhile.
    }
  }
}

/** A connection to the cluster's (first) region. */
function connectFirst(cluster: AnyCluster, regions: readonly string[]): Promise<NatsConnection> {
  return 'regions' in cluster ? cluster.connect(regions[0] as string) : cluster.connect()
}

/**
 * A connection to the servers a fault leaves with the majority (to every server when it leaves
 * none): a cut-off server still answers for the streams it led, as their leader, long after the
 * majority elected another.
 */
function majorityConnection(
  cluster: NatsCluster | LabCluster,
  faulted: ReadonlySet<string>,
): Promise<NatsConnection> {
  const majority = cluster.processes.filter((server) => !faulted.has(server.name))
  return connect({
    servers: (majority.length > 0 ? majority : cluster.processes).map((server) => server.url),
    noAsyncTraces: true,
  })
}

/**
 * Runs a prepared scenario; `prepareNext` is called once its stack is ready, so that the next
 * scenario's servers form and its nodes warm while this one's bettors start; the fault waits until
 * those servers are ready.
 */
async function runScenario(
  scenario: Scenario,
  prepared: Prepared | Skipped,
  profile: Profile,
  seed: number,
  reportDir: string,
  prepareNext: () => Promise<unknown>,
): Promise<Outcome> {
  const started = Date.now()
  const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)} s`
  const history: HistoryEvent[] = []
  const record = (event: HistoryEvent) => history.push(event)
  const secret = randomBytes(32).toString('hex')
  console.log(`\n== ${scenario.name}: ${scenario.description}`)
  if ('skipped' in prepared) {
    console.log(`skipped: ${prepared.skipped}`)
    return 'skipped'
  }
  const { dir, nodes, regions, lab, cluster, warmNodes } = prepared
  const multiRegion = regions.length > 1
  console.log(
    `[${elapsed()}] servers and streams ready, prepared in ${(prepared.preparedInMs / 1000).toFixed(1)} s`,
  )
  let stack: Stack | null = null
  let workload: ReturnType<typeof startWorkload> | null = null
  let passed = false
  try {
    const nc = await connectFirst(cluster, regions)
    const gatewayPorts = new Map<string, number>()
    for (const { name, kind } of nodes) if (kind === 'gateway') gatewayPorts.set(name, await freePort())
    stack = await startStack(
      dir,
      cluster,
      lab,
      nodes,
      regions,
      profile,
      seed,
      secret,
      gatewayPorts,
      warmNodes,
    )
    console.log(`[${elapsed()}] stack ready (${nodes.map((node) => node.name).join(', ')})`)
    const nextPrepared = prepareNext().catch(() => {})
    const users = Array.from({ length: profile.bettors }, (_, i) => `chaos-user-${i}`)
    const homeRegions = Object.fromEntries(users.map((userId) => [userId, homeRegionOf(userId, regions)]))
    // Every bettor's deposit at once: each is its own user's, on its own, and answered on its own.
    await Promise.all(
      users.map(async (userId) => {
        const subject = depositSubject(userId, SHARDS, multiRegion ? (homeRegions[userId] as string) : null)
        const body = JSON.stringify({ id: `chaos-deposit-${userId}`, userId, amountCents: DEPOSIT_CENTS })
        // The same id each time: a deposit whose answer was lost is stored once.
        let acknowledged = false
        for (let attempt = 1; attempt <= DEPOSIT_ATTEMPTS && !acknowledged; attempt++) {
          const reply = await nc.request(subject, body, { timeout: 5_000 }).catch(() => null)
          acknowledged = reply?.json<{ ok: boolean }>().ok === true
          if (!acknowledged) await new Promise((resolve) => setTimeout(resolve, DEPOSIT_RETRY_MS))
        }
        record({ type: 'deposit', atMs: Date.now(), userId, amountCents: DEPOSIT_CENTS, acknowledged })
      }),
    )
    const workloadStartedAtMs = Date.now()
    workload = startWorkload({
      wsUrls: [...gatewayPorts].map(([name, port]) => `ws://${stack?.address(name)}:${port}/v1/ws`),
      secret,
      gameId: GAME,
      users,
      seed,
      meanPauseMs: profile.meanPauseMs,
      answerTimeoutMs: ANSWER_TIMEOUT_MS,
      record,
    })
    // The next scenario's servers form and take their streams before the fault, not during it: a
    // fault must meet servers that do not share the two cores with another cluster's start (its
    // elections and stream creations), or what it measures is that contention.
    await Promise.all([new Promise((resolve) => setTimeout(resolve, profile.beforeFaultMs)), nextPrepared])
    // Which server leads each ledger shard, sampled from just before the fault until the replicas
    // agree after it, when the fault takes servers from the majority (one region).
    const faulted = new Set(scenario.faultedServers ?? [])
    const sampler: LeaderSampler | null =
      !multiRegion && faulted.size > 0
        ? sampleLeaders(
            await majorityConnection(cluster as NatsCluster | LabCluster, faulted),
            regions[0] as string,
            SHARDS,
          )
        : null
    await sampler?.ready
    const faultAtMs = Date.now()
    const [gateway, gatewayPort] = [...gatewayPorts][0] as [string, number]
    const origin = `http://${stack.address(gateway)}:${gatewayPort}`
    const fault = await scenario.inject(stack, {
      seed,
      secret,
      profile,
      nodes,
      users,
      workloadStartedAtMs,
      gateway: { wsUrl: `${origin.replace('http', 'ws')}/v1/ws`, httpUrl: origin, origin },
      record,
    })
    record({ type: 'fault', atMs: Date.now(), kind: fault.kind, target: fault.target, phase: 'start' })
    console.log(`[${elapsed()}] fault: ${fault.kind} ${fault.target}`)
    await new Promise((resolve) => setTimeout(resolve, profile.faultMs))
    await fault.heal()
    const healedAtMs = Date.now()
    record({ type: 'fault', atMs: healedAtMs, kind: fault.kind, target: fault.target, phase: 'end' })
    console.log(`[${elapsed()}] healed`)
    const converging = convergenceMs(stack, nodes, healedAtMs)
    await new Promise((resolve) => setTimeout(resolve, profile.afterFaultMs))
    const convergedMs = await converging
    const leaderSamples = (await sampler?.stop()) ?? { ledger: [], fabric: [], bucket: [] }
    // A bet is judged against the writers' updates and heartbeats: with the fabric stream's leader
    // or the snapshot bucket's (the writers' clock ceilings) on a faulted server, no shard is served
    // by the majority alone until it moves.
    const fabricWindows = sampler ? leaderWindows(leaderSamples.fabric, faultAtMs, faulted) : {}
    const bucketWindows = sampler ? leaderWindows(leaderSamples.bucket, faultAtMs, faulted) : {}
    const fabricWindow = fabricWindows['0']
    const bucketWindow = bucketWindows['0']
    console.log(
      `[${elapsed()}] ${convergedMs === null ? 'replicas did not agree' : `every replica agreed ${convergedMs} ms after the heal`}`,
    )
    workload.stopPlacing()
    const placed = history.filter((event) => event.type === 'place').length
    console.log(`[${elapsed()}] ${placed} bets placed; waiting for answers and final verdicts`)
    const acknowledged = () =>
      history
        .filter((event) => event.type === 'answer' && event.kind === 'provisional')
        .map((event) => betKeyOf(event.userId, event.betId))
    const finals = () =>
      new Set(
        history
          .filter((event) => event.type === 'status' && event.status === 'final')
          .map((event) => betKeyOf(event.userId, event.betId)),
      )
    await waitUntil(
      'answers and finals',
      async () => {
        const final = finals()
        return workload?.unanswered() === 0 && acknowledged().every((key) => final.has(key))
      },
      FINALIZE_WITHIN_MS,
      CHEAP_POLL_MS,
    ).catch((error: Error) => console.log(`[${elapsed()}] ${error.message}; the checker will say which`))
    // A node that found its state diverged from a stream restarts and folds the log again; it
    // needs the traders' heartbeats to finalize what it holds, so they stop only once it is back,
    // once every node has audited what it handled (one may yet find it diverged), and once every
    // node has folded its shards as far as their streams reach (one behind may yet find a gap).
    await waitUntil(
      'audited and rebuilt nodes to hold final verdicts',
      async () =>
        (await foldsSettled(stack as Stack, nodes)) &&
        (await foldsCaughtUp(stack as Stack, nodes, nc)) &&
        (await judgesHoldFinals(stack as Stack, nodes)),
      REBUILT_FINAL_WITHIN_MS,
    ).catch((error: Error) => console.log(`[${elapsed()}] ${error.message}; the checker will say which`))
    const standDowns = await traderStandDowns(stack, nodes)
    // The traders stop (no new ops); then everyone must agree on what they hold.
    await Promise.all(nodes.filter((node) => node.kind === 'trader').map(({ name }) => stack?.stop(name)))
    let states: NodeFinalState[] = []
    await waitUntil(
      'replicas and ledgers to converge',
      async () => {
        states = await collect(stack as Stack, nodes, multiRegion)
        return converged(states) && (await foldsSettled(stack as Stack, nodes))
      },
      CONVERGE_TIMEOUT_MS,
    ).catch(async (error: Error) => {
      console.log(`[${elapsed()}] ${error.message}; checking what they hold`)
      console.log(`stream positions: ${await streamPositions(stack as Stack, nodes)}`)
    })
    // The servers' own account of each stream's replicas, while they still run and the stack is
    // quiet, after a fault of the servers or their links.
    const serverFault = scenario.lab === true || (scenario.faultedServers?.length ?? 0) > 0 || multiRegion
    const forks = serverFault ? await lastingDisagreements(cluster.processes) : []
    if (forks.length > 0)
      console.log(
        `[${elapsed()}] the servers' replicas of a stream hold different logs: ${forks.join(' | ')}`,
      )
    const takeover = await nodeAccounts(stack, nodes)
    const checkInput = {
      history,
      traderLog: traderLogOf(join(dir, 'trader-commits.jsonl'), takeover.fenced),
      finalStates: states,
      healedAtMs,
      bounds: { finalizeWithinMs: FINALIZE_WITHIN_MS },
      ...(multiRegion ? { homeRegions } : {}),
    }
    const report = check(checkInput)
    console.log(renderText(report))
    if (takeover.summary) console.log(takeover.summary)
    if (standDowns) console.log(`stood down: ${standDowns}`)
    console.log(`stream consumers replaced: ${takeover.consumers || 'none'}`)
    console.log(`lost statuses recovered by the gateways: ${takeover.lookups || 'none looked up'}`)
    const rebuilt = Object.entries(stack.rebuilds()).map(([name, count]) => `${name} ${count}`)
    if (rebuilt.length > 0)
      console.log(`restarted to rebuild, their state having diverged from a stream: ${rebuilt.join(', ')}`)
    const availability = {
      whileFaulted: availabilityByRegion(history, users, nodes, { fromMs: faultAtMs, toMs: healedAtMs }),
      wholeRun: availabilityByRegion(history, users, nodes),
    }
    console.log(`availability while faulted, by gateway region: ${availability.whileFaulted}`)
    if (multiRegion) console.log(`availability over the run, by gateway region: ${availability.wholeRun}`)
    const figures = faultFigures(history, {
      faultAtMs,
      healedAtMs,
      answerTimeoutMs: ANSWER_TIMEOUT_MS,
      // Every shard's leader stays with the majority unless the fault takes servers from it.
      ...(multiRegion
        ? {}
        : {
            majorityLed: {
              shards: !sampler
                ? new Set(Array.from({ length: SHARDS }, (_, shard) => shard))
                : fabricWindow || bucketWindow
                  ? new Set<number>()
                  : majorityLedShards(leaderSamples.ledger, faultAtMs, faulted),
              shardOf: (userId: string) => shardOf(userId, SHARDS),
            },
          }),
    })
    console.log(describeFigures(figures))
    const windows = sampler ? leaderWindows(leaderSamples.ledger, faultAtMs, faulted) : {}
    if (sampler)
      console.log(
        `leader windows of the streams led from ${[...faulted].join(', ')}: ledger ${describeWindows(windows)}; ` +
          `fabric ${describeWindow(fabricWindow)}; snapshot bucket ${describeWindow(bucketWindow)}`,
      )
    // Once every stream led from the faulted servers has a leader again, every shard should book:
    // the acceptance over placements from the last of those windows to the heal. A window never
    // closed while faulted leaves nothing to measure there.
    const closed = [...Object.values(windows), fabricWindow, bucketWindow].filter(
      (window) => window !== undefined,
    )
    const electedAtMs =
      closed.length === 0 || closed.some((window) => window.windowMs === null)
        ? null
        : faultAtMs + Math.max(...closed.map((window) => window.windowMs as number))
    const afterElections =
      electedAtMs === null || electedAtMs >= healedAtMs
        ? null
        : faultFigures(history, { faultAtMs: electedAtMs, healedAtMs, answerTimeoutMs: ANSWER_TIMEOUT_MS })
    if (afterElections && electedAtMs !== null)
      console.log(
        `after the last election (${electedAtMs - faultAtMs} ms into the fault): acceptance ${afterElections.booked}/${afterElections.valid}`,
      )
    const acceptanceGoal = scenario.acceptance ?? 'none'
    const missed = missedGoals(
      {
        ...figures,
        convergedAfterHealMs: convergedMs,
        acceptanceAfterElections: afterElections?.valid ? afterElections.acceptanceRatio : null,
      },
      acceptanceGoal,
    )
    console.log(
      `goals (acceptance: ${acceptanceGoal}${acceptanceGoal === 'none' ? ', refusals are the right answer to this fault' : ''}): ` +
        (missed.length === 0
          ? 'every goal met'
          : `missed: ${missed.join('; ')}${profile.enforceGoals ? '' : ' (reported, not enforced in this profile)'}`),
    )
    mkdirSync(reportDir, { recursive: true })
    const measured = {
      faultMs: healedAtMs - faultAtMs,
      validWhileFaulted: figures.valid,
      bookedWhileFaulted: figures.booked,
      acceptanceRatio: figures.acceptanceRatio,
      acceptanceRatioMajorityLed: figures.acceptanceRatioMajorityLed,
      notBookedWhileFaulted: figures.notBooked,
      firstAnswerP99Ms: figures.firstAnswerP99Ms,
      firstAnswerMaxMs: figures.firstAnswerMaxMs,
      finalsAfterHealP99Ms: figures.finalsAfterHealP99Ms,
      convergedAfterHealMs: convergedMs,
      leaderWindows: sampler ? windows : null,
      fabricLeaderWindow: sampler ? (fabricWindow ?? null) : null,
      acceptanceAfterElections: afterElections?.valid ? afterElections.acceptanceRatio : null,
      snapshotBucketLeaderWindow: sampler ? (bucketWindow ?? null) : null,
      goals: { acceptance: acceptanceGoal, enforced: profile.enforceGoals, missed },
      replicasDisagreeing: forks,
      availability,
      consumersReplaced: takeover.consumers,
      statusLookups: takeover.lookups,
      rebuilds: stack.rebuilds(),
    }
    // A run in which nothing was booked checked nothing: that is a failed run, not a pass.
    const booked = report.counts.acknowledged
    if (booked === 0) console.log(`[${elapsed()}] no bet was booked, so nothing was checked`)
    // Every node a scenario stops it also starts again: one that is gone died by itself. A node that
    // exited to rebuild is started again after its backoff: wait for that before judging.
    await waitForRestarts(stack)
    const died = nodes.filter(({ kind, name }) => kind !== 'trader' && !stack?.running(name))
    if (died.length > 0)
      console.log(
        `[${elapsed()}] died during the run: ${died.map(({ name }) => name).join(', ')}; see their logs`,
      )
    const placements = [...availabilityCounts(history, users, nodes).values()]
    const problems = [
      ...((await fault.verify?.({
        history,
        bettorPlacements: {
          placed: placements.reduce((sum, count) => sum + count.placed, 0),
          acknowledged: placements.reduce((sum, count) => sum + count.acknowledged, 0),
        },
      })) ?? []),
      ...(profile.enforceGoals ? missed.map((goal) => `goal missed: ${goal}`) : []),
    ]
    for (const problem of problems) console.log(`[${elapsed()}] ${scenario.name}: ${problem}`)
    passed = report.pass && booked > 0 && died.length === 0 && problems.length === 0
    // Replicas can agree in shape and still hold different messages: before a failed run is laid
    // at the nodes' door, the servers' replicas are compared message by message.
    if (!passed && serverFault && forks.length === 0) {
      const content = await contentDisagreements(cluster.processes, await replicaStates(cluster.processes))
      forks.push(...content.forks)
      console.log(
        `[${elapsed()}] compared the replicas' messages: ${content.compared} sequences read ${CONTENT_READS_PER_SEQ} times each` +
          (content.unread > 0 ? `, ${content.unread} left unread` : ''),
      )
      if (forks.length > 0)
        console.log(
          `[${elapsed()}] the servers' replicas of a stream hold different messages: ${forks.join(' | ')}`,
        )
    }
    // A fork can be gone by the end (a replica caught up, a purge took the sequence): what the
    // nodes logged of two answers of the servers that contradict each other counts too.
    if (!passed && serverFault && forks.length === 0) {
      forks.push(
        ...forksInLogDir(
          dir,
          nodes.map(({ name }) => name),
        ),
      )
      if (forks.length > 0)
        console.log(`[${elapsed()}] the nodes saw the servers contradict themselves: ${forks.join(' | ')}`)
    }
    // A failed run is the servers' fault only if every check it broke is on a stream they forked.
    const unexplained =
      passed || !serverFault
        ? []
        : unexplainedByForks(
            {
              // Every counterexample, not the report's first few.
              invariants: check({
                ...checkInput,
                counterexamplesMax: Number.MAX_SAFE_INTEGER,
              }).invariants.filter((invariant) => !invariant.pass),
              died: died.map(({ name }) => name),
              problems,
              booked,
            },
            {
              forked: new Set(forks.map((line) => line.split(':')[0] as string)),
              ledgerStreamOf: (userId) =>
                names.ledgerStream(
                  multiRegion ? (homeRegions[userId] as string) : REGION,
                  shardOf(userId, SHARDS),
                ),
              refolds: stack.rebuilds(),
              refoldsMax: REBUILDS_PER_NODE_MAX,
            },
          )
    if (!passed && serverFault && forks.length > 0)
      console.log(
        unexplained.length === 0
          ? `[${elapsed()}] every check it broke is on a stream the servers forked`
          : `[${elapsed()}] not explained by the forks: ${unexplained.slice(0, 10).join(' | ')}`,
      )
    const outcome: Outcome = passed
      ? 'PASS'
      : serverFault && forks.length > 0 && unexplained.length === 0
        ? 'FORKED'
        : 'FAIL'
    writeFileSync(
      join(reportDir, `${scenario.name}.json`),
      JSON.stringify({ ...JSON.parse(renderJson(report)), measured }, null, 2),
    )
    writeFileSync(
      join(reportDir, `${scenario.name}.history.jsonl`),
      history.map((event) => JSON.stringify(event)).join('\n'),
    )
    console.log(`[${elapsed()}] ${outcome} ${scenario.name}; report in ${reportDir}`)
    return outcome
  } finally {
    await workload?.close()
    killServers(cluster)
    await (stack?.stopAll() ?? warmNodes.killAll())
    await cluster.close()
    lab?.destroy()
    // A failed run keeps the nodes' logs, and the servers' beside them, for whoever reads the report.
    if (passed && !KEEP_LOGS) rmSync(dir, { recursive: true, force: true })
    else {
      writeFileSync(join(dir, 'servers.log'), `${cluster.logs()}\n`)
      console.log(`node and server logs kept in ${dir}`)
    }
    console.log(`[${elapsed()}] stopped`)
  }
}

async function main(): Promise<void> {
  const usage = `--profile ${Object.keys(PROFILES).join('|')} --scenarios ${SCENARIOS.map((s) => s.name).join(',')} --seed n --report-dir DIR [--fault-ms 1000-${FAULT_MS_MAX}] [--ledger-shards 1-${SHARDS_MAX}] [--ledger-checkpoint-ms 0-${settlementOptions.ledgerCheckpointMs.max} (0: never), default ${CHAOS_LEDGER_CHECKPOINT_MS}] [--keep-logs]`
  const values = parseCommandLine(
    {
      profile: { type: 'string', default: 'short' },
      scenarios: { type: 'string', default: SCENARIOS.map((s) => s.name).join(',') },
      seed: { type: 'string', default: '11' },
      'report-dir': { type: 'string', default: join(tmpdir(), 'chaos-reports') },
      'fault-ms': { type: 'string' },
      'keep-logs': { type: 'boolean', default: false },
      'ledger-shards': { type: 'string', default: String(DEFAULT_SHARDS) },
      'ledger-checkpoint-ms': { type: 'string', default: String(CHAOS_LEDGER_CHECKPOINT_MS) },
    },
    usage,
  )
  const faultMs = values['fault-ms'] === undefined ? undefined : Number(values['fault-ms'])
  const chosen = PROFILES[values.profile]
  const profile = chosen && faultMs !== undefined ? { ...chosen, faultMs } : chosen
  const wanted = values.scenarios.split(',').filter(Boolean)
  const unknown = wanted.filter((name) => !SCENARIOS.some((s) => s.name === name))
  const seed = Number(values.seed)
  const faultMsValid =
    faultMs === undefined || (Number.isSafeInteger(faultMs) && faultMs >= 1_000 && faultMs <= FAULT_MS_MAX)
  const shardsValid = Number.isSafeInteger(SHARDS) && SHARDS >= 1 && SHARDS <= SHARDS_MAX
  const { min, max } = settlementOptions.ledgerCheckpointMs
  const checkpointValid =
    Number.isSafeInteger(LEDGER_CHECKPOINT_MS) && LEDGER_CHECKPOINT_MS >= min && LEDGER_CHECKPOINT_MS <= max
  if (
    profile === undefined ||
    unknown.length > 0 ||
    !Number.isSafeInteger(seed) ||
    !faultMsValid ||
    !shardsValid ||
    !checkpointValid
  ) {
    const problem = unknown.length > 0 ? `unknown scenarios: ${unknown.join(', ')}` : 'an option is invalid'
    usageError(problem, usage)
  }
  const scenarios = SCENARIOS.filter((s) => wanted.includes(s.name))
  const results: [string, Outcome][] = []
  let preparing = scenarios[0] ? prepareAhead(scenarios[0]) : null
  for (const [i, scenario] of scenarios.entries()) {
    const prepared = await (preparing as Promise<Prepared | Skipped>)
    const next = scenarios[i + 1]
    preparing = null
    const prepareNext = (): Promise<unknown> => {
      preparing ??= next ? prepareAhead(next) : null
      return preparing ?? Promise.resolve()
    }
    results.push([
      scenario.name,
      await runScenario(scenario, prepared, profile, seed, values['report-dir'], prepareNext),
    ])
    // A skipped scenario has not prepared the next.
    prepareNext()
  }
  console.log(`\nchaos: ${results.map(([name, outcome]) => `${name} ${outcome}`).join(', ')}`)
  process.exit(results.every(([, outcome]) => outcome !== 'FAIL') ? 0 : 1)
}

await main()

/**
 * prepareScenario, its failure held until the scenario is due: the one running meanwhile must not
 * end on it.
 */
function prepareAhead(scenario: Scenario): Promise<Prepared | Skipped> {
  const preparing = prepareScenario(scenario)
  preparing.catch(() => {})
  return preparing
}

async function waitForRestarts(stack: Stack): Promise<void> {
  const deadline = Date.now() + RESTARTS_WAIT_MS
  while (stack.restartsPending().length > 0 && Date.now() < deadline)
    await new Promise((resolve) => setTimeout(resolve, CHEAP_POLL_MS))
}

/** A numeric option from the command line, read before main parses (and checks) the rest. */
function numberOption(flag: string, fallback: number): number {
  const at = process.argv.findIndex((arg) => arg === flag || arg.startsWith(`${flag}=`))
  if (at === -1) return fallback
  const arg = process.argv[at] as string
  const text = arg.includes('=') ? arg.slice(arg.indexOf('=') + 1) : process.argv[at + 1]
  // Number('') is 0: an empty value is no number, not the option turned off.
  return text === undefined || text.trim() === '' ? Number.NaN : Number(text)
}
