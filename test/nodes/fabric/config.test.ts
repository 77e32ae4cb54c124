// Proves the option schema of nodes/fabric/config.ts: one declaration gives a typed, frozen
// configuration with flag > env > default precedence, every problem reported at once in one
// ConfigError, --help, the help and markdown renderings, and a clear exit for a real main.ts.

import { fileURLToPath } from 'node:url'
import t from 'tap'
import {
  ConfigError,
  defineOptions,
  describeOptions,
  HelpRequested,
  type OptionsValue,
  parseConfig,
  renderOptionsMarkdown,
} from '../../../nodes/fabric/config.ts'
import { runScript } from '../../helpers/run-script.ts'

const schema = defineOptions({
  opsPort: {
    type: 'integer',
    default: 9100,
    min: 0,
    max: 65_535,
    env: 'FABRIC_OPS_PORT',
    flag: '--ops-port',
    doc: 'Port of the ops HTTP server',
  },
  staleFeedMs: {
    type: 'number',
    default: 2.5,
    min: 0.5,
    env: 'FABRIC_STALE_FEED_MS',
    flag: '--stale-feed-ms',
    doc: 'How old the feed may get before markets suspend',
  },
  natsUrl: {
    type: 'string',
    required: true,
    pattern: /nats:\/\/[^\s,]+/,
    env: 'FABRIC_NATS_URL',
    flag: '--nats-url',
    doc: 'NATS server to connect to',
  },
  nodeName: {
    type: 'string',
    env: 'FABRIC_NODE_NAME',
    flag: '--node-name',
    doc: 'Name in logs; unset means the hostname',
  },
  regions: {
    type: 'list',
    default: ['eu'],
    pattern: /[a-z]+/,
    env: 'FABRIC_REGIONS',
    flag: '--regions',
    doc: 'Regions this node serves',
  },
  backend: {
    type: 'enum',
    values: ['yjs', 'automerge'],
    default: 'yjs',
    env: 'FABRIC_BACKEND',
    flag: '--backend',
    doc: 'CRDT backend',
  },
  killSwitch: {
    type: 'boolean',
    default: false,
    env: 'FABRIC_KILL_SWITCH',
    flag: '--kill-switch',
    doc: 'Start with every market suspended',
  },
})

type Config = OptionsValue<typeof schema>
const NATS = { FABRIC_NATS_URL: 'nats://localhost:4222' }

function parse(argv: string[], env: Record<string, string | undefined> = NATS): Config {
  return parseConfig(schema, { argv, env })
}

function problemsOf(argv: string[], env: Record<string, string | undefined> = NATS): readonly string[] {
  try {
    parse(argv, env)
  } catch (error) {
    if (error instanceof ConfigError) return error.problems
    throw error
  }
  throw new Error('expected a ConfigError')
}

t.test('defaults apply when neither flag nor env is given', async (t) => {
  // With only the required option set, every other option takes its declared default, the
  // optional one without a default is undefined, and the result and its lists are frozen.
  const config = parse([])
  t.same(config, {
    opsPort: 9100,
    staleFeedMs: 2.5,
    natsUrl: 'nats://localhost:4222',
    nodeName: undefined,
    regions: ['eu'],
    backend: 'yjs',
    killSwitch: false,
  })
  t.ok(Object.isFrozen(config))
  t.ok(Object.isFrozen(config.regions))
  t.ok(Object.isFrozen(schema) && Object.isFrozen(schema.regions.default), 'the schema is frozen too')
})

t.test('env overrides defaults, flags override env, in both flag syntaxes', async (t) => {
  // The same option is set from env then from a flag: each wins over the level below it, and
  // `--flag value` and `--flag=value` parse alike. An empty env variable counts as unset.
  const env = { ...NATS, FABRIC_OPS_PORT: '9200', FABRIC_NODE_NAME: 'trader-1', FABRIC_STALE_FEED_MS: '' }
  t.equal(parse([], env).opsPort, 9200)
  t.equal(parse([], env).nodeName, 'trader-1')
  t.equal(parse([], env).staleFeedMs, 2.5)
  t.equal(parse(['--ops-port', '9300'], env).opsPort, 9300)
  t.equal(parse(['--ops-port=9400'], env).opsPort, 9400)
  t.equal(parse(['--stale-feed-ms', '1e3'], env).staleFeedMs, 1000)
  t.equal(parse(['--node-name=a=b'], env).nodeName, 'a=b', 'only the first = splits')
  t.equal(parse(['--nats-url', 'nats://flag:4222'], env).natsUrl, 'nats://flag:4222')
})

