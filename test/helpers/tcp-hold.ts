/**
 * A loopback TCP relay to a server that can be made to go silent: while held, it forwards nothing
 * either way and closes nothing, as a server cut off by the network looks to a client (its
 * requests go unanswered, and its connection stays up until a ping finds it gone, minutes later).
 */

import { createConnection, createServer, type Socket } from 'node:net'

export interface TcpHold {
  /** `nats://127.0.0.1:<port>`: the relay's address. */
  readonly url: string
  /** Forward nothing from now on, either way. */
  hold(): void
  close(): Promise<void>
}

export async function startTcpHold(target: { host: string; port: number }): Promise<TcpHold> {
  let held = false
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = createConnection(target)
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
      socket.on('error', () => socket.destroy())
    }
    client.on('data', (chunk) => {
      if (!held) upstream.write(chunk)
    })
    upstream.on('data', (chunk) => {
      if (!held) client.write(chunk)
    })
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('the relay has no port')
  return {
    url: `nats://127.0.0.1:${address.port}`,
    hold() {
      held = true
    },
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
