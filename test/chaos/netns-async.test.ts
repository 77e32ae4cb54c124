// Proves that createLabAsync (scripts/chaos/netns.ts) builds the lab createLab builds without
// blocking the event loop: a timer keeps firing while it builds, every host's namespace holds its
// address on eth0, the root namespace reaches a server listening in a host's namespace, and
// destroy() leaves nothing behind. Needs root: skipped with the reason otherwise, and failed when
// root cannot build a lab.

import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect } from 'node:net'
import t from 'tap'
import {
  createLabAsync,
  ensureNetworkTools,
  labLeftovers,
  networkFaultsAvailable,
  sweepStaleLabs,
} from '../../scripts/chaos/netns.ts'
import { pollUntil } from '../../scripts/nats-cluster.ts'

const LAB_NAME = 'mba'
const HOSTS = ['n1', 'n2', 'n3', 'api-1'] as const
const TICK_MS = 5
const LISTEN_PORT = 47_124
/** Covers a node process starting inside the namespace and binding its port. */
const LISTEN_TIMEOUT_MS = 10_000

const isRoot = process.getuid?.() === 0
if (!isRoot) {
  t.plan(0, 'network faults need root (namespaces, veth, iptables); not running as root')
} else {
  ensureNetworkTools()
  const availability = networkFaultsAvailable()
  if (availability.ok) await runTest()
  else t.fail(`running as root, yet network faults are unavailable: ${availability.why}`)
}

async function runTest(): Promise<void> {
  t.test('an async lab is the lab createLab builds, built while the event loop turns', async (t) => {
    sweepStaleLabs(LAB_NAME)
    let ticks = 0
    const timer = setInterval(() => ticks++, TICK_MS)
    const lab = await createLabAsync({ name: LAB_NAME, hosts: HOSTS })
    clearInterval(timer)
    t.teardown(() => lab.destroy())
    t.ok(ticks > 0, `a timer fired ${ticks} times while the lab was built`)
    for (const host of HOSTS) {
      const { ns, ip } = lab.hosts[host] as { ns: string; ip: string }
      const shown = spawn('ip', ['netns', 'exec', ns, 'ip', '-4', 'addr', 'show', 'eth0'])
      let text = ''
      shown.stdout.setEncoding('utf8').on('data', (chunk: string) => {
        text += chunk
      })
      await once(shown, 'close')
      t.match(text, `inet ${ip}/24`, `${host} holds ${ip} on eth0`)
    }
    const target = lab.hosts['api-1'] as { ip: string }
    const server = lab.exec(
      'api-1',
      process.execPath,
      ['-e', `require('node:net').createServer((s) => s.end()).listen(${LISTEN_PORT}, '${target.ip}')`],
      { stdio: 'ignore' },
    )
    t.teardown(() => {
      server.kill('SIGKILL')
    })
    await pollUntil(
      'the root namespace to reach a server in api-1',
      () =>
        new Promise<true | undefined>((resolve) => {
          const socket = connect(LISTEN_PORT, target.ip)
          socket.once('connect', () => {
            socket.destroy()
            resolve(true)
          })
          socket.once('error', () => resolve(undefined))
        }),
      { timeoutMs: LISTEN_TIMEOUT_MS },
    )
    t.pass('the root namespace reaches a server listening in a host')
    server.kill('SIGKILL')
    await once(server, 'exit')
    lab.destroy()
    t.same(labLeftovers(lab.id), [], 'destroy() leaves nothing of the lab')
  })
}
