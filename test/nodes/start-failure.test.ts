// A node that cannot start says why in one structured log line and exits with a failure code,
// rather than ending on a bare stack trace: here an API node pointed at a lone nats-server, where
// the region's replicated streams cannot be made ("replicas > 1 not supported in non-clustered
// mode", an error no retry helps).

import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from '@nats-io/transport-node'
import t from 'tap'
import { freePorts } from '../../scripts/nats-cluster.ts'
import { runScript } from '../helpers/run-script.ts'
import { waitFor } from '../helpers/wait.ts'

const EXIT_WAIT_MS = 60_000

t.test('an API node that cannot make its streams logs why, once, and exits', async (t) => {
  const [port] = await freePorts(1)
  const store = mkdtempSync(join(tmpdir(), 'lone-server-'))
  const server = spawn(process.env.NATS_SERVER_BIN || 'nats-server', [
    '-js',
    '-a',
    '127.0.0.1',
    '-p',
    String(port),
    '-sd',
    store,
  ])
  t.teardown(() => {
    server.kill('SIGKILL')
    rmSync(store, { recursive: true, force: true })
  })
  const url = `nats://127.0.0.1:${port}`
  await waitFor('the lone server', async () =>
    connect({ servers: [url] }).then(
      (nc) => nc.close().then(() => true),
      () => false,
    ),
  )
  const { code, stdout, stderr } = await runScript(
    'nodes/api/main.ts',
    [],
    {
      FABRIC_NATS_SERVERS: url,
      FABRIC_NODE_ID: 'api-lone',
      FABRIC_QUORUM_CHECK_MS: '0',
      FABRIC_CLOCK_PROBE_MS: '0',
    },
    EXIT_WAIT_MS,
  )
  t.equal(code, 1, 'exits with a failure code')
  const lines = stdout
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { level: number; msg: string; err?: { message?: string } })
  const fatal = lines.filter((line) => line.level === 60)
  t.equal(fatal.length, 1, 'one fatal line')
  t.match(fatal[0], { msg: 'api could not start; exiting', err: { message: /replicas > 1/ } })
  t.notMatch(stderr, /\bat\b.*\.ts:\d+/, 'no bare stack trace')
})
