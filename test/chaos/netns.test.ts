// Proves the network-fault lab does what chaos runs will rely on. It builds a lab of three hosts
// (a namespace each, joined by a bridge), starts a 3-server nats-server cluster in it and connects from
// the root namespace. With one server partitioned from the other two, an R3 stream still takes
// publishes through the majority and refuses them through the isolated server; after healing, the
// isolated server's replica reaches the same last sequence (read from its own /jsz), or, where the
// server leaves it diverged above the majority, that is reported. With 50 % loss
// between two hosts about half the datagrams one sends the other arrive, and all do once healed. A
// 100 ms delay on one host shows up in a request's round trip (where the kernel has netem). A node
// whose server is cut off gets its appends acknowledged through its second connection and moves
// off the server within 1 s. Teardown destroys the lab and checks nothing of it is
// left. Needs root: skipped with the reason otherwise, and failed when root cannot build a lab.

import { jetstream, jetstreamManager, StorageType } from '@nats-io/jetstream'
import type { NatsConnection } from '@nats-io/transport-node'
import pino from 'pino'
import t, { type Test } from 'tap'
import { requestStepDown } from '../../nodes/fabric/leader-spread.ts'
import { watchQuorum } from '../../nodes/fabric/quorum-watch.ts'
import { natsFabricTransport } from '../../nodes/fabric/regions.ts'
import { serverChoice } from '../../nodes/fabric/server-choice.ts'
import { names } from '../../nodes/fabric/streams.ts'
import {
  createLab,
  ensureNetworkTools,
  type Lab,
  type LabCluster,
  labLeftovers,
  netemAvailable,
  networkFaultsAvailable,
  startLabCluster,
  sweepStaleLabs,
} from '../../scripts/chaos/netns.ts'
import { pollUntil } from '../../scripts/nats-cluster.ts'

const HOSTS = ['n1', 'n2', 'n3'] as const
const LAB_NAME = 'mbt'
const STREAM = 'LAB_ORDERS'
const SUBJECT = 'lab.orders'
/** Covers a raft election on the majority side when the isolated server led the stream. */
const FAILOVER_TIMEOUT_MS = 30_000
/** Covers routes reconnecting after the heal and the replica catching up. */
const CATCH_UP_TIMEOUT_MS = 45_000
/** A former leader's replica above the majority's for this long has diverged, not lagged. */
const DIVERGED_STABLE_MS = 10_000
/** One publish try; a try that cannot reach a quorum times out. */
const PUBLISH_TIMEOUT_MS = 2_000
const DELAY_MS = 100
const ROUND_TRIPS = 5
const QUORUM_CHECK_MS = 500
/** Must outlast a stream leader election on the majority side. */
const QUORUM_LOST_MS = 3_000
/** The hedge scenario: appends before the cut, how often and for how long after it. */
const HEDGE_REGION = 'lab'
const HEDGE_MAX_MS = 250
const HEDGE_APPENDS = 20
const HEDGE_APPEND_EVERY_MS = 50
const HEDGE_WATCH_MS = 3_000
const DATAGRAMS = 400
const LOSS_PCT = 50
const UDP_PORT = 47_123
const encoder = new TextEncoder()

const isRoot = process.getuid?.() === 0
if (!isRoot) {
  t.plan(0, 'network faults need root (namespaces, veth, iptables, tc); not running as root')
} else {
  ensureNetworkTools()
  const availability = networkFaultsAvailable()
  if (!availability.ok) {
    t.fail(`running as root, yet network faults are unavailable: ${availability.why}`)
  } else {
    await runLabTests()
  }
}

async function runLabTests(): Promise<void> {
  sweepStaleLabs(LAB_NAME)
  const lab = createLab({ name: LAB_NAME, hosts: [...HOSTS] })
  let cluster: LabCluster | undefined
  // A safety net for a failed case; the last case below destroys the lab and checks it is gone.
  t.teardown(async () => {
    await cluster?.close()
    lab.destroy()
  })
  cluster = await startLabCluster(lab, HOSTS)
  const started = cluster
  await t.test('a partitioned minority refuses writes, the majority takes them, healing catches up', (t) =>
    partitionScenario(t, lab, started),
  )
  await t.test(
    'a node on a server cut off from JetStream moves to a server that reaches it in one reconnect',
    (t) => quorumScenario(t, lab, started),
  )
  await t.test('a node whose server is cut off gets its appends acknowledged and moves within 1 s', (t) =>
    hedgeScenario(t, lab, started),
  )
  await t.test('loss between two hosts drops about that share of packets, healing restores them', (t) =>
    lossScenario(t, lab),
  )
  // A kernel may have namespaces and iptables but no sch_netem; that is the kernel's build, not a
  // missing privilege or package, so the delay case is skipped with the reason instead of failing.
  const netem = netemAvailable()
  await t.test(
    'a netem delay on a host lengthens round trips to it',
    netem.ok ? {} : { skip: netem.why },
    (t) => delayScenario(t, lab, started),
  )
  await t.test('destroying the lab leaves nothing behind', async (t) => {
    await started.close()
    lab.destroy()
    t.same(labLeftovers(lab.id), [], 'no namespace, veth or bridge of the lab is left')
    t.same(sweepStaleLabs(LAB_NAME), [], 'no stale lab of this name is left either')
  })
}

