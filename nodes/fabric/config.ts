/**
 * Typed configuration for every process of the platform.
 *
 * Each option is declared once, with its type, default, environment variable, command-line flag
 * and a doc line. The same declaration parses and validates the configuration, prints `--help` and
 * renders the options table of docs/configuration.md, so the three cannot disagree. A process reads
 * its whole configuration at start and, when anything is wrong, stops with every problem listed at
 * once: fixing a deployment one error per restart is slow, and a bad value found late, at its first
 * use, is worse.
 *
 * Precedence is command-line flag, then environment variable, then default. An empty environment
 * variable counts as unset, because compose files and shells write `NAME=` to clear a value.
 */

export type OptionType = 'string' | 'integer' | 'number' | 'boolean' | 'list' | 'enum'

interface OptionBase {
  /** Environment variable, upper case: `FABRIC_OPS_PORT`. */
  readonly env: string
  /** Command-line flag, kebab case: `--ops-port`. */
  readonly flag: string
  /** One line for `--help` and the docs. */
  readonly doc: string
  /** For options without a sensible default: the process refuses to start without a value. */
  readonly required?: boolean
}

/** Keys of other option types, forbidden so that `min` on a string option is a compile error. */
type Without<K extends string> = { readonly [P in K]?: never }

export interface StringOption extends OptionBase, Without<'min' | 'max' | 'values'> {
  readonly type: 'string'
  readonly default?: string
  /** The whole value must match; the pattern is anchored for you. */
  readonly pattern?: RegExp
}

export interface IntegerOption extends OptionBase, Without<'pattern' | 'values'> {
  readonly type: 'integer'
  readonly default?: number
  readonly min?: number
  readonly max?: number
}

export interface NumberOption extends OptionBase, Without<'pattern' | 'values'> {
  readonly type: 'number'
  readonly default?: number
  readonly min?: number
  readonly max?: number
}

export interface BooleanOption extends OptionBase, Without<'min' | 'max' | 'pattern' | 'values'> {
  readonly type: 'boolean'
  readonly default?: boolean
}

/** Comma-separated strings; blanks around items are trimmed and empty items dropped. */
export interface ListOption extends OptionBase, Without<'min' | 'max' | 'values'> {
  readonly type: 'list'
  readonly default?: readonly string[]
  /** Every item must match; the pattern is anchored for you. */
  readonly pattern?: RegExp
}

export interface EnumOption extends OptionBase, Without<'min' | 'max' | 'pattern'> {
  readonly type: 'enum'
  readonly values: readonly string[]
  readonly default?: string
}

export type OptionSpec = StringOption | IntegerOption | NumberOption | BooleanOption | ListOption | EnumOption
export type OptionsSchema = Readonly<Record<string, OptionSpec>>

type PlainValue<S> = S extends { readonly type: 'string' }
  ? string
  : S extends { readonly type: 'integer' | 'number' }
    ? number
    : S extends { readonly type: 'boolean' }
      ? boolean
      : S extends { readonly type: 'list' }
        ? readonly string[]
        : S extends { readonly type: 'enum'; readonly values: readonly (infer V)[] }
          ? V
          : never

/** An option with a default or marked required always has a value; any other may be unset. */
export type OptionValue<S> = S extends { readonly default: unknown } | { readonly required: true }
  ? PlainValue<S>
  : PlainValue<S> | undefined

export type OptionsValue<S extends OptionsSchema> = { readonly [K in keyof S]: OptionValue<S[K]> }

/** Where a configuration comes from; `process.argv.slice(2)` and `process.env` in a main.ts. */
export interface ConfigSource {
  readonly argv: readonly string[]
  readonly env: Readonly<Record<string, string | undefined>>
}