t.test('booleans: --flag, --no-flag, --flag=value and env words', async (t) => {
  // Every accepted spelling is parsed on its own, and the flag forms beat the env.
  t.equal(parse(['--kill-switch']).killSwitch, true)
  t.equal(parse(['--no-kill-switch'], { ...NATS, FABRIC_KILL_SWITCH: 'true' }).killSwitch, false)
  t.equal(parse(['--kill-switch=true']).killSwitch, true)
  t.equal(parse(['--kill-switch=false']).killSwitch, false)
  for (const [text, value] of [
    ['true', true],
    ['false', false],
    ['1', true],
    ['0', false],
    ['TRUE', true],
  ] as const) {
    t.equal(parse([], { ...NATS, FABRIC_KILL_SWITCH: text }).killSwitch, value, `env ${text}`)
  }
  t.match(problemsOf([], { ...NATS, FABRIC_KILL_SWITCH: 'yes' }), [
    'killSwitch (--kill-switch, FABRIC_KILL_SWITCH): expected true, false, 1 or 0, got "yes" from env FABRIC_KILL_SWITCH',
  ])
  t.match(problemsOf(['--no-kill-switch=true']), [/--no-kill-switch takes no value/])
  t.match(
    problemsOf(['--kill-switch', 'on']),
    [/unexpected argument "on"/],
    'a boolean flag never eats a value',
  )
})

t.test('lists are comma-separated, trimmed, and checked item by item', async (t) => {
  // Blanks around items and empty items disappear; the pattern applies to each item.
  t.same(parse(['--regions', ' eu, us ,,ap ']).regions, ['eu', 'us', 'ap'])
  t.same(parse(['--regions=']).regions, [])
  t.same(parse([], { ...NATS, FABRIC_REGIONS: 'us' }).regions, ['us'])
  t.match(problemsOf(['--regions=eu,US']), [
    /regions \(--regions, FABRIC_REGIONS\): expected a comma-separated list of items matching .*, got "eu,US"/,
  ])
})

t.test('enums accept only their values', async (t) => {
  // A declared value parses to itself; anything else names the values expected.
  t.equal(parse(['--backend', 'automerge']).backend, 'automerge')
  t.same(problemsOf(['--backend=crdt']), [
    'backend (--backend, FABRIC_BACKEND): expected one of yjs, automerge, got "crdt" from flag --backend',
  ])
})

t.test('numbers are checked for form and range', async (t) => {
  // Integers reject fractions, words and values out of range; numbers reject non-numeric text and
  // values below their minimum. Each message states the range.
  const port = 'opsPort (--ops-port, FABRIC_OPS_PORT): expected an integer from 0 to 65535'
  t.same(problemsOf(['--ops-port=65536']), [`${port}, got "65536" from flag --ops-port`])
  t.same(problemsOf(['--ops-port=1.5']), [`${port}, got "1.5" from flag --ops-port`])
  t.same(problemsOf(['--ops-port=0x10']), [`${port}, got "0x10" from flag --ops-port`])
  t.same(problemsOf(['--ops-port=99999999999999999999']), [
    `${port}, got "99999999999999999999" from flag --ops-port`,
  ])
  t.equal(parse(['--ops-port=0']).opsPort, 0)
  const stale = 'staleFeedMs (--stale-feed-ms, FABRIC_STALE_FEED_MS): expected a number of at least 0.5'
  t.same(problemsOf(['--stale-feed-ms', '0.1']), [`${stale}, got "0.1" from flag --stale-feed-ms`])
  t.same(problemsOf(['--stale-feed-ms', 'Infinity']), [`${stale}, got "Infinity" from flag --stale-feed-ms`])
})

