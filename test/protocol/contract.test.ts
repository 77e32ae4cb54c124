// Proves that the wire contract has one home, by reading the source tree: no file outside
// protocol/ spells out a NATS subject or an id grammar, the gateway process never loads the
// settlement node's native SQLite module, the pure modules (crdt/, ledger/, protocol/) reach no
// I/O, and the product code has no import cycle.

import { spawnSync } from 'node:child_process'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import t from 'tap'

const ROOT = resolve(import.meta.dirname, '../..')
const PRODUCT_DIRS = ['crdt', 'ledger', 'nodes', 'gateway', 'protocol', 'scripts', 'bench']
/** The first token of every subject the fabric uses (protocol/subjects.ts). */
const SUBJECT_ROOTS = ['bets', 'admin', 'ledger', 'fabric', 'heartbeat', 'trader', 'clock']
const SUBJECT_LITERAL = new RegExp(`['\`](${SUBJECT_ROOTS.join('|')})\\.[a-z*>$]`)
/** The character classes of the wire's id grammars (protocol/ids.ts). */
const ID_CLASSES = ['[A-Za-z0-9_.:', '[A-Za-z0-9_-]{1,', '[A-Za-z0-9][A-Za-z0-9_.:-]', '[a-z0-9][a-z0-9._-]']

function sourceFiles(dir: string): string[] {
  const files: string[] = []
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) files.push(...sourceFiles(path))
    else if (name.endsWith('.ts')) files.push(path)
  }
  return files
}

/** Code without comments: a doc comment may name a subject, code may not build one. */
function codeOf(file: string): string {
  return readFileSync(file, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .split('\n')
    .map((line) => line.replace(/^\s*\/\/.*$/, ''))
    .join('\n')
}

/** Every module `file` imports: relative paths resolved, packages by name. */
function importsOf(file: string, typesToo: boolean): string[] {
  const found: string[] = []
  for (const match of codeOf(file).matchAll(
    /^(import|export)(\s+type)?[^'"]*?from\s+'([^']+)'|^import\s+'([^']+)'/gm,
  )) {
    if (match[2] && !typesToo) continue
    const spec = (match[3] ?? match[4]) as string
    found.push(spec.startsWith('.') ? resolve(dirname(file), spec) : spec)
  }
  return found
}

const files = PRODUCT_DIRS.flatMap((dir) => sourceFiles(join(ROOT, dir)))

t.test('no file outside protocol/ spells out a subject', async (t) => {
  const offenders = files
    .filter((file) => !relative(ROOT, file).startsWith('protocol/'))
    .filter((file) => SUBJECT_LITERAL.test(codeOf(file)))
    .map((file) => relative(ROOT, file))
  t.same(offenders, [], 'subjects come from protocol/subjects.ts')
})

t.test('no file outside protocol/ and the CRDT core writes an id grammar', async (t) => {
  const offenders = files
    .filter((file) => !/^(protocol|crdt)\//.test(relative(ROOT, file)))
    .filter((file) => ID_CLASSES.some((idClass) => codeOf(file).includes(idClass)))
    .map((file) => relative(ROOT, file))
  t.same(offenders, [], 'id grammars come from protocol/ids.ts')
})

t.test('docs/errors.md is generated from protocol/errors.ts and current', async (t) => {
  const generated = spawnSync(process.execPath, ['--import', 'tsx', 'scripts/errors-docs.ts'], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  })
  t.equal(generated.status, 0, generated.stderr)
  t.equal(
    readFileSync(join(ROOT, 'docs/errors.md'), 'utf8'),
    generated.stdout,
    'regenerate with the command it names',
  )
})

t.test('the gateway process does not load the settlement node’s SQLite module', async (t) => {
  const seen = new Set<string>()
  const packages = new Set<string>()
  const walk = (file: string) => {
    if (seen.has(file)) return
    seen.add(file)
    for (const spec of importsOf(file, false)) {
      if (spec.startsWith('/')) walk(spec)
      else packages.add(spec)
    }
  }
  walk(join(ROOT, 'gateway/main.ts'))
  t.ok(seen.size > 10, `${seen.size} modules reached from gateway/main.ts`)
  t.notOk(packages.has('better-sqlite3'), 'better-sqlite3 is not among them')
  t.notOk(
    [...seen].some((file) => relative(ROOT, file).startsWith('nodes/settlement/')),
    'nor any settlement module',
  )
})

t.test('the product code has no import cycle', async (t) => {
  const graph = new Map(
    files.map((file) => [file, importsOf(file, true).filter((spec) => spec.startsWith('/'))]),
  )
  const cycles: string[] = []
  const state = new Map<string, 'open' | 'done'>()
  const visit = (file: string, path: string[]) => {
    if (state.get(file) === 'done') return
    if (state.get(file) === 'open') {
      cycles.push([...path.slice(path.indexOf(file)), file].map((f) => relative(ROOT, f)).join(' -> '))
      return
    }
    state.set(file, 'open')
    for (const next of graph.get(file) ?? []) visit(next, [...path, file])
    state.set(file, 'done')
  }
  for (const file of files) visit(file, [])
  t.same(cycles, [], 'no module imports itself through others')
})

t.test('crdt/, ledger/ and protocol/ are pure: they import only each other and no I/O', async (t) => {
  const PURE_DIRS = ['crdt', 'ledger', 'protocol']
  /** The packages a pure module may use: hashing and the two CRDT libraries. */
  const PURE_PACKAGES = ['node:crypto', 'yjs', '@automerge/automerge']
  const outside: string[] = []
  for (const file of files.filter((file) => PURE_DIRS.includes(relative(ROOT, file).split('/')[0] ?? ''))) {
    for (const spec of importsOf(file, true)) {
      const allowed = spec.startsWith('/')
        ? PURE_DIRS.includes(relative(ROOT, spec).split('/')[0] ?? '')
        : PURE_PACKAGES.includes(spec)
      if (!allowed)
        outside.push(`${relative(ROOT, file)} imports ${spec.startsWith('/') ? relative(ROOT, spec) : spec}`)
    }
  }
  t.same(outside, [], 'no pure module imports a node, the gateway, or an I/O package')
})

t.test('a game id is one subject token: the trader refuses one with a dot, the gateway too', async (t) => {
  const { anchored, GAME_ID_SOURCE } = await import('../../protocol/ids.ts')
  const { gameIdsOf } = await import('../../nodes/trader/options.ts')
  const pattern = anchored(GAME_ID_SOURCE)
  t.ok(
    gameIdsOf({ gameId: 'x', gameIds: [], games: 500 }).every((id) => pattern.test(id)),
    'match-1 to match-500 are game ids',
  )
  for (const id of ['a.b', '.a', 'a*', 'a>', 'a b', ''])
    t.notOk(pattern.test(id), `${JSON.stringify(id)} is not: it would not be one subject token`)
  const { parseClientFrame } = await import('../../gateway/protocol.ts')
  const subscribe = (gameId: string) => parseClientFrame(JSON.stringify({ type: 'subscribe', gameId }))
  t.notOk('problem' in subscribe('match-7'), 'the gateway takes a subscription to match-7')
  t.ok('problem' in subscribe('a.b'), 'and refuses one to a.b')
})