/** The configuration given is invalid; `problems` holds one sentence per problem. */
export class ConfigError extends Error {
  readonly problems: readonly string[]

  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n${problems.map((problem) => `  ${problem}`).join('\n')}`)
    this.name = 'ConfigError'
    this.problems = Object.freeze([...problems])
  }
}

/** `--help` was given; `text` is the help to print before exiting successfully. */
export class HelpRequested extends Error {
  readonly text: string

  constructor(text: string) {
    super('help requested')
    this.name = 'HelpRequested'
    this.text = text
  }
}

type Value = string | number | boolean | readonly string[]

const FLAG_PATTERN = /^--[a-z][a-z0-9]*(-[a-z0-9]+)*$/
const ENV_PATTERN = /^[A-Z][A-Z0-9_]*$/
const HELP_FLAGS: ReadonlySet<string> = new Set(['--help', '-h'])
const NEGATION_PREFIX = '--no-'
const INTEGER_PATTERN = /^[+-]?\d+$/
const NUMBER_PATTERN = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/
const BOOLEAN_WORDS: ReadonlyMap<string, boolean> = new Map([
  ['true', true],
  ['false', false],
  ['1', true],
  ['0', false],
])
/** An unknown flag this few edits away from a known one is probably a typo of it. */
const SUGGESTION_EDITS_MAX = 2
const COMMON_KEYS = ['type', 'env', 'flag', 'doc', 'required', 'default']
const KEYS_BY_TYPE: Readonly<Record<OptionType, readonly string[]>> = {
  string: [...COMMON_KEYS, 'pattern'],
  integer: [...COMMON_KEYS, 'min', 'max'],
  number: [...COMMON_KEYS, 'min', 'max'],
  boolean: COMMON_KEYS,
  list: [...COMMON_KEYS, 'pattern'],
  enum: [...COMMON_KEYS, 'values'],
}

// Values -----------------------------------------------------------------------------------------

function fullMatch(pattern: RegExp | undefined, text: string): boolean {
  return pattern === undefined || new RegExp(`^(?:${pattern.source})$`, pattern.flags).test(text)
}

function inRange(spec: IntegerOption | NumberOption, value: number): boolean {
  return (spec.min === undefined || value >= spec.min) && (spec.max === undefined || value <= spec.max)
}

function splitList(text: string): readonly string[] {
  return text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '')
}

/** Text as written on the command line or in the environment, to a typed value; undefined if it is not one. */
function decode(spec: OptionSpec, text: string): Value | undefined {
  switch (spec.type) {
    case 'string':
    case 'enum':
      return text
    case 'integer':
      return INTEGER_PATTERN.test(text) ? Number(text) : undefined
    case 'number':
      return NUMBER_PATTERN.test(text) ? Number(text) : undefined
    case 'boolean':
      return BOOLEAN_WORDS.get(text.toLowerCase())
    case 'list':
      return splitList(text)
  }
}

/** Whether a typed value satisfies the option; used for parsed values and declared defaults alike. */
function isValid(spec: OptionSpec, value: unknown): boolean {
  switch (spec.type) {
    case 'string':
      return typeof value === 'string' && fullMatch(spec.pattern, value)
    case 'integer':
      return typeof value === 'number' && Number.isSafeInteger(value) && inRange(spec, value)
    case 'number':
      return typeof value === 'number' && Number.isFinite(value) && inRange(spec, value)
    case 'boolean':
      return typeof value === 'boolean'
    case 'list':
      return (
        Array.isArray(value) &&
        value.every((item) => typeof item === 'string' && fullMatch(spec.pattern, item))
      )
    case 'enum':
      return typeof value === 'string' && spec.values.includes(value)
  }
}

function rangeText(spec: IntegerOption | NumberOption): string {
  if (spec.min !== undefined && spec.max !== undefined) return ` from ${spec.min} to ${spec.max}`
  if (spec.min !== undefined) return ` of at least ${spec.min}`
  if (spec.max !== undefined) return ` of at most ${spec.max}`
  return ''
}

/** What an option accepts, in words, for problems, help and docs. */
export function describeExpected(spec: OptionSpec): string {
  switch (spec.type) {
    case 'string':
      return spec.pattern === undefined ? 'a string' : `a string matching ${spec.pattern}`
    case 'integer':
      return `an integer${rangeText(spec)}`
    case 'number':
      return `a number${rangeText(spec)}`
    case 'boolean':
      return 'true, false, 1 or 0'
    case 'list':
      return `a comma-separated list${spec.pattern === undefined ? '' : ` of items matching ${spec.pattern}`}`
    case 'enum':
      return `one of ${spec.values.join(', ')}`
  }
}

/** A value as one would write it in the environment. */
function formatValue(value: Value): string {
  const text = Array.isArray(value) ? value.join(',') : String(value)
  return text === '' ? '""' : text
}

function formatDefault(spec: OptionSpec): string {
  if (spec.default !== undefined) return formatValue(spec.default)
  return spec.required === true ? 'required' : 'unset'
}

function label(name: string, spec: OptionSpec): string {
  return `${name} (${spec.flag}, ${spec.env})`
}

// Schema -----------------------------------------------------------------------------------------

function optionProblems(name: string, spec: OptionSpec): string[] {
  const at = `option ${JSON.stringify(name)}`
  if (!Object.hasOwn(KEYS_BY_TYPE, spec.type)) return [`${at}: unknown type ${JSON.stringify(spec.type)}`]
  const allowed = KEYS_BY_TYPE[spec.type]
  const problems = Object.keys(spec)
    .filter((key) => !allowed.includes(key))
    .map((key) => `${at}: ${JSON.stringify(key)} does not apply to type ${spec.type}`)
  if (!FLAG_PATTERN.test(spec.flag) || HELP_FLAGS.has(spec.flag) || spec.flag.startsWith(NEGATION_PREFIX))
    problems.push(`${at}: flag ${JSON.stringify(spec.flag)} must be --kebab-case, not --help nor --no-*`)
  if (!ENV_PATTERN.test(spec.env))
    problems.push(`${at}: env ${JSON.stringify(spec.env)} must be UPPER_SNAKE_CASE`)
  if (typeof spec.doc !== 'string' || spec.doc.trim() === '') problems.push(`${at}: doc is empty`)
  if ('default' in spec && spec.default === undefined) problems.push(`${at}: default is undefined; omit it`)
  if (spec.default !== undefined && spec.required === true)
    problems.push(`${at}: a required option has no default; drop one of them`)
  if (spec.default !== undefined && !isValid(spec, spec.default))
    problems.push(`${at}: default ${formatValue(spec.default)} is not ${describeExpected(spec)}`)
  return [...problems, ...typeProblems(at, spec)]
}

function typeProblems(at: string, spec: OptionSpec): string[] {
  const problems: string[] = []
  if ((spec.type === 'integer' || spec.type === 'number') && (spec.min ?? 0) > (spec.max ?? Infinity))
    problems.push(`${at}: min ${spec.min} is above max ${spec.max}`)
  if ((spec.type === 'string' || spec.type === 'list') && spec.pattern !== undefined) {
    if (spec.pattern.global || spec.pattern.sticky)
      problems.push(`${at}: pattern must not use the g or y flag`)
  }
  if (spec.type === 'enum') {
    const values = spec.values
    if (values.length === 0) problems.push(`${at}: values is empty`)
    if (new Set(values).size !== values.length) problems.push(`${at}: values has duplicates`)
    if (values.some((value) => value === '')) problems.push(`${at}: values has an empty string`)
  }
  return problems
}

function duplicateProblems(schema: OptionsSchema, key: 'flag' | 'env'): string[] {
  const owners = new Map<string, string>()
  const problems: string[] = []
  for (const [name, spec] of Object.entries(schema)) {
    const owner = owners.get(spec[key])
    if (owner !== undefined) problems.push(`options ${owner} and ${name} share the ${key} ${spec[key]}`)
    else owners.set(spec[key], name)
  }
  return problems
}

/** Schemas already checked; a schema is checked once, by whichever function sees it first. */
const checkedSchemas = new WeakSet<object>()

function assertSchema(schema: OptionsSchema): void {
  if (checkedSchemas.has(schema)) return
  const problems = [
    ...Object.entries(schema).flatMap(([name, spec]) => optionProblems(name, spec)),
    ...duplicateProblems(schema, 'flag'),
    ...duplicateProblems(schema, 'env'),
  ]
  if (problems.length > 0) throw new TypeError(`invalid option schema:\n  ${problems.join('\n  ')}`)
  // Frozen, so that the schema cannot drift from what was checked and from the help it renders.
  for (const spec of Object.values(schema)) {
    if (Array.isArray(spec.default)) Object.freeze(spec.default)
    if (spec.type === 'enum') Object.freeze(spec.values)
    Object.freeze(spec)
  }
  checkedSchemas.add(Object.freeze(schema))
}

/**
 * The schema constraint: every option a valid spec, and an enum's default one of its values. The
 * second part turns a default outside the values into a compile error at the default.
 */
type CheckedSchema<S> = {
  readonly [K in keyof S]: S[K] extends { readonly values: readonly (infer V)[]; readonly default: unknown }
    ? Omit<EnumOption, 'default'> & { readonly default: V }
    : OptionSpec
}

/**
 * Declares the options of a process. The schema comes back frozen, with its literal types kept, so
 * that `OptionsValue<typeof schema>` is the exact configuration type. A schema that
 * contradicts itself (a default out of range, two options on one flag) is a programming error and
 * throws a TypeError listing every contradiction.
 */
export function defineOptions<const S extends OptionsSchema & CheckedSchema<S>>(schema: S): S {
  assertSchema(schema)
  return schema
}

// Parsing ----------------------------------------------------------------------------------------

/** A value as given, before decoding, with where it came from for the problem messages. */
interface Given {
  readonly text: string
  readonly source: string
}

interface FlagEntry {
  readonly name: string
  readonly spec: OptionSpec
}

type FlagRead =
  | { readonly name: string; readonly given: Given; readonly consumed: number }
  | { readonly problem: string; readonly consumed: number; readonly name?: string }

interface ScannedArgv {
  readonly help: boolean
  readonly given: ReadonlyMap<string, Given>
  /** Options whose flag already has a problem reported; resolving them would only repeat it. */
  readonly reported: ReadonlySet<string>
  readonly problems: readonly string[]
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1)
      current.push(Math.min((previous[j] as number) + 1, (current[j - 1] as number) + 1, substitution))
    }
    previous = current
  }
  return previous[b.length] as number
}

function unknownFlag(flag: string, flags: ReadonlyMap<string, FlagEntry>): string {
  const nearest = [...flags.keys()]
    .map((known) => ({ known, edits: editDistance(flag, known) }))
    .sort((a, b) => a.edits - b.edits)[0]
  if (nearest !== undefined && nearest.edits <= SUGGESTION_EDITS_MAX)
    return `unknown flag ${flag}; did you mean ${nearest.known}?`
  return `unknown flag ${flag}; --help lists the options`
}

function readValue(
  entry: FlagEntry,
  flag: string,
  inline: string | undefined,
  next: string | undefined,
): FlagRead {
  const source = `flag ${flag}`
  if (inline !== undefined) return { name: entry.name, given: { text: inline, source }, consumed: 0 }
  // A boolean flag never takes the next argument: `--verbose on-call` must not eat `on-call`.
  if (entry.spec.type === 'boolean') return { name: entry.name, given: { text: 'true', source }, consumed: 0 }
  // A value that starts with `--` is almost always the next flag, not a value; `--name=--x` says otherwise.
  if (next === undefined || next.startsWith('--')) {
    const problem = `${label(entry.name, entry.spec)}: ${flag} needs a value, expected ${describeExpected(entry.spec)}`
    return { problem, consumed: 0, name: entry.name }
  }
  return { name: entry.name, given: { text: next, source }, consumed: 1 }
}

function readFlag(flags: ReadonlyMap<string, FlagEntry>, token: string, next: string | undefined): FlagRead {
  if (!token.startsWith('--')) {
    const hint = 'options are --flag value or --flag=value, and booleans --flag, --no-flag or --flag=false'
    return { problem: `unexpected argument ${JSON.stringify(token)}; ${hint}`, consumed: 0 }
  }
  const equals = token.indexOf('=')
  const flag = equals === -1 ? token : token.slice(0, equals)
  const inline = equals === -1 ? undefined : token.slice(equals + 1)
  const entry = flags.get(flag)
  if (entry !== undefined) return readValue(entry, flag, inline, next)
  const negated = flag.startsWith(NEGATION_PREFIX)
    ? flags.get(`--${flag.slice(NEGATION_PREFIX.length)}`)
    : undefined
  if (negated === undefined || negated.spec.type !== 'boolean') {
    // The unknown flag's value, if it had one, would only add a second, confusing problem.
    const value =
      inline === undefined && next !== undefined && !next.startsWith('--') && !HELP_FLAGS.has(next)
    const consumed = value ? 1 : 0
    return { problem: unknownFlag(flag, flags), consumed }
  }
  if (inline !== undefined) {
    const problem = `${label(negated.name, negated.spec)}: ${flag} takes no value, got ${token}`
    return { problem, consumed: 0, name: negated.name }
  }
  return { name: negated.name, given: { text: 'false', source: `flag ${flag}` }, consumed: 0 }
}

function scanArgv(schema: OptionsSchema, argv: readonly string[]): ScannedArgv {
  const flags = new Map(Object.entries(schema).map(([name, spec]) => [spec.flag, { name, spec }]))
  const given = new Map<string, Given>()
  const reported = new Set<string>()
  const problems: string[] = []
  let help = false
  for (let index = 0; index < argv.length; index++) {
    const token = argv[index] as string
    if (HELP_FLAGS.has(token)) {
      help = true
      continue
    }
    const read = readFlag(flags, token, argv[index + 1])
    index += read.consumed
    if ('problem' in read) {
      problems.push(read.problem)
      if (read.name !== undefined) reported.add(read.name)
      continue
    }
    const first = given.get(read.name)
    if (first === undefined) {
      given.set(read.name, read.given)
      continue
    }
    reported.add(read.name)
    const spec = schema[read.name] as OptionSpec
    const both = `${first.source} ${JSON.stringify(first.text)} and ${read.given.source} ${JSON.stringify(read.given.text)}`
    problems.push(`${label(read.name, spec)}: given twice on the command line, as ${both}`)
  }
  return { help, given, reported, problems }
}

type Resolved = { readonly value: Value | undefined } | { readonly problem: string }

function resolveOption(
  name: string,
  spec: OptionSpec,
  flagGiven: Given | undefined,
  source: ConfigSource,
): Resolved {
  const envText = source.env[spec.env]
  const given = flagGiven ?? (envText ? { text: envText, source: `env ${spec.env}` } : undefined)
  if (given === undefined) {
    if (spec.default !== undefined) return { value: spec.default }
    if (spec.required !== true) return { value: undefined }
    const expected = describeExpected(spec)
    return {
      problem: `${label(name, spec)}: required, set ${spec.env} or pass ${spec.flag} (expected ${expected})`,
    }
  }
  const value = decode(spec, given.text)
  if (value === undefined || !isValid(spec, value)) {
    const got = `got ${JSON.stringify(given.text)} from ${given.source}`
    return { problem: `${label(name, spec)}: expected ${describeExpected(spec)}, ${got}` }
  }
  return { value }
}

/**
 * Parses a configuration: flags, then environment, then defaults. Returns the typed configuration,
 * frozen, lists included. Throws HelpRequested on `--help` or `-h`, whatever else is wrong, and
 * otherwise one ConfigError with every problem found.
 */
export function parseConfig<S extends OptionsSchema>(schema: S, source: ConfigSource): OptionsValue<S> {
  assertSchema(schema)
  const scanned = scanArgv(schema, source.argv)
  if (scanned.help) throw new HelpRequested(describeOptions(schema))
  const problems = [...scanned.problems]
  const entries: [string, Value | undefined][] = []
  for (const [name, spec] of Object.entries(schema)) {
    if (scanned.reported.has(name)) continue
    const resolved = resolveOption(name, spec, scanned.given.get(name), source)
    if ('problem' in resolved) problems.push(resolved.problem)
    else
      entries.push([
        name,
        Array.isArray(resolved.value) ? Object.freeze([...resolved.value]) : resolved.value,
      ])
  }
  if (problems.length > 0) throw new ConfigError(problems)
  // Every option was resolved and checked against its spec above, which is what the type promises.
  return Object.freeze(Object.fromEntries(entries)) as OptionsValue<S>
}

// Help and docs ----------------------------------------------------------------------------------

function flagSynopsis(spec: OptionSpec): string {
  switch (spec.type) {
    case 'boolean':
      return `${spec.flag}, ${NEGATION_PREFIX}${spec.flag.slice(2)}`
    case 'enum':
      return `${spec.flag} <${spec.values.join('|')}>`
    case 'list':
      return `${spec.flag} <a,b,...>`
    default:
      return `${spec.flag} <${spec.type}>`
  }
}

function docSentence(spec: OptionSpec): string {
  const doc = spec.doc.trim()
  return `${doc}${/[.!?]$/.test(doc) ? '' : '.'} Expects ${describeExpected(spec)}.`
}

/** The `--help` text: every option with its flag, environment variable, default and doc. */
export function describeOptions(schema: OptionsSchema): string {
  assertSchema(schema)
  const lines = ['Options (a flag overrides its environment variable, which overrides the default):', '']
  for (const spec of Object.values(schema)) {
    lines.push(`  ${flagSynopsis(spec)}`)
    const fallback =
      spec.default !== undefined
        ? `default ${formatDefault(spec)}`
        : spec.required
          ? 'required'
          : 'unset by default'
    lines.push(`      env ${spec.env}, ${fallback}`)
    lines.push(`      ${docSentence(spec)}`)
  }
  lines.push('  --help, -h', '      Print this help and exit.', '')
  return lines.join('\n')
}

function markdownCell(text: string): string {
  return text.replaceAll('|', '\\|').replaceAll('\n', ' ')
}

/** A markdown table of every option, for docs/configuration.md. */
export function renderOptionsMarkdown(schema: OptionsSchema): string {
  assertSchema(schema)
  const rows = Object.entries(schema).map(([name, spec]) => {
    const defaultCell = spec.default === undefined ? formatDefault(spec) : `\`${formatDefault(spec)}\``
    const cells = [`\`${name}\``, `\`${spec.flag}\``, `\`${spec.env}\``, defaultCell, docSentence(spec)]
    return `| ${cells.map(markdownCell).join(' | ')} |`
  })
  return ['| option | flag | env | default | doc |', '|---|---|---|---|---|', ...rows, ''].join('\n')
}

/**
 * For main.ts files: the configuration from `process.argv` and `process.env`, or the end of the
 * process. `--help` prints the help and exits 0; an invalid configuration prints
 * `<name>: invalid configuration:` and one line per problem to stderr and exits 1.
 */
export function loadConfigOrExit<S extends OptionsSchema>(schema: S, name: string): OptionsValue<S> {
  try {
    return parseConfig(schema, { argv: process.argv.slice(2), env: process.env })
  } catch (error) {
    if (error instanceof HelpRequested) {
      process.stdout.write(`Usage: ${name} [options]\n\n${error.text}`)
      process.exit(0)
    }
    if (error instanceof ConfigError) {
      process.stderr.write(
        `${name}: invalid configuration:\n${error.problems.map((p) => `  ${p}\n`).join('')}`,
      )
      process.exit(1)
    }
    throw error
  }
}