t.test('every problem is reported at once, in one ConfigError', async (t) => {
  // Six different mistakes, from flags and env, come back together, command-line problems first
  // and then option by option; nothing stops at the first.
  const env = { FABRIC_BACKEND: 'crdt', FABRIC_OPS_PORT: 'many' }
  const error = t.throws(() => parse(['--stale-feed-ms=x', '--kill-switch', '--kill-switch', 'stray'], env))
  t.ok(error instanceof ConfigError)
  t.same((error as ConfigError).problems, [
    'killSwitch (--kill-switch, FABRIC_KILL_SWITCH): given twice on the command line, as flag --kill-switch "true" and flag --kill-switch "true"',
    'unexpected argument "stray"; options are --flag value or --flag=value, and booleans --flag, --no-flag or --flag=false',
    'opsPort (--ops-port, FABRIC_OPS_PORT): expected an integer from 0 to 65535, got "many" from env FABRIC_OPS_PORT',
    'staleFeedMs (--stale-feed-ms, FABRIC_STALE_FEED_MS): expected a number of at least 0.5, got "x" from flag --stale-feed-ms',
    'natsUrl (--nats-url, FABRIC_NATS_URL): required, set FABRIC_NATS_URL or pass --nats-url (expected a string matching /nats:\\/\\/[^\\s,]+/)',
    'backend (--backend, FABRIC_BACKEND): expected one of yjs, automerge, got "crdt" from env FABRIC_BACKEND',
  ])
  t.match((error as Error).message, /^invalid configuration:\n {2}killSwitch /)
})

t.test('unknown flags, missing values and repeated flags are problems', async (t) => {
  // A near-miss suggests the flag meant, without also reporting its value as stray; a flag without
  // its value is reported once, not again as a missing required option.
  t.same(problemsOf(['--ops-prot', '9'])[0], 'unknown flag --ops-prot; did you mean --ops-port?')
  t.equal(problemsOf(['--ops-prot', '9']).length, 1)
  t.same(problemsOf(['--verbose']), ['unknown flag --verbose; --help lists the options'])
  t.same(problemsOf(['--nats-url'], {}), [
    'natsUrl (--nats-url, FABRIC_NATS_URL): --nats-url needs a value, expected a string matching /nats:\\/\\/[^\\s,]+/',
  ])
  t.match(problemsOf(['--ops-port', '--kill-switch']), [/--ops-port needs a value/])
  t.match(problemsOf(['--ops-port=1', '--ops-port', '2']), [
    /opsPort .*: given twice on the command line, as flag --ops-port "1" and flag --ops-port "2"/,
  ])
})

t.test('--help wins over everything else and lists every option', async (t) => {
  // Even with bad flags and a missing required option, --help (or -h) throws HelpRequested whose
  // text names each flag, env variable, default and doc.
  for (const flag of ['--help', '-h']) {
    const error = t.throws(() => parse(['--bogus', flag], {}))
    t.ok(error instanceof HelpRequested, flag)
  }
  const help = describeOptions(schema)
  t.equal((t.throws(() => parse(['--help'])) as HelpRequested).text, help)
  for (const spec of Object.values(schema)) {
    t.match(help, spec.flag)
    t.match(help, spec.env)
    t.match(help, spec.doc)
  }
  t.match(help, '--ops-port <integer>\n      env FABRIC_OPS_PORT, default 9100\n')
  t.match(help, 'Port of the ops HTTP server. Expects an integer from 0 to 65535.')
  t.match(help, '--kill-switch, --no-kill-switch')
  t.match(help, '--backend <yjs|automerge>')
  t.match(help, 'env FABRIC_NATS_URL, required')
  t.match(help, 'env FABRIC_NODE_NAME, unset by default')
})

t.test('renderOptionsMarkdown gives one table row per option', async (t) => {
  // The table has a header, a separator and one row per option with its flag, env and default;
  // a | inside a cell is escaped so the table keeps its columns.
  const markdown = renderOptionsMarkdown(schema)
  const lines = markdown.trimEnd().split('\n')
  t.equal(lines.length, 2 + Object.keys(schema).length)
  t.equal(lines[0], '| option | flag | env | default | doc |')
  t.match(lines, [
    '|',
    '|',
    '| `opsPort` | `--ops-port` | `FABRIC_OPS_PORT` | `9100` | Port of the ops HTTP server. Expects',
  ])
  t.match(markdown, '| `natsUrl` | `--nats-url` | `FABRIC_NATS_URL` | required |')
  t.match(markdown, '| `regions` | `--regions` | `FABRIC_REGIONS` | `eu` |')
  const piped = defineOptions({
    mode: { type: 'string', default: 'a', pattern: /a|b/, env: 'X_MODE', flag: '--mode', doc: 'Mode' },
  })
  t.match(renderOptionsMarkdown(piped), 'a string matching /a\\|b/')
})

