// Proves the leader spreader evens out which servers lead a set of R3 streams. The plan alone: an even
// spread plans nothing, a skewed one plans just the excess from the most loaded servers (checked with
// generated leaders too), leaderless streams are left alone, and the plan does not depend on the order
// leaders were read in. The spreader over a fake JetStream: the step-down request it sends, once per
// check and once per spacing per stream, checks that never overlap, and failures that are counted, not
// thrown. And on a real 3-server nats-server 2.9 cluster: six R3 streams whose leaders were forced onto
// one server end up spread evenly, again over the two servers left after one is killed, and again over
// all three once it is back.

import { jetstreamManager, StorageType, type StreamInfo } from '@nats-io/jetstream'
import type { Msg } from '@nats-io/transport-node'
import fc from 'fast-check'
import pino from 'pino'
import t from 'tap'
import {
  createLeaderSpreader,
  LEADER_REQUEST_TIMEOUT_MS,
  type LeaderSpreaderOptions,
  type Leaders,
  leaderCounts,
  leaderSpread,
  planStepDowns,
  REPLICA_SEEN_WITHIN_MS,
  readLeaders,
  requestStepDown,
  type SpreadReport,
  serversOf,
} from '../../../nodes/fabric/leader-spread.ts'
import type { Timers } from '../../../nodes/fabric/timers.ts'
import { pollUntil, startNatsCluster } from '../../../scripts/nats-cluster.ts'

const log = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' })
const SERVERS = ['n1', 'n2', 'n3']

function leadersOf(entries: Record<string, string | null>): Map<string, string | null> {
  return new Map(Object.entries(entries))
}

function shardNames(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `LEDGER_EU_${i}`)
}

/** The leaders after each planned stream moved to the least loaded server: the best a pass can do. */
function afterIdealMoves(leaders: Leaders, servers: readonly string[], planned: readonly string[]): Leaders {
  const moved = new Map(leaders)
  for (const stream of planned) moved.set(stream, null)
  for (const stream of planned) {
    const counts = leaderCounts(moved, servers)
    const [least] = [...counts].sort(([a, x], [b, y]) => x - y || a.localeCompare(b))
    moved.set(stream, least?.[0] ?? null)
  }
  return moved
}

