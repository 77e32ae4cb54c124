// `--workers 2`: two gateway processes share the port, connections spread over both (each has its
// own epoch), and stopping the primary stops them all.

import { createInterface } from 'node:readline'
import t from 'tap'
import { signToken } from '../../gateway/auth.ts'
import { startNatsCluster } from '../../scripts/nats-cluster.ts'
import { spawnNodeProcess, stopProcesses } from '../../scripts/node-process.ts'
import { ofType, openClient, SECRET } from '../helpers/gateway-stack.ts'
import { waitFor } from '../helpers/wait.ts'

t.test('gateway workers share the port', async (t) => {
  const cluster = await startNatsCluster()
  t.teardown(() => cluster.close())
  const gateway = spawnNodeProcess({
    main: 'gateway/main.ts',
    nodeId: 'gw-1',
    region: 'eu',
    shards: 4,
    env: {
      FABRIC_NATS_SERVERS: cluster.servers.join(','),
      GATEWAY_PORT: '0',
      GATEWAY_WORKERS: '2',
      GATEWAY_JWT_SECRET: SECRET,
      LOG_LEVEL: 'info',
    },
  })
  t.teardown(() => stopProcesses([gateway]))
  gateway.stderr?.resume()
  const urls: string[] = []
  const workers = new Set<number>()
  createInterface({ input: gateway.stdout as NodeJS.ReadableStream }).on('line', (line) => {
    const value = JSON.parse(line) as { msg?: string; url?: string; pid?: number }
    if (value.msg === 'gateway listening' && value.url) {
      urls.push(value.url)
      if (value.pid) workers.add(value.pid)
    }
  })
  await waitFor('both workers listening', () => urls.length === 2, 30_000)
  t.equal(new Set(urls).size, 1, 'on one address')
  t.equal(workers.size, 2, 'in two processes')
  const wsUrl = `${urls[0]?.replace('http', 'ws')}/v1/ws`
  const epochs = new Set<string>()
  for (let i = 0; i < 8 && epochs.size < 2; i++) {
    const client = await openClient(wsUrl, { token: await signToken(SECRET, `user-${i}`, 60) })
    epochs.add((await client.next(ofType('hello'))).epoch)
    await client.close()
  }
  t.equal(epochs.size, 2, 'connections reach both workers')
  const exited = new Promise<number | null>((resolve) => gateway.once('exit', (code) => resolve(code)))
  gateway.kill('SIGTERM')
  t.equal(await exited, 0, 'the primary stops its workers and exits cleanly')
  await waitFor('no worker left', () => [...workers].every((pid) => !isAlive(pid)), 15_000)
})

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