async function partitionScenario(t: Test, lab: Lab, cluster: LabCluster): Promise<void> {
  const nc = await cluster.connect()
  const jsm = await jetstreamManager(nc)
  await jsm.streams.add({ name: STREAM, subjects: [SUBJECT], storage: StorageType.File, num_replicas: 3 })
  const js = jetstream(nc, { timeout: PUBLISH_TIMEOUT_MS })
  for (let i = 0; i < 3; i++) await js.publish(SUBJECT, encoder.encode(`before-${i}`))
  // Isolating the stream leader also makes the majority elect a new one, the harder case.
  const info = await jsm.streams.info(STREAM)
  const isolated = info.cluster?.leader ?? 'n1'
  const majority = HOSTS.filter((host) => host !== isolated)
  t.comment(`isolating ${isolated} (stream leader) from ${majority.join(', ')}`)
  // Connect before the partition; the root namespace keeps reaching every host anyway.
  const isolatedNc = await cluster.connect({ hosts: [isolated] })
  const majorityNc = await cluster.connect({ hosts: [majority[0] ?? 'n2'] })
  lab.partition([isolated], majority)

  const majorityJs = jetstream(majorityNc, { timeout: PUBLISH_TIMEOUT_MS })
  const ack = await pollUntil(
    'a publish through the majority',
    () => majorityJs.publish(SUBJECT, encoder.encode('during')),
    {
      timeoutMs: FAILOVER_TIMEOUT_MS,
      context: () => cluster.logs(),
    },
  )
  t.equal(ack.stream, STREAM, 'the majority side stores the publish')
  const isolatedJs = jetstream(isolatedNc, { timeout: PUBLISH_TIMEOUT_MS })
  await t.rejects(isolatedJs.publish(SUBJECT, encoder.encode('cut off')), 'the isolated side cannot publish')
  const lastSeq = (await majorityJs.publish(SUBJECT, encoder.encode('during-2'))).seq

  lab.heal()
  // Compare with what the majority holds now: a publish attempt that timed out during the election
  // may still have been stored after the one acknowledged last. nats-server 2.9.10 has been seen,
  // under load, to leave the former leader's replica above the majority's last sequence for good
  // (docs/architecture.md, "When a node's state is not the log's"): that is the server's divergence,
  // which the nodes detect and refold from; it is reported here, not waited out.
  let seen: number | undefined
  let target = lastSeq
  let aboveSince: number | null = null
  const outcome: { caughtUp: number } | { diverged: string } = await pollUntil(
    `${isolated} to catch up with the majority (at least sequence ${lastSeq})`,
    async () => {
      target = (await jsm.streams.info(STREAM)).state.last_seq
      seen = await replicaLastSeq(cluster.server(isolated).monitorUrl)
      if (seen === target && seen >= lastSeq) return { caughtUp: seen as number }
      aboveSince =
        seen !== undefined && seen > target && target >= lastSeq ? (aboveSince ?? Date.now()) : null
      return aboveSince !== null && Date.now() - aboveSince >= DIVERGED_STABLE_MS
        ? { diverged: `${isolated} holds ${seen}, the majority ${target}` }
        : undefined
    },
    {
      timeoutMs: CATCH_UP_TIMEOUT_MS,
      context: () => `${isolated} last reported ${seen}, the majority ${target}\n${cluster.logs()}`,
    },
  )
  const caughtUp = 'caughtUp' in outcome ? outcome.caughtUp : target
  if ('diverged' in outcome)
    t.comment(`the server left the former leader's replica diverged: ${outcome.diverged}`)
  else t.ok(caughtUp >= lastSeq, `${isolated}'s replica reaches the majority's last sequence (${caughtUp})`)
  const bodies: string[] = []
  for (let seq = 1; seq <= caughtUp; seq++) {
    // A sequence the stream skipped has no message: nothing stored there either.
    const message = await jsm.streams.getMessage(STREAM, { seq }).catch(() => null)
    bodies.push(message ? new TextDecoder().decode(message.data) : '')
  }
  t.notOk(bodies.includes('cut off'), 'the refused publish was never stored')
}

