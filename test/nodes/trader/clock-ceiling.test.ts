// Proves the writer's clock ceiling (nodes/trader/clock-ceiling.ts) with a fake bucket and clock:
// it is stored DEFAULT_CEILING_LEASE_MS ahead and renewed once a quarter of that is used, so that
// it stays at least three quarters ahead; when the bucket stops answering, heartbeats stay covered
// until the stored ceiling and not one millisecond past it; and a restarted writer resumes past it.

import pino from 'pino'
import t from 'tap'
import { createHlc, DEFAULT_MAX_DRIFT_MS } from '../../../crdt/index.ts'
import type { SnapshotStore } from '../../../nodes/fabric/transport.ts'
import {
  CEILING_RETRY_MS_MAX,
  CEILING_RETRY_MS_MIN,
  CEILING_WARN_EVERY_MS,
  DEFAULT_CEILING_LEASE_MS,
  restoreClockCeiling,
} from '../../../nodes/trader/clock-ceiling.ts'

/** A bucket with revisions; `failing` refuses writes, `landThenFail` stores one and reports a timeout. */
function fakeStore() {
  const values = new Map<string, { value: Uint8Array; revision: number }>()
  const state = { failing: false, landThenFail: false, puts: 0, writes: 0, updates: 0 }
  const write = (key: string, value: Uint8Array | string) => {
    state.writes++
    values.set(key, {
      value: typeof value === 'string' ? new TextEncoder().encode(value) : value,
      revision: state.writes,
    })
    return state.writes
  }
  const store: SnapshotStore = {
    get: async (key) => values.get(key)?.value ?? null,
    async put(key, value) {
      write(key, value)
    },
    create: async () => true,
    delete: async (key) => {
      values.delete(key)
    },
    entry: async (key) => values.get(key) ?? null,
    async update(key, value, revision) {
      state.updates++
      if (state.failing) throw new Error('no stream leader')
      if ((values.get(key)?.revision ?? 0) !== revision) return null
      state.puts++
      const written = write(key, value)
      if (state.landThenFail) {
        state.landThenFail = false
        throw new Error('timeout')
      }
      return written
    },
  }
  return { store, state, values }
}

const storedCeiling = (values: Map<string, { value: Uint8Array }>) =>
  Number(new TextDecoder().decode(values.get('ceiling.trader-1')?.value))

const flush = () => new Promise((resolve) => setImmediate(resolve))

t.test('the ceiling stays three quarters of its lease ahead, and covers no heartbeat past it', async (t) => {
  const { store, state } = fakeStore()
  let nowMs = 1_000_000
  const hlc = createHlc({ node: 'trader-1', clock: () => nowMs })
  const log = pino({ level: 'silent' })
  const ceiling = await restoreClockCeiling({ store, gameIds: ['match-1'], hlc, now: () => nowMs, log })
  t.equal(ceiling.value(), 1_000_000 + DEFAULT_CEILING_LEASE_MS, 'stored a lease ahead at start')
  const quarter = DEFAULT_CEILING_LEASE_MS / 4
  for (let step = 0; step < 20; step++) {
    nowMs += quarter / 2
    t.ok(ceiling.covers(nowMs), `covered at +${step}`)
    await flush()
  }
  const ahead = ceiling.value() - nowMs
  t.ok(
    ahead >= DEFAULT_CEILING_LEASE_MS - quarter && ahead <= DEFAULT_CEILING_LEASE_MS,
    `renewed as the clock runs, never more than a lease ahead: ${ahead} ms ahead`,
  )
  // The bucket stops answering (its stream electing a leader): heartbeats go on until the ceiling.
  state.failing = true
  const stored = ceiling.value()
  const puts = state.puts
  nowMs = stored - 1
  t.ok(ceiling.covers(nowMs), 'covered up to the stored ceiling')
  await flush()
  t.ok(ceiling.covers(stored), 'the ceiling itself is covered')
  await flush()
  t.notOk(ceiling.covers(stored + 1), 'not one millisecond past it')
  t.equal(state.puts, puts, 'nothing stored while failing')
  await flush()

  // Stored again: it moves on, once the pause after the failures is over.
  state.failing = false
  nowMs += CEILING_RETRY_MS_MAX
  ceiling.covers(stored + 1)
  await flush()
  t.ok(ceiling.covers(stored + 1), 'covered again once a renewal is stored')
})

