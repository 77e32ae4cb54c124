// Where a node's connection goes when it leaves a server: never straight back to the server it
// left, the second connection's server first, and, when every server was left lately, the one
// left longest ago. nats.js itself would dial the server just left first (see the netns test).

import type { Server } from '@nats-io/transport-node'
import t from 'tap'
import { SERVER_AVOID_MS, serverChoice } from '../../../nodes/fabric/server-choice.ts'

const server = (listen: string): Server => {
  const [hostname, port] = listen.split(':')
  return {
    hostname: hostname as string,
    port: Number(port),
    listen,
    src: `nats://${listen}`,
    tlsName: '',
    reconnects: 0,
    lastConnect: 0,
    gossiped: false,
    didConnect: true,
  }
}
const [n1, n2, n3] = ['10.0.0.1:4222', '10.0.0.2:4222', '10.0.0.3:4222'].map(server) as [
  Server,
  Server,
  Server,
]

t.test('with no server left, nats.js picks as it always does', async (t) => {
  const choice = serverChoice()
  t.equal(choice.reconnectToServer([n1, n2, n3], null), null)
})

t.test('the server left is not dialled again; the next of the pool is', async (t) => {
  const choice = serverChoice()
  choice.leave(n1.listen)
  t.equal(choice.reconnectToServer([n1, n2, n3], null), n2)
  t.equal(choice.reconnectToServer([n3, n1, n2], null), n3, 'the pool order is kept otherwise')
})

t.test('the preferred server comes first, unless it was left too', async (t) => {
  let preferred: string | undefined = n3.listen
  const choice = serverChoice({ preferred: () => preferred })
  choice.leave(n1.listen)
  t.equal(choice.reconnectToServer([n1, n2, n3], null), n3)
  choice.leave(n3.listen)
  t.equal(choice.reconnectToServer([n1, n2, n3], null), n2)
  preferred = undefined
  t.equal(choice.reconnectToServer([n1, n2, n3], null), n2, 'no preference: the first open one')
})

t.test('a server is aside for SERVER_AVOID_MS only', async (t) => {
  let nowMs = 1_000
  const choice = serverChoice({ now: () => nowMs })
  choice.leave(n1.listen)
  t.equal(choice.reconnectToServer([n1, n2], null), n2)
  nowMs += SERVER_AVOID_MS
  t.equal(choice.reconnectToServer([n1, n2], null), n1, 'back in turn once its time is over')
})

t.test('when every server was left lately, the one left longest ago', async (t) => {
  let nowMs = 0
  const choice = serverChoice({ now: () => nowMs })
  for (const left of [n2, n3, n1]) {
    choice.leave(left.listen)
    nowMs += 1_000
  }
  t.equal(choice.reconnectToServer([n1, n2, n3], null), n2)
})

t.test('leaving an unknown server (a connection between servers) sets nothing aside', async (t) => {
  const choice = serverChoice()
  choice.leave('')
  t.equal(choice.reconnectToServer([n1, n2, n3], null), null)
})
