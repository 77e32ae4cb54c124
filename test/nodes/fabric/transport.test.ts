// Runs the transport contract (transport-contract.ts) against both implementations: NATS JetStream
// on a real 3-server cluster, and memory. The simulator runs the nodes' own code over the memory
// one; this suite is what lets it stand in for the real thing.

import t from 'tap'
import { createMemoryFabric, regionStreams } from '../../../nodes/fabric/memory-transport.ts'
import { ensureFabric } from '../../../nodes/fabric/streams.ts'
import { natsTransport } from '../../../nodes/fabric/transport.ts'
import { startNatsCluster } from '../../../scripts/nats-cluster.ts'
import { CONTRACT_REGION, transportContract } from './transport-contract.ts'

const region = CONTRACT_REGION

transportContract(t, 'memory', async () => {
  const fabric = createMemoryFabric({ streams: regionStreams(region) })
  return { a: fabric.transport('a'), b: fabric.transport('b'), close: async () => {} }
})

transportContract(t, 'nats', async () => {
  const cluster = await startNatsCluster()
  const [ncA, ncB] = [await cluster.connect(), await cluster.connect()]
  const { snapshots } = await ensureFabric(ncA, region)
  const { snapshots: snapshotsB } = await ensureFabric(ncB, region)
  return {
    a: natsTransport(ncA, snapshots),
    b: natsTransport(ncB, snapshotsB),
    async close() {
      await ncA.close()
      await ncB.close()
      await cluster.close()
    },
  }
})
