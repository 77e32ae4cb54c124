// The chaos runs' short profile is part of the suite: every scenario (an API node killed or
// paused, a settlement node killed, the trader paused, the trader killed or paused while a standby
// takes over, a nats-server killed, links cut, a region stopped, a clock skewed beyond the drift
// bound) must keep every invariant, as `npm run chaos` checks them.

import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'

const TIMEOUT_MS = 480_000

t.test('npm run chaos (short profile) passes every scenario', async (t) => {
  const reports = mkdtempSync(join(tmpdir(), 'chaos-test-'))
  t.teardown(() => rmSync(reports, { recursive: true, force: true }))
  const run = spawnSync(
    process.execPath,
    ['--import', 'tsx', 'scripts/chaos/run.ts', '--profile', 'short', '--report-dir', reports],
    { encoding: 'utf8', timeout: TIMEOUT_MS },
  )
  const summary = /^chaos: (.*)$/m.exec(run.stdout)?.[1] ?? ''
  t.equal(
    run.status,
    0,
    `exit code; summary: ${summary}\n${run.stdout.slice(-4_000)}\n${run.stderr.slice(-2_000)}`,
  )
  const results = summary.split(', ').filter(Boolean)
  t.ok(results.length >= 6, `every scenario ran (${results.length})`)
  for (const result of results) t.match(result, / PASS$/, result)
  t.notMatch(run.stdout, /^FAIL /m, 'no invariant failed')
})
