// Proves the trader's commit pipeline on a real Yjs replica with an in-memory publisher, its clock
// injected: updates are committed first and published in commit order under the stamp of their
// last entry, with the writers they fence; a full queue refuses to commit anything; a standby
// writes nothing; a trader that stood down publishes nothing more; and a heartbeat waits for the
// genesis, for the replica to catch up and for the clock ceiling to cover it.

import pino from 'pino'
import t from 'tap'
import { createHlc, type Heartbeat, type Op, stampOps, yjsBackend } from '../../../crdt/index.ts'
import { createCommitPipeline } from '../../../nodes/trader/commit-pipeline.ts'
import type { TraderOptions, UpdateFence } from '../../../nodes/trader/trader.ts'
import { createTraderContext } from '../../../nodes/trader/trader-context.ts'

const GENESIS: Op = { kind: 'game', gameId: 'match-1', writers: ['trader-1', 'trader-2'] }
const CLOCK: Op = { kind: 'clock', period: 1, running: true, clockMs: 0 }

function setup(overrides: Partial<TraderOptions> = {}) {
  const nowMs = 1_700_000_000_000
  const published: { msgId: string; fences: readonly UpdateFence[] }[] = []
  const heartbeats: Heartbeat[] = []
  let available = true
  const context = createTraderContext({
    gameId: 'match-1',
    writers: ['trader-1', 'trader-2'],
    replica: yjsBackend.create(),
    hlc: createHlc({ node: 'trader-1', clock: () => nowMs }),
    log: pino({ level: 'silent' }),
    now: () => nowMs,
    publisher: {
      async publishUpdate(_update, msgId, fences) {
        if (!available) throw new Error('JetStream unavailable')
        published.push({ msgId, fences })
      },
      publishHeartbeat: (heartbeat) => heartbeats.push(heartbeat),
    },
    ...overrides,
  })
  const pipeline = createCommitPipeline(context)
  return { context, pipeline, published, heartbeats, setAvailable: (up: boolean) => (available = up) }
}

t.test('updates are published in commit order, under their last stamp, with their fences', async (t) => {
  const { context, pipeline, published } = setup()
  pipeline.write([GENESIS])
  const fence = stampOps(context.hlc, [{ kind: 'fence', writer: 'trader-2' }, CLOCK])
  t.ok(pipeline.commit(fence))
  await pipeline.flush()
  t.equal(published.length, 2)
  t.same(published[0]?.fences, [], 'the genesis fences nobody')
  t.equal(published[1]?.msgId, fence[1]?.stamp, 'the message id is the stamp of the last entry')
  t.same(published[1]?.fences, [{ target: 'trader-2', stamp: fence[0]?.stamp }])
  t.equal(context.stats.opsWritten, 3)
  t.equal(context.stats.updatesPublished, 2)
  t.equal(pipeline.backlog(), 0)
})

t.test('a full queue refuses to commit, and a retry publishes what was held', async (t) => {
  const { context, pipeline, published, setAvailable } = setup({ limits: { unpublishedMax: 2 } })
  setAvailable(false)
  pipeline.write([GENESIS])
  pipeline.write([CLOCK])
  await pipeline.flush()
  t.equal(pipeline.backlog(), 2)
  t.notOk(pipeline.commit(stampOps(context.hlc, [CLOCK])), 'the third update is refused')
  t.equal(context.stats.opsWritten, 2, 'and was not committed')
  setAvailable(true)
  pipeline.retry()
  await pipeline.flush()
  t.equal(published.length, 2)
  t.equal(pipeline.backlog(), 0)
  t.ok(context.stats.publishRetries >= 1)
})

t.test('a standby writes nothing; a trader that stood down publishes nothing more', async (t) => {
  const standby = setup({ role: 'standby' })
  standby.pipeline.write([GENESIS])
  await standby.pipeline.flush()
  t.equal(standby.context.stats.opsWritten, 0)

  const { context, pipeline, published, setAvailable } = setup()
  setAvailable(false)
  pipeline.write([GENESIS])
  await pipeline.flush()
  context.state.role = 'fenced'
  pipeline.discard()
  setAvailable(true)
  pipeline.retry()
  await pipeline.flush()
  t.equal(published.length, 0)
  t.equal(pipeline.backlog(), 0)
})

t.test('a heartbeat waits for the genesis, the catch-up and the clock ceiling', async (t) => {
  let caughtUp = false
  let covered = false
  const { context, pipeline, heartbeats } = setup({ caughtUp: () => caughtUp, mayPromise: () => covered })
  pipeline.heartbeat()
  pipeline.write([GENESIS])
  pipeline.heartbeat()
  caughtUp = true
  pipeline.heartbeat()
  t.equal(heartbeats.length, 0, 'none before the genesis, the catch-up or the ceiling')
  covered = true
  pipeline.heartbeat()
  t.equal(heartbeats.length, 1)
  t.equal(heartbeats[0]?.writer, 'trader-1')
  t.equal(context.stats.heartbeats, 1)
  await pipeline.flush()
})