t.test('defineOptions rejects a schema that contradicts itself', async (t) => {
  // Programming errors in a schema fail at definition with every contradiction listed, whether or
  // not the type checker saw them (the casts stand for JavaScript callers).
  const error = t.throws(() =>
    defineOptions({
      a: { type: 'integer', default: 3, min: 5, max: 1, env: 'lower', flag: '-a', doc: '' },
      b: { type: 'string', default: 'x', required: true, env: 'FABRIC_B', flag: '--no-b', doc: 'b' },
      c: { type: 'string', min: 1, env: 'FABRIC_B', flag: '--c', doc: 'c' } as never,
      d: { type: 'enum', values: [], env: 'FABRIC_D', flag: '--c', doc: 'd' },
      e: { type: 'string', pattern: /x/g, env: 'FABRIC_E', flag: '--help', doc: 'e' },
    }),
  ) as Error
  t.ok(error instanceof TypeError)
  for (const expected of [
    'option "a": flag "-a" must be --kebab-case',
    'option "a": env "lower" must be UPPER_SNAKE_CASE',
    'option "a": doc is empty',
    'option "a": default 3 is not an integer from 5 to 1',
    'option "a": min 5 is above max 1',
    'option "b": a required option has no default',
    'option "b": flag "--no-b" must be --kebab-case, not --help nor --no-*',
    'option "c": "min" does not apply to type string',
    'option "d": values is empty',
    'option "e": pattern must not use the g or y flag',
    'option "e": flag "--help"',
    'options c and d share the flag --c',
    'options b and c share the env FABRIC_B',
  ]) {
    t.match(error.message, expected)
  }
})

t.test('the configuration type is inferred from the schema', async (t) => {
  // Compile-time proof, checked by `tsc --noEmit`: the assignments below type-check only if each
  // option's type is inferred exactly, and each @ts-expect-error fails the build if the error it
  // expects disappears (a widened enum, an optional option typed as always set, a bad default).
  const config = parse([])
  const port: number = config.opsPort
  const backend: 'yjs' | 'automerge' = config.backend
  const regions: readonly string[] = config.regions
  const kill: boolean = config.killSwitch
  const url: string = config.natsUrl
  const name: string | undefined = config.nodeName
  // @ts-expect-error an option without a default that is not required may be unset
  const required: string = config.nodeName
  // @ts-expect-error the enum is its values, not any string
  const narrow: 'yjs' = config.backend
  t.throws(() => {
    // @ts-expect-error the configuration is read-only, for the type checker and at run time
    config.opsPort = 1
  })
  const expected = {
    opsPort: 1,
    staleFeedMs: 1,
    natsUrl: 'x',
    nodeName: undefined,
    regions: [],
    backend: 'automerge',
    killSwitch: true,
  } satisfies Config
  t.throws(() =>
    defineOptions({
      // @ts-expect-error an enum default must be one of its values
      mode: { type: 'enum', values: ['a', 'b'], default: 'c', env: 'X_MODE', flag: '--mode', doc: 'Mode' },
    }),
  )
  t.throws(() =>
    defineOptions({
      // @ts-expect-error min applies to numbers only
      name: { type: 'string', min: 1, env: 'X_NAME', flag: '--name', doc: 'Name' },
    }),
  )
  t.ok([port, backend, regions, kill, url, name, required, narrow, expected])
})

const FIXTURE = fileURLToPath(new URL('./fixtures/config-main.ts', import.meta.url))

const runFixture = (args: string[], env: Record<string, string> = {}) => runScript(FIXTURE, args, env)

t.test('loadConfigOrExit in a real process: exit 1 with the problems, 0 with help', async (t) => {
  // Runs fixtures/config-main.ts under `node --import tsx`, as a deployed main.ts would run: a bad
  // flag and a bad env value exit 1 with one stderr line per problem; --help prints the help on
  // stdout and exits 0; a good configuration reaches the program.
  const bad = await runFixture(['--ops-prot', '1'], { FABRIC_REGION: '', FABRIC_OPS_PORT: '70000' })
  t.equal(bad.code, 1)
  t.equal(bad.stdout, '')
  t.equal(
    bad.stderr,
    'fixture-node: invalid configuration:\n' +
      '  unknown flag --ops-prot; did you mean --ops-port?\n' +
      '  opsPort (--ops-port, FABRIC_OPS_PORT): expected an integer from 0 to 65535, got "70000" from env FABRIC_OPS_PORT\n',
  )
  const help = await runFixture(['--help'])
  t.equal(help.code, 0)
  t.match(help.stdout, /^Usage: fixture-node \[options\]\n\nOptions/)
  t.match(help.stdout, '--ops-port <integer>')
  const good = await runFixture(['--region=us'], { FABRIC_OPS_PORT: '9200' })
  t.equal(good.code, 0)
  t.same(JSON.parse(good.stdout), { opsPort: 9200, region: 'us' })
})