t.test('planStepDowns', async (t) => {
  t.test('an even spread plans nothing', async (t) => {
    const shards = shardNames(8)
    const leaders = new Map(shards.map((stream, i) => [stream, SERVERS[i % 3] ?? null]))
    t.same(
      leaderCounts(leaders, SERVERS),
      new Map([
        ['n1', 3],
        ['n2', 3],
        ['n3', 2],
      ]),
    )
    t.same(planStepDowns(leaders, SERVERS), [])
    t.same(planStepDowns(new Map(), SERVERS), [], 'no streams')
    t.same(planStepDowns(leaders, []), [], 'no servers')
  })

  t.test('all eight on one server of three: the excess steps down, and no more', async (t) => {
    const shards = shardNames(8)
    const leaders = new Map(shards.map((stream) => [stream, 'n2']))
    const planned = planStepDowns(leaders, SERVERS)
    t.same(planned, shards.slice(0, 5), 'five of eight leave n2, in name order')
    const moved = afterIdealMoves(leaders, SERVERS, planned)
    t.same(
      leaderCounts(moved, SERVERS),
      new Map([
        ['n1', 3],
        ['n2', 3],
        ['n3', 2],
      ]),
      'then even',
    )
  })

  t.test('steps down from the most loaded servers first', async (t) => {
    const leaders = leadersOf({ A: 'n1', B: 'n1', C: 'n1', D: 'n1', E: 'n2', F: 'n2', G: 'n2', H: 'n2' })
    // 8 over 3: shares 3, 3, 2; the two most loaded keep 3 each, so each gives up one.
    t.same(planStepDowns(leaders, SERVERS), ['A', 'E'])
    const skewed = leadersOf({ A: 'n3', B: 'n3', C: 'n3', D: 'n3', E: 'n3', F: 'n1', G: 'n1', H: 'n1' })
    t.same(planStepDowns(skewed, SERVERS), ['A', 'B'], 'n3 gives up two; n1 keeps its share')
  })

  t.test('leaderless streams are neither counted nor chosen', async (t) => {
    const leaders = leadersOf({ A: 'n1', B: 'n1', C: null, D: 'n2', E: null, F: 'n3' })
    t.same(
      leaderCounts(leaders, SERVERS),
      new Map([
        ['n1', 2],
        ['n2', 1],
        ['n3', 1],
      ]),
    )
    t.same(planStepDowns(leaders, SERVERS), [], '2-1-1 is even')
    const allOnOne = leadersOf({ A: null, B: 'n1', C: 'n1', D: 'n1', E: null })
    t.same(planStepDowns(allOnOne, SERVERS), ['B', 'C'])
  })

  t.test('streams led by a server not listed are neither counted nor chosen', async (t) => {
    const leaders = leadersOf({ A: 'n1', B: 'n1', C: 'gone', D: 'gone', E: 'gone' })
    t.same(planStepDowns(leaders, ['n1', 'n2']), ['A'])
  })

  t.test('resting streams count but are not chosen', async (t) => {
    const leaders = leadersOf({ A: 'n1', B: 'n1', C: 'n1', D: 'n1' })
    t.same(planStepDowns(leaders, ['n1', 'n2'], new Set(['A'])), ['B', 'C'])
    t.same(planStepDowns(leaders, ['n1', 'n2'], new Set(['A', 'B', 'C'])), ['D'])
  })

  t.test('deterministic: the order leaders and servers were read in does not matter', async (t) => {
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('n1', 'n2', 'n3', null), { minLength: 0, maxLength: 12 }),
        fc.integer({ min: 0, max: 1_000 }),
        (assigned, seed) => {
          const entries = assigned.map((leader, i): [string, string | null] => [`S${i}`, leader])
          const shuffled = [...entries].sort((a, b) => hash(a[0], seed) - hash(b[0], seed))
          const servers = [...SERVERS].sort((a, b) => hash(a, seed) - hash(b, seed))
          const once = planStepDowns(new Map(entries), SERVERS)
          return JSON.stringify(once) === JSON.stringify(planStepDowns(new Map(shuffled), servers))
        },
      ),
      { numRuns: 300 },
    )
    t.pass()
  })

  t.test('generated leaders: plans only the excess, and moving it well makes the spread even', async (t) => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5 }),
        fc.array(fc.option(fc.integer({ min: 0, max: 5 })), { maxLength: 24 }),
        (serverCount, assigned) => {
          const servers = Array.from({ length: serverCount }, (_, i) => `s${i}`)
          const leaders = new Map(
            assigned.map((index, i): [string, string | null] => [
              `S${i}`,
              index === null ? null : `s${index}`,
            ]),
          )
          const planned = planStepDowns(leaders, servers)
          const counts = [...leaderCounts(leaders, servers).values()].sort((a, b) => b - a)
          const led = counts.reduce((sum, count) => sum + count, 0)
          const [base, larger] = [Math.floor(led / serverCount), led % serverCount]
          // The fewest moves to even: the most loaded keep the larger shares, the rest give up the excess.
          const fewest = counts.reduce(
            (sum, count, i) => sum + Math.max(0, count - base - (i < larger ? 1 : 0)),
            0,
          )
          const evenAlready = leaderSpread(leaderCounts(leaders, servers)) <= 1
          const moved = leaderSpread(leaderCounts(afterIdealMoves(leaders, servers, planned), servers))
          return (
            new Set(planned).size === planned.length &&
            planned.every((stream) => servers.includes(leaders.get(stream) ?? '')) &&
            (planned.length === 0) === evenAlready &&
            planned.length === fewest &&
            moved <= 1
          )
        },
      ),
      { numRuns: 500 },
    )
    t.pass()
  })
})

