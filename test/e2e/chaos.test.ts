// The chaos runs' short profile is part of the suite: every scenario (an API node killed or
// paused, a settlement node killed, the trader paused, killed and restarted, or killed or paused
// while a standby takes over, a hostile client's colliding ids, an attacker mixing every hostile
// class with the bettors through the gateway, a nats-server killed, links cut, a region stopped, an
// API node's clock 8 s ahead or behind) must keep every invariant, as `npm run chaos` checks them,
// and exactly the scenarios listed here, which the runner must list, must run. The one exception is
// a run the runner calls FORKED: after a server or link fault, the servers' own replicas of a stream
// held different logs (nats-server 2.9.10 does this after some partitions), so no node could keep
// the checks on it; its report is printed in full.

import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'

const TIMEOUT_MS = 900_000
/** Every scenario, in the runner's order: one added to the runner is added here too. */
const SCENARIOS = [
  'api-kill',
  'settlement-kill',
  'api-pause',
  'trader-restart',
  'colliding-ids',
  'hostile-mix',
  'trader-pause',
  'trader-takeover',
  'trader-zombie',
  'server-kill',
  'isolate-server',
  'split-region',
  'api-cut-off',
  'trader-cut-off',
  'bridge-partition',
  'lossy-links',
  'region-outage',
  'region-cut',
  'clock-ahead',
  'clock-behind',
]
/** How much of a failed scenario's output the failure message shows. */
const SECTION_CHARS = 8_000

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
    `exit code; summary: ${summary}\n${failedSections(run.stdout)}\n${run.stderr.slice(-2_000)}`,
  )
  const results = summary.split(', ').filter(Boolean)
  t.same(listedScenarios(), SCENARIOS, 'the runner lists exactly these scenarios')
  t.same(
    results.map((result) => result.split(' ')[0]),
    SCENARIOS,
    'every scenario ran, in order',
  )
  // FORKED: a check broke while the servers' own replicas of a stream held different logs after a
  // server or link fault (nats-server 2.9.10 was seen to do this after partitions): the run says
  // which stream and what each server holds, and the reason is printed here in full.
  for (const result of results) t.match(result, / (PASS|FORKED)$/, result)
  const forked = sections(run.stdout).filter((section) => /^\[[^\]]*\] FORKED /m.test(section))
  for (const section of forked)
    t.comment(`a stream forked by the servers:\n${section.slice(0, SECTION_CHARS)}`)
  for (const section of sections(run.stdout).filter((each) => /^\[[^\]]*\] PASS /m.test(each)))
    t.notMatch(section, /^FAIL /m, `no invariant failed in ${section.split(':')[0]}`)
})

/** The run's output, a section per scenario (each opens with `== name:`). */
function sections(stdout: string): string[] {
  return stdout.split(/^(?=== )/m).filter((section) => /^== /.test(section))
}

/** The scenarios `scripts/chaos/run.ts --help` lists. */
function listedScenarios(): string[] {
  const help = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/chaos/run.ts', '--help'], {
    encoding: 'utf8',
    timeout: 60_000,
  })
  return /--scenarios (\S+)/.exec(help.stdout + help.stderr)?.[1]?.split(',') ?? []
}

/**
 * What a failed run printed for each scenario that failed (each run opens with `== name:`), so
 * that the reason is in the test's output; the end of the output when no scenario section failed.
 */
function failedSections(stdout: string): string {
  const failed = sections(stdout)
    .filter((section) => /^\[[^\]]*\] FAIL /m.test(section))
    .map((section) => section.slice(0, SECTION_CHARS))
  return failed.length > 0 ? failed.join('\n') : stdout.slice(-SECTION_CHARS)
}