t.test(
  'a restarted writer waits until its clock can take the stored ceiling, then stamps past it',
  async (t) => {
    const { store } = fakeStore()
    let nowMs = 2_000_000
    const log = pino({ level: 'silent' })
    // Time passes only while the writer waits.
    const timers = {
      setTimeout(fn: () => void, ms: number) {
        nowMs += ms
        queueMicrotask(fn)
        return () => {}
      },
      setInterval: () => () => {},
    }
    const first = createHlc({ node: 'trader-1', clock: () => nowMs })
    const before = await restoreClockCeiling({
      store,
      gameIds: [],
      hlc: first,
      now: () => nowMs,
      log,
      timers,
    })
    const stored = before.value()
    t.equal(stored, nowMs + DEFAULT_CEILING_LEASE_MS)
    t.ok(DEFAULT_CEILING_LEASE_MS > DEFAULT_MAX_DRIFT_MS, 'the lease runs past the drift bound')
    nowMs += 10
    const restartedAt = nowMs
    const restarted = createHlc({ node: 'trader-1', clock: () => nowMs })
    await restoreClockCeiling({ store, gameIds: [], hlc: restarted, now: () => nowMs, log, timers })
    t.ok(restarted.now().wall > stored, 'its first stamp is past the old ceiling')
    const waitedMs = nowMs - restartedAt
    t.ok(
      waitedMs >= stored - DEFAULT_MAX_DRIFT_MS - restartedAt && waitedMs <= DEFAULT_CEILING_LEASE_MS,
      `it waited ${waitedMs} ms: until the ceiling was within the drift bound of its clock`,
    )
  },
)

t.test('a renewal that timed out but landed is found, and a late one cannot lower the ceiling', async (t) => {
  const { store, state, values } = fakeStore()
  let nowMs = 3_000_000
  const hlc = createHlc({ node: 'trader-1', clock: () => nowMs })
  const log = pino({ level: 'silent' })
  const ceiling = await restoreClockCeiling({ store, gameIds: [], hlc, now: () => nowMs, log })
  const revisionBefore = values.get('ceiling.trader-1')?.revision as number
  // The next renewal is stored, but its answer is lost.
  state.landThenFail = true
  nowMs += DEFAULT_CEILING_LEASE_MS / 2
  ceiling.covers(nowMs)
  await flush()
  const landed = storedCeiling(values)
  t.ok(landed > ceiling.value(), 'stored, though the writer did not hear so')
  // The one after (past the pause a failure starts) finds the revision moved, reads it, and
  // writes at the new one.
  nowMs += CEILING_RETRY_MS_MIN
  ceiling.covers(nowMs)
  await flush()
  await flush()
  t.equal(storedCeiling(values), ceiling.value(), 'the writer and the bucket agree again')
  t.ok(ceiling.value() >= landed, 'not below what landed')
  // A write sent at the old revision that reaches the bucket only now is refused.
  t.equal(await store.update('ceiling.trader-1', String(nowMs), revisionBefore), null)
  t.equal(storedCeiling(values), ceiling.value(), 'the ceiling was not lowered')
})

t.test(
  'a bucket without a leader gets a renewal at most every 250 ms, and the log one line per 5 s',
  async (t) => {
    const { store, state } = fakeStore()
    let nowMs = 1_000_000
    const hlc = createHlc({ node: 'trader-1', clock: () => nowMs })
    const lines: { level: number; msg: string }[] = []
    const log = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) })
    const ceiling = await restoreClockCeiling({ store, gameIds: [], hlc, now: () => nowMs, log })
    lines.length = 0
    state.failing = true
    // The outage starts as a renewal falls due.
    nowMs += DEFAULT_CEILING_LEASE_MS / 4
    const updates = state.updates
    // A writer beats every 20 ms; the bucket answers every write with an error at once.
    const beatMs = 20
    const outageMs = 3_000
    for (let elapsed = 0; elapsed < outageMs; elapsed += beatMs) {
      nowMs += beatMs
      ceiling.covers(nowMs)
      await flush()
    }
    const tried = state.updates - updates
    t.ok(tried >= outageMs / (2 * CEILING_RETRY_MS_MAX), `the renewal kept being tried (${tried} writes)`)
    t.ok(tried <= 16, `but not at every beat: ${tried} writes in ${outageMs / beatMs} beats`)
    const warnings = lines.filter((line) => line.level === 40)
    t.equal(warnings.length, 1, `one warning within ${CEILING_WARN_EVERY_MS} ms of failures`)
    state.failing = false
    for (let elapsed = 0; elapsed <= CEILING_RETRY_MS_MAX; elapsed += beatMs) {
      nowMs += beatMs
      ceiling.covers(nowMs)
      await flush()
    }
    t.ok(ceiling.value() > nowMs, 'stored again within the longest pause once the bucket answers')
    t.ok(
      lines.some((line) => line.level === 30 && /stored again/.test(line.msg)),
      'and the recovery is logged',
    )
  },
)