t.test('serversOf: leaders, and replicas current, online and heard from lately', async (t) => {
  const info = (leader: string | undefined, replicas: [string, boolean, boolean, number][]) =>
    ({
      cluster: {
        leader,
        replicas: replicas.map(([name, current, offline, seenMs]) => ({
          name,
          current,
          offline,
          active: seenMs * 1_000_000,
          lag: 0,
        })),
      },
    }) as unknown as StreamInfo
  t.same(
    serversOf([
      info('n2', [
        ['n1', true, false, 20],
        ['n3', true, true, 20],
      ]),
      info(undefined, [['n4', false, false, 20]]),
      info('n2', [['n6', true, false, REPLICA_SEEN_WITHIN_MS]]),
      null,
      info('n5', []),
    ]),
    ['n1', 'n2', 'n5'],
    'offline, behind and silent replicas are left out; an unread info adds nothing',
  )
})

/** A fake JetStream: streams with leaders that a step-down moves to the next of SERVERS. */
function fakeJetStream(initial: Record<string, string | null>) {
  const leaders = new Map(Object.entries(initial))
  const requests: { subject: string; payload: unknown }[] = []
  const failInfo = new Set<string>()
  const refuse = new Set<string>()
  let infoCalls = 0
  const jsm: LeaderSpreaderOptions['jsm'] = {
    streams: {
      async info(stream: string) {
        infoCalls++
        if (failInfo.has(stream)) throw new Error(`no info for ${stream}`)
        return {
          cluster: { leader: leaders.get(stream) ?? undefined, replicas: [] },
        } as unknown as StreamInfo
      },
    },
    getOptions: () => ({ apiPrefix: '$JS.API' }),
  }
  const nc: LeaderSpreaderOptions['nc'] = {
    async request(subject: string, payload?: unknown) {
      requests.push({ subject, payload })
      const stream = subject.split('.').at(-1) ?? ''
      const body = refuse.has(stream)
        ? { error: { code: 500, err_code: 10009, description: 'nope' } }
        : { success: true }
      if (!refuse.has(stream)) {
        const leader = leaders.get(stream)
        leaders.set(stream, SERVERS[(SERVERS.indexOf(leader ?? '') + 1) % SERVERS.length] ?? null)
      }
      return { json: () => body } as unknown as Msg
    },
  }
  return { jsm, nc, leaders, requests, failInfo, refuse, infoCalls: () => infoCalls }
}

/** Timers that fire only when the test says so. */
function manualTimers() {
  const pending: { fn: () => void; cancelled: boolean }[] = []
  const timers: Timers = {
    setTimeout(fn) {
      const entry = { fn, cancelled: false }
      pending.push(entry)
      return () => {
        entry.cancelled = true
      }
    },
    setInterval(fn) {
      const entry = { fn, cancelled: false }
      pending.push(entry)
      return () => {
        entry.cancelled = true
      }
    },
  }
  return { timers, live: () => pending.filter((entry) => !entry.cancelled) }
}