async function quorumScenario(t: Test, lab: Lab, cluster: LabCluster): Promise<void> {
  // In host order and not shuffled, so the client starts on n1. Left to itself, nats.js would dial
  // n1 again first; the node's server choice sets the server it leaves aside.
  const choice = serverChoice()
  const nc = await cluster.connect({
    hosts: [...HOSTS],
    noRandomize: true,
    reconnectToServer: choice.reconnectToServer,
  })
  t.equal(nc.info?.server_name, 'n1', 'connected to n1')
  lab.partition(['n1'], ['n2', 'n3'])
  const watch = watchQuorum({
    nc,
    stream: STREAM,
    intervalMs: QUORUM_CHECK_MS,
    lostAfterMs: QUORUM_LOST_MS,
    log: pino({ level: 'silent' }),
    leaving: (server) => choice.leave(server),
  })
  try {
    await pollUntil(
      'the client to leave n1',
      async () => (nc.info?.server_name !== 'n1' && !nc.isClosed() ? true : undefined),
      { timeoutMs: FAILOVER_TIMEOUT_MS, context: () => cluster.logs() },
    )
    t.equal(watch.moves(), 1, `it reconnected once and is on ${nc.info?.server_name}`)
    const jsm = await jetstreamManager(nc, { timeout: PUBLISH_TIMEOUT_MS, checkAPI: false })
    const info = await pollUntil('stream info from the new server', () => jsm.streams.info(STREAM), {
      timeoutMs: FAILOVER_TIMEOUT_MS,
    })
    t.equal(info.config.name, STREAM, 'and reaches JetStream from there')
  } finally {
    watch.stop()
    lab.heal()
    await nc.close()
  }
}

/**
 * A node's hedged appends (nodes/fabric/transport.ts) while its server is cut off from the others:
 * every append is acknowledged through the second connection, none waits 1 s, and the node is told
 * to move off the server within 1 s of the cut (it then reconnects, as API nodes and traders do).
 */
async function hedgeScenario(t: Test, lab: Lab, cluster: LabCluster): Promise<void> {
  const nc = await cluster.connect({ hosts: [...HOSTS], noRandomize: true })
  const second = await cluster.connect({ hosts: ['n2', 'n3'], noRandomize: true })
  t.equal(nc.info?.server_name, 'n1', 'the first connection is on n1')
  let movedAtMs: number | null = null
  const transport = await natsFabricTransport(nc, HEDGE_REGION, undefined, 1, {
    nc: second,
    maxMs: HEDGE_MAX_MS,
    onStalled: () => {
      movedAtMs ??= Date.now()
      void nc.reconnect()
    },
  })
  // The cut must not take the stream's leader with it: that is an election, which no hedge shortens.
  const stream = names.ledgerStream(HEDGE_REGION, 0)
  const jsm = await jetstreamManager(second, { timeout: PUBLISH_TIMEOUT_MS })
  await pollUntil(
    'a stream leader other than n1',
    async () => {
      const leader = (await jsm.streams.info(stream)).cluster?.leader
      if (leader === 'n1') await requestStepDown(second, stream).catch(() => {})
      return leader !== undefined && leader !== 'n1' ? true : undefined
    },
    { timeoutMs: FAILOVER_TIMEOUT_MS },
  )
  let n = 0
  const append = async () => {
    const sentAtMs = Date.now()
    await transport.append(names.ledgerSubject(HEDGE_REGION, 0, 'u1'), `{"n":${n}}`, {
      msgId: `hedge-${n++}`,
      timeoutMs: PUBLISH_TIMEOUT_MS,
    })
    return Date.now() - sentAtMs
  }
  try {
    for (let i = 0; i < HEDGE_APPENDS; i++) await append()
    lab.partition(['n1'], ['n2', 'n3'])
    const cutAtMs = Date.now()
    const waits: number[] = []
    while (Date.now() - cutAtMs < HEDGE_WATCH_MS) {
      waits.push(await append())
      await new Promise((resolve) => setTimeout(resolve, HEDGE_APPEND_EVERY_MS))
    }
    t.ok(
      waits.length > 0 && Math.max(...waits) < 1_000,
      `every append acknowledged, the slowest in ${Math.max(...waits)} ms`,
    )
    t.ok(
      transport.hedgeStats().answered > 0,
      `${transport.hedgeStats().answered} acknowledged through the second connection`,
    )
    t.ok(
      movedAtMs !== null && movedAtMs - cutAtMs < 1_000,
      `told to move ${movedAtMs === null ? 'never' : `${movedAtMs - cutAtMs} ms`} after the cut`,
    )
    await pollUntil(
      'the first connection off n1',
      async () => (nc.info?.server_name !== 'n1' ? true : undefined),
      {
        timeoutMs: FAILOVER_TIMEOUT_MS,
      },
    )
    t.pass(`and it moved to ${nc.info?.server_name}`)
  } finally {
    lab.heal()
    await nc.close()
    await second.close()
  }
}

