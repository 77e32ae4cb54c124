/**
 * What a ledger fold holds per bet, and what retiring settled bets (LEDGER_BET_RETENTION_MS) does
 * to it: folds `--bets` bets of 500 users, each settled at once, their placement times spread over
 * three retentions of ledger time, twice in one run: with a retention longer than the run (every bet held, the baseline) and with
 * `--retention-ms`; then a third time with the bets left open (never settled, so all held).
 * Reports heap bytes per bet held (after a forced GC), the bets held at the end, the fold's time
 * per bet (and settlement) and its snapshot's JSON size. Needs --expose-gc (the npm script passes it).
 *
 *   npm run bench:fold-memory
 *   npm run bench:fold-memory -- --bets 500000 --retention-ms 60000
 */

import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { createLedgerFold, LEDGER_BET_RETENTION_MS } from '../ledger/index.ts'
import { settlementIdOf } from '../protocol/ids.ts'
import { parseCommandLine, usageError } from '../scripts/command-line.ts'

const USERS = 500
const T0 = 1_800_000_000_000
const USAGE = 'npm run bench:fold-memory -- [--bets n (1,000..5,000,000)] [--retention-ms ms]'

const values = parseCommandLine(
  {
    bets: { type: 'string', default: '200000' },
    'retention-ms': { type: 'string', default: String(LEDGER_BET_RETENTION_MS) },
    /** Internal: fold with this retention in this process and print the figures as JSON. */
    only: { type: 'string' },
    /** Internal, with --only: leave the bets open. */
    open: { type: 'boolean', default: false },
  },
  USAGE,
)
const BETS = Number(values.bets)
const RETENTION_MS = Number(values['retention-ms'])
if (!Number.isSafeInteger(BETS) || BETS < 1_000 || BETS > 5_000_000)
  usageError(`--bets: ${values.bets}`, USAGE)
if (!Number.isSafeInteger(RETENTION_MS) || RETENTION_MS < 1)
  usageError(`--retention-ms: ${values['retention-ms']}`, USAGE)
const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) usageError('run with node --expose-gc (npm run bench:fold-memory does)', USAGE)

/** Ledger time between two bets: the run spans three retentions. */
const STEP_MS = Math.max(1, Math.ceil((3 * RETENTION_MS) / BETS))

const collect = () => {
  // Twice: one collection may leave what the first freed for the next.
  gc?.()
  gc?.()
}

function run(retentionMs: number, settle: boolean) {
  const fold = createLedgerFold(undefined, { betRetentionMs: retentionMs })
  let seq = 0
  for (let u = 0; u < USERS; u++)
    fold.apply({ type: 'deposit', id: `dep-${u}`, userId: `user-${u}`, amountCents: 1_000_000_000 }, ++seq)
  collect()
  const before = process.memoryUsage().heapUsed
  const started = performance.now()
  for (let i = 0; i < BETS; i++) {
    const userId = `user-${i % USERS}`
    const id = `bet-${i}-abcdefgh`
    const placedAtMs = T0 + i * STEP_MS
    const stamp = `${placedAtMs}.000000.api-1+++++++++++++++++++`
    fold.apply(
      {
        type: 'bet',
        id,
        userId,
        gameId: `match-${i % 500}`,
        marketId: `p${i % 200}-winner`,
        selectionId: 'home',
        stakeCents: 100,
        odds: 1_900,
        policy: 'any',
        stamp,
        placedAtMs,
      },
      ++seq,
    )
    if (settle)
      fold.apply({ type: 'settlement', id: settlementIdOf(id), betId: id, userId, outcome: 'lost' }, ++seq)
    if ((i + 1) % 100_000 === 0)
      console.error(`  retention ${retentionMs} ms: ${i + 1} of ${BETS} bets folded`)
  }
  const foldUs = ((performance.now() - started) * 1000) / BETS
  collect()
  const heapBytes = process.memoryUsage().heapUsed - before
  const held = fold.betsHeld()
  let snapshotBytes: number | null = null
  try {
    snapshotBytes = JSON.stringify(fold.toJSON()).length
  } catch (error) {
    // Past V8's longest string (2^29 - 24 characters): such a fold cannot be checkpointed.
    if (!(error instanceof RangeError)) throw error
  }
  return { retentionMs, settled: settle, held, heapBytes, foldUs, snapshotBytes }
}

interface Row {
  readonly retentionMs: number
  readonly settled: boolean
  readonly held: number
  readonly heapBytes: number
  readonly foldUs: number
  /** Null when its JSON is longer than a string can be. */
  readonly snapshotBytes: number | null
}

if (values.only !== undefined) {
  console.log(JSON.stringify(run(Number(values.only), !values.open)))
} else {
  console.log(`${BETS} bets of ${USERS} users, ${STEP_MS} ms of ledger time apart`)
  // Each fold in a process of its own, so that none measures what another left on the heap.
  const longest = BETS * STEP_MS * 10
  const folds = [
    { retentionMs: longest, open: false },
    { retentionMs: RETENTION_MS, open: false },
    { retentionMs: longest, open: true },
  ]
  const rows = folds.map(({ retentionMs, open }): Row => {
    console.log(
      `  folding with a retention of ${retentionMs} ms, the bets ${open ? 'left open' : 'settled at once'}`,
    )
    const out = execFileSync(
      process.execPath,
      [
        '--expose-gc',
        '--import',
        'tsx',
        fileURLToPath(import.meta.url),
        '--bets',
        String(BETS),
        '--retention-ms',
        String(RETENTION_MS),
        '--only',
        String(retentionMs),
        ...(open ? ['--open'] : []),
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
    )
    return JSON.parse(out.trim().split('\n').pop() as string) as Row
  })
  console.log(
    '\nretention ms | bets | bets held at the end | heap MiB (per bet held) | fold us per bet (and settlement) | snapshot JSON MiB',
  )
  for (const r of rows)
    console.log(
      `${r.retentionMs} | ${r.settled ? 'settled' : 'open'} | ${r.held} | ${(r.heapBytes / 1024 ** 2).toFixed(1)} (${Math.round(r.heapBytes / Math.max(1, r.held))} B) | ${r.foldUs.toFixed(1)} | ${r.snapshotBytes === null ? 'over the longest string' : (r.snapshotBytes / 1024 ** 2).toFixed(1)}`,
    )
}