t.test('the spreader over a fake JetStream', async (t) => {
  t.test('sends the step-down request, once per check and once per spacing per stream', async (t) => {
    const fake = fakeJetStream({ A: 'n1', B: 'n1', C: 'n1', D: 'n2', E: 'n3', F: null })
    let clock = 1_000_000
    const { timers } = manualTimers()
    const spreader = createLeaderSpreader({
      jsm: fake.jsm,
      nc: fake.nc,
      streams: ['A', 'B', 'C', 'D', 'E', 'F'],
      servers: () => SERVERS,
      intervalMs: 1_000,
      log,
      timers,
      now: () => clock,
      stepDownSpacingMs: 5_000,
    })
    t.teardown(() => spreader.stop())
    const first = await spreader.check()
    t.same(
      first.counts,
      new Map([
        ['n1', 3],
        ['n2', 1],
        ['n3', 1],
      ]),
    )
    t.equal(first.spread, 2)
    t.notOk(first.even)
    t.same(first.leaderless, ['F'])
    t.same(first.steppedDown, ['A'], 'n1 gives up one of its three')
    t.same(
      fake.requests,
      [{ subject: '$JS.API.STREAM.LEADER.STEPDOWN.A', payload: undefined }],
      'empty request',
    )
    t.equal(spreader.stepDowns(), 1)

    // A moved to n2 (2-2-1, even); force it back onto n1 to see the spacing hold it.
    fake.leaders.set('A', 'n1')
    const second = await spreader.check()
    t.same(second.steppedDown, ['B'], 'A stepped down lately, so another of n1 goes')
    fake.leaders.set('A', 'n1')
    fake.leaders.set('B', 'n1')
    const third = await spreader.check()
    t.same(third.steppedDown, ['C'], 'A and B rest')
    fake.leaders.set('C', 'n1')
    const resting = await spreader.check()
    t.same(resting.steppedDown, [], 'all of n1 rest: nothing steps down')
    t.notOk(resting.even)
    clock += 5_000
    const rested = await spreader.check()
    t.same(rested.steppedDown, ['A'], 'once the spacing passed, A can go again')
    t.equal(spreader.stepDowns(), 4)
    t.same(spreader.leaders(), rested.leaders)
  })

  t.test('checks do not overlap; failures are reported, not thrown', async (t) => {
    const fake = fakeJetStream({ A: 'n1', B: 'n1', C: 'n1', D: 'n1' })
    fake.failInfo.add('D')
    fake.refuse.add('A')
    const { timers } = manualTimers()
    const spreader = createLeaderSpreader({
      jsm: fake.jsm,
      nc: fake.nc,
      streams: ['A', 'B', 'C', 'D'],
      servers: () => SERVERS,
      intervalMs: 1_000,
      log,
      timers,
    })
    t.teardown(() => spreader.stop())
    const [one, two] = [spreader.check(), spreader.check()]
    t.equal(one, two, 'a second check joins the one in flight')
    const report: SpreadReport = await one
    t.equal(fake.infoCalls(), 4, 'each stream read once')
    t.same(report.leaderless, ['D'], 'a stream whose info failed counts as leaderless')
    t.same(report.failed, ['A'], 'the refused step-down')
    t.same(report.steppedDown, ['B'])
    t.equal(spreader.stepDowns(), 1)
  })

  t.test('checks at start and every interval, until stopped', async (t) => {
    const fake = fakeJetStream({ A: 'n1' })
    const manual = manualTimers()
    const spreader = createLeaderSpreader({
      jsm: fake.jsm,
      nc: fake.nc,
      streams: ['A'],
      servers: () => SERVERS,
      intervalMs: 1_000,
      log,
      timers: manual.timers,
    })
    t.equal(manual.live().length, 2, 'a first check at once, and one per interval')
    for (const entry of manual.live()) entry.fn()
    await pollUntil('the first check', async () => (spreader.leaders().size === 1 ? true : undefined), {
      timeoutMs: 5_000,
    })
    spreader.stop()
    t.equal(manual.live().length, 0, 'stop cancels both')
    await t.rejects(spreader.check(), /stopped/)
  })

  t.test('stream names that are not one subject token are refused', async (t) => {
    const fake = fakeJetStream({})
    t.throws(() =>
      createLeaderSpreader({
        jsm: fake.jsm,
        nc: fake.nc,
        streams: ['LEDGER.EU'],
        servers: () => SERVERS,
        intervalMs: 1_000,
        log,
        timers: manualTimers().timers,
      }),
    )
    await t.rejects(requestStepDown(fake.nc, 'A.>'))
  })
})

/** Six streams keep the cluster part short while still letting one server hold most of them. */
const STREAMS = Array.from({ length: 6 }, (_, i) => `SPREAD_${i}`)
/** Leaders forced onto one server before the spreader starts: enough to need several passes. */
const SKEWED_AT_LEAST = 5
/** Each wait of the cluster part; a raft election after a SIGKILL takes up to about 10 s on 2.9. */
const PHASE_TIMEOUT_MS = 25_000
/**
 * Shorter than STEP_DOWN_SPACING_MS, which allows for an election that a leader transfer did not settle
 * (up to 9 s): here transfers settle, and the default would make each phase wait out several spacings.
 */
const TEST_SPACING_MS = 1_000

