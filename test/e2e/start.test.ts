// The end-to-end test is `npm start` itself: the same script brings up a 3-server cluster, a
// trader with a simulated match, two API nodes, two settlement nodes, the gateway and bettors, runs for a
// bounded time, and stops. It proves that bets are placed, turn final and are settled, that the
// ledger sums, and that the script leaves no process behind and exits 0.

import { spawnSync } from 'node:child_process'
import t from 'tap'

const DURATION_S = 10
const TIMEOUT_MS = 120_000

t.test('npm start runs the whole stack and stops cleanly', async (t) => {
  const run = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      'scripts/start-stack.ts',
      '--duration',
      String(DURATION_S),
      '--time-scale',
      '3',
      '--bettors',
      '8',
      '--logs',
      'delete',
      '--port',
      '0',
    ],
    {
      encoding: 'utf8',
      timeout: TIMEOUT_MS,
    },
  )
  t.equal(run.status, 0, `exit code (stderr: ${run.stderr.slice(-2_000)})`)
  const out = run.stdout
  t.match(out, /cluster ready/)
  t.match(
    out,
    /page: http:\/\/127\.0\.0\.1:\d+\/ \(log in as "demo"/,
    'the gateway is up and its page address printed',
  )
  t.match(out, /t\+\d+s \d+ games, points up to \d+ \| bets \d+/, 'progress lines')
  const placed = Number(/summary: (\d+) bets placed/.exec(out)?.[1] ?? 0)
  const finals = Number(/ {2}final: (\d+)/.exec(out)?.[1] ?? 0)
  const won = Number(/ {2}settled:won: (\d+)/.exec(out)?.[1] ?? 0)
  const lost = Number(/ {2}settled:lost: (\d+)/.exec(out)?.[1] ?? 0)
  t.ok(placed > 20, `${placed} bets placed`)
  t.ok(finals >= placed * 0.9, `${finals} of ${placed} bets reached a final verdict before the stop`)
  t.ok(won + lost > 0, `${won + lost} accepted bets settled`)
  t.match(out, /ledger sums: yes/)
  t.notMatch(out, /error:LEDGER_UNAVAILABLE/)
  t.notMatch(out, /node logs kept in/, 'the run directory was removed')
})
