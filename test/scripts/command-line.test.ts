// Proves that the scripts and benchmarks answer a bad command line with the problem and their
// usage, exit 1 and start nothing, and answer --help with the usage and exit 0.

import { spawnSync } from 'node:child_process'
import t from 'tap'

const run = (script: string, ...args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', script, ...args], { encoding: 'utf8', timeout: 60_000 })

t.test('an unknown option, a bad value and --help', async (t) => {
  const cases: [string, string[], number, RegExp][] = [
    ['scripts/demo.ts', ['--bogus'], 1, /Unknown option '--bogus'\nusage: .*--points/],
    ['bench/bets.ts', ['--rates', 'x'], 1, /out of range\nusage: \[--rates/],
    ['bench/gateway.ts', ['--clients'], 1, /'--clients <value>' argument missing\nusage: --clients/],
    ['scripts/chaos/run.ts', ['--scenarios', 'nope'], 1, /unknown scenarios: nope\nusage: --profile/],
    ['scripts/start-stack.ts', ['--help'], 0, /^usage: .*--bettors/],
    [
      'test/sim/cli.ts',
      ['--writers', '4'],
      1,
      /--writers must be an integer in 1\.\.3.*\nusage: npm run sim/,
    ],
    ['test/sim/cli.ts', ['--help'], 0, /^usage: npm run sim -- .*--skew-ms/],
  ]
  for (const [script, args, status, output] of cases) {
    const result = run(script, ...args)
    t.equal(result.status, status, `${script} ${args.join(' ')}: exit ${status}`)
    t.match(result.stderr + result.stdout, output, `${script} ${args.join(' ')} says why`)
    t.notMatch(result.stderr, /\n\s+at /, 'and prints no stack trace')
  }
})
