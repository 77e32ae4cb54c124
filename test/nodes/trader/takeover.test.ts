// Proves takeover, stand-down and rejoin on real Yjs replicas, without a server: two traders of one
// game exchange their updates and heartbeats by hand, on an injected clock. When the active trader
// falls silent, the standby fences it, closes and voids the markets it left without a result, and
// takes the match over from the next point; the fenced trader, once it reads the fence, stands down
// for good. A trader restarted on its own replica closes and voids only what was left unresulted.

import pino from 'pino'
import t from 'tap'
import {
  AFTER_ALL_STAMPS,
  createHlc,
  fenceOf,
  type Replica,
  statusAt,
  transitionAt,
  voidAt,
  writerOf,
  yjsBackend,
} from '../../../crdt/index.ts'
import { createTrader, marketIds, runningWriter, type Trader } from '../../../nodes/trader/trader.ts'
import { stampAt } from '../../helpers/game-writer.ts'

const TAKEOVER_AFTER_MS = 1_000
const TICK_MS = 100
const START_MS = 1_700_000_000_000

function createPair() {
  let nowMs = START_MS
  const log = pino({ level: 'silent' })
  const replicas = { 'trader-1': yjsBackend.create(), 'trader-2': yjsBackend.create() }
  const outbox = { 'trader-1': [] as Uint8Array[], 'trader-2': [] as Uint8Array[] }
  const calls = { takeovers: [] as number[], standDowns: [] as string[] }
  const trader = (node: 'trader-1' | 'trader-2', role: 'active' | 'standby'): Trader =>
    createTrader({
      gameId: 'match-1',
      writers: ['trader-1', 'trader-2'],
      replica: replicas[node],
      hlc: createHlc({ node, clock: () => nowMs }),
      publisher: {
        publishUpdate: async (update) => void outbox[node].push(update),
        publishHeartbeat: (heartbeat) => other(node).applyHeartbeat(heartbeat),
      },
      log,
      now: () => nowMs,
      role,
      limits: { takeoverAfterMs: TAKEOVER_AFTER_MS, staleFeedMs: 60_000 },
      onTakeover: (afterPoint) => calls.takeovers.push(afterPoint),
      onStandDown: (reason) => calls.standDowns.push(reason),
    })
  const other = (node: 'trader-1' | 'trader-2'): Replica =>
    replicas[node === 'trader-1' ? 'trader-2' : 'trader-1']
  const active = trader('trader-1', 'active')
  const standby = trader('trader-2', 'standby')
  /** Deliver every published update from one trader to the other's replica. */
  const deliver = async (from: 'trader-1' | 'trader-2') => {
    await (from === 'trader-1' ? active : standby).flush()
    for (const update of outbox[from].splice(0)) other(from).apply(update)
  }
  const advance = (ms: number) => (nowMs += ms)
  return { replicas, active, standby, calls, deliver, advance }
}

t.test('a standby fences a silent active trader and takes the match over', async (t) => {
  const { replicas, active, standby, calls, deliver, advance } = createPair()
  active.handle({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  active.handle({ type: 'point-start', point: 1, server: 'home' })
  active.handle({ type: 'point-end', point: 1, winner: 'home', ace: false })
  active.handle({ type: 'point-start', point: 2, server: 'away' })
  await deliver('trader-1')
  const game = replicas['trader-2'].game
  t.equal(runningWriter(game), 'trader-1')

  // The active trader says nothing more; the standby ticks on, well within the self-pause share.
  for (let waited = 0; standby.role() === 'standby' && waited < 3 * TAKEOVER_AFTER_MS; waited += TICK_MS) {
    advance(TICK_MS)
    standby.tick()
  }
  t.equal(standby.role(), 'active', 'the standby took over')
  t.same(calls.takeovers, [2], 'its feed resumes after the last point the replica holds')
  t.equal(standby.stats.fencesWritten, 1)
  t.equal(standby.stats.marketsVoidedOnTakeover, 2, 'the two markets of point 2, never resulted')
  t.equal(writerOf(fenceOf(game, 'trader-1')!), 'trader-2')
  t.equal(runningWriter(game), 'trader-2')
  const open = marketIds(2)
  t.equal(transitionAt(game, open.winner, AFTER_ALL_STAMPS)?.reason, 'trader takeover')
  t.ok(voidAt(game, open.winner, stampAt(START_MS)), 'its bets are void up to the takeover')
  t.equal(statusAt(game, marketIds(1).winner, AFTER_ALL_STAMPS), 'closed')
  t.notOk(voidAt(game, marketIds(1).winner, stampAt(START_MS)), 'a resulted market is not voided')

  // The fenced trader reads the fence back and stands down for good.
  await deliver('trader-2')
  active.tick()
  t.equal(active.role(), 'fenced')
  t.equal(active.fencedReason(), 'fenced by trader-2')
  t.same(calls.standDowns, ['fenced by trader-2'])
  active.handle({ type: 'point-start', point: 3, server: 'home' })
  t.equal(active.backlog(), 0, 'it writes nothing more')
})

t.test('a standby that was itself paused hears every writer afresh before fencing', async (t) => {
  const { active, standby, deliver, advance } = createPair()
  active.handle({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  await deliver('trader-1')
  standby.tick()
  // Longer than the takeover timeout, but the standby heard nothing because it did not tick.
  advance(2 * TAKEOVER_AFTER_MS)
  standby.tick()
  t.equal(standby.role(), 'standby')
  t.equal(standby.stats.fencesWritten, 0)
})

t.test('a restarted trader closes and voids what it left unresulted, and resumes after it', async (t) => {
  let nowMs = START_MS
  const replica = yjsBackend.create()
  const start = (node: string): Trader =>
    createTrader({
      gameId: 'match-1',
      writers: [node],
      replica,
      hlc: createHlc({ node, clock: () => nowMs }),
      publisher: { publishUpdate: async () => {}, publishHeartbeat: () => {} },
      log: pino({ level: 'silent' }),
      now: () => nowMs,
    })
  const before = start('trader-1')
  before.handle({ type: 'match-start', home: 'A', away: 'B', server: 'home' })
  before.handle({ type: 'point-start', point: 1, server: 'home' })
  before.handle({ type: 'point-end', point: 1, winner: 'away', ace: true })
  before.handle({ type: 'point-start', point: 2, server: 'home' })
  await before.flush()
  nowMs += 5_000
  const after = start('trader-1')
  t.equal(after.rejoin(), 2)
  t.equal(after.stats.marketsVoidedOnRejoin, 2)
  t.equal(transitionAt(replica.game, marketIds(2).ace, AFTER_ALL_STAMPS)?.reason, 'trader restart')
  t.equal(transitionAt(replica.game, marketIds(1).ace, AFTER_ALL_STAMPS)?.reason, 'resulted')
  await after.flush()
})