t.test('a real 3-server cluster', async (t) => {
  const startedAt = Date.now()
  const cluster = await startNatsCluster()
  let stopSpreader = () => {}
  const nc = await cluster.connect()
  t.teardown(async () => {
    stopSpreader()
    await nc.close()
    await cluster.close()
  })
  const jsm = await jetstreamManager(nc, { timeout: LEADER_REQUEST_TIMEOUT_MS })
  const names = cluster.processes.map((server) => server.name)
  const live = () => cluster.processes.filter((server) => server.running).map((server) => server.name)
  const waitFor = <T>(what: string, attempt: () => Promise<T | undefined>) =>
    pollUntil(what, attempt, { timeoutMs: PHASE_TIMEOUT_MS, context: () => cluster.logs() })

  await Promise.all(
    STREAMS.map((name, i) =>
      jsm.streams.add({ name, subjects: [`spread.${i}`], storage: StorageType.File, num_replicas: 3 }),
    ),
  )
  const initial = await waitFor('every stream to have a leader', async () => {
    const leaders = await readLeaders(jsm, STREAMS)
    return [...leaders.values()].every((leader) => leader !== null) ? leaders : undefined
  })

  // Skew: step down every leader not on the target until most are there. A 2.9 step-down goes to either
  // other replica, so this takes a few rounds.
  const target = [...leaderCounts(initial, names)].sort(([, a], [, b]) => b - a)[0]?.[0] ?? 'n1'
  const skewed = await waitFor(`${SKEWED_AT_LEAST} leaders on ${target}`, async () => {
    const leaders = await readLeaders(jsm, STREAMS)
    if ((leaderCounts(leaders, names).get(target) ?? 0) >= SKEWED_AT_LEAST) return leaders
    const away = [...leaders].filter(([, leader]) => leader !== null && leader !== target)
    await Promise.allSettled(away.map(([stream]) => requestStepDown(nc, stream)))
    return undefined
  })
  t.ok(leaderSpread(leaderCounts(skewed, names)) >= SKEWED_AT_LEAST - 1, `skewed onto ${target}`)

  const spreader = createLeaderSpreader({
    jsm,
    nc,
    streams: STREAMS,
    servers: (infos) => serversOf(infos.values()),
    intervalMs: 60_000,
    log,
    stepDownSpacingMs: TEST_SPACING_MS,
  })
  stopSpreader = () => spreader.stop()

  /** Checks until a check reads every stream led and the spread over `servers` even. */
  const spreadOver = async (servers: () => readonly string[], what: string) => {
    const [from, stepDownsBefore] = [Date.now(), spreader.stepDowns()]
    const report = await waitFor(what, async () => {
      const report = await spreader.check()
      const counts = leaderCounts(report.leaders, servers())
      const led = [...report.leaders.values()].every((leader) => leader !== null && counts.has(leader))
      return led && leaderSpread(counts) <= 1 ? report : undefined
    })
    const stepDowns = spreader.stepDowns() - stepDownsBefore
    t.comment(`${what}: ${Date.now() - from} ms, ${stepDowns} step-downs`)
    return report
  }

  const even = await spreadOver(() => names, 'an even spread over three servers')
  t.same([...even.counts.values()], [2, 2, 2], 'two leaders per server')
  t.same(even.servers, names, 'serversOf found all three servers')
  t.ok(spreader.stepDowns() >= 3, `the skew took step-downs (${spreader.stepDowns()})`)

  const victim = names.indexOf(even.leaders.get(STREAMS[0] ?? '') ?? '')
  t.ok(victim >= 0, 'the first stream is led by a cluster server')
  await cluster.stopServer(victim, 'SIGKILL')
  const survivors = await spreadOver(live, `an even spread over the two left after ${names[victim]} died`)
  t.same([...leaderCounts(survivors.leaders, live()).values()], [3, 3], 'three leaders on each survivor')

  await cluster.startServer(victim)
  const healed = await spreadOver(() => names, `an even spread again once ${names[victim]} is back`)
  t.same([...healed.counts.values()], [2, 2, 2], 'the restarted server leads again')
  t.comment(`cluster part took ${Date.now() - startedAt} ms, ${spreader.stepDowns()} step-downs`)
})

function hash(text: string, seed: number): number {
  let h = seed | 0
  for (const char of text) h = (Math.imul(h, 31) + (char.codePointAt(0) ?? 0)) | 0
  return h
}