/** The last sequence of STREAM in the replica the server at `monitorUrl` holds, from its /jsz. */
async function replicaLastSeq(monitorUrl: string): Promise<number | undefined> {
  const response = await fetch(`${monitorUrl}/jsz?accounts=true&streams=true`, {
    signal: AbortSignal.timeout(PUBLISH_TIMEOUT_MS),
  })
  if (!response.ok) return undefined
  const body = (await response.json()) as {
    account_details?: { stream_detail?: { name: string; state?: { last_seq?: number } }[] }[]
  }
  const streams = (body.account_details ?? []).flatMap((account) => account.stream_detail ?? [])
  return streams.find((stream) => stream.name === STREAM)?.state?.last_seq
}

/** How many of DATAGRAMS UDP datagrams, sent from host `from` to host `to`, arrive. */
async function datagramsArriving(lab: Lab, from: string, to: string): Promise<number> {
  const ip = lab.hosts[to]?.ip as string
  const receiver = lab.exec(
    to,
    process.execPath,
    [
      '-e',
      `const s = require('node:dgram').createSocket('udp4'); let n = 0
       s.on('message', () => n++)
       s.bind(${UDP_PORT}, '${ip}', () => console.log('ready'))
       setTimeout(() => { console.log(n); process.exit(0) }, 3000)`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  )
  let output = ''
  receiver.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    output += chunk
  })
  const exited = new Promise((resolve) => receiver.once('exit', resolve))
  await pollUntil('the receiver to listen', async () => (output.includes('ready') ? true : undefined), {
    timeoutMs: 10_000,
  })
  const sender = lab.exec(
    from,
    process.execPath,
    [
      '-e',
      `const s = require('node:dgram').createSocket('udp4'); let i = 0
       const next = () => i++ < ${DATAGRAMS} ? s.send('x', ${UDP_PORT}, '${ip}', () => setImmediate(next)) : s.close()
       next()`,
    ],
    { stdio: 'inherit' },
  )
  await new Promise((resolve) => sender.once('exit', resolve))
  await exited
  return Number(output.split('\n').filter(Boolean).at(-1))
}

async function lossScenario(t: Test, lab: Lab): Promise<void> {
  lab.lose(['n1'], ['n2'], LOSS_PCT)
  let lossy: number
  try {
    lossy = await datagramsArriving(lab, 'n1', 'n2')
  } finally {
    lab.heal()
  }
  const healed = await datagramsArriving(lab, 'n1', 'n2')
  t.comment(`${lossy} of ${DATAGRAMS} arrived with ${LOSS_PCT} % loss, ${healed} once healed`)
  // Binomial(400, 0.5): 200 ± 10; outside 140..260 is a six-sigma event.
  t.ok(lossy > 140 && lossy < 260, `about half arrive with ${LOSS_PCT} % loss (${lossy})`)
  // A socket buffer may overflow now and then (394 of 400 seen); a loss rule left behind would
  // drop about 200.
  t.ok(healed >= 0.9 * DATAGRAMS, `(nearly) every datagram arrives once healed (${healed})`)
}

/** The shortest of ROUND_TRIPS request/reply round trips, in ms: the floor the network imposes. */
async function shortestRoundTripMs(nc: NatsConnection, subject: string): Promise<number> {
  let shortest = Number.POSITIVE_INFINITY
  for (let i = 0; i < ROUND_TRIPS; i++) {
    const start = performance.now()
    await nc.request(subject, encoder.encode('ping'), { timeout: PUBLISH_TIMEOUT_MS })
    shortest = Math.min(shortest, performance.now() - start)
  }
  return shortest
}

async function delayScenario(t: Test, lab: Lab, cluster: LabCluster): Promise<void> {
  const host = 'n3'
  // Responder and requester both talk to the delayed host's server, so every reply leaves that host.
  const nc = await cluster.connect({ hosts: [host] })
  const subject = 'lab.echo'
  const sub = nc.subscribe(subject, {
    callback: (_err, msg) => {
      msg.respond(msg.data)
    },
  })
  await nc.flush()
  const before = await shortestRoundTripMs(nc, subject)
  lab.delay(host, DELAY_MS)
  let during: number
  try {
    during = await shortestRoundTripMs(nc, subject)
  } finally {
    lab.clearDelay(host)
  }
  const after = await shortestRoundTripMs(nc, subject)
  sub.unsubscribe()
  t.comment(
    `shortest round trip: ${before.toFixed(1)} ms, with ${DELAY_MS} ms delay ${during.toFixed(1)} ms, cleared ${after.toFixed(1)} ms`,
  )
  t.ok(before < DELAY_MS / 2, 'without delay a round trip is fast')
  t.ok(during >= DELAY_MS, `with the delay every round trip takes at least ${DELAY_MS} ms`)
  t.ok(after < DELAY_MS / 2, 'clearing the delay restores fast round trips')
}
