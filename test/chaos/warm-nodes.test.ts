// Proves that a node started warm (scripts/chaos/warm-nodes.ts, warm-main.ts) runs as one started
// directly, only sooner: a fixture main's imports load while it waits (a type-only import is left
// alone), its body runs only once it is launched, with the environment launch() hands it and
// `process.argv` naming the main. In the background (root only) a waiting process is at the lowest
// priority, and a launched one at the launcher's on every thread. A process whose stdin ends without
// an environment exits, and killAll() ends waiting and launched processes alike.

import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { getPriority, tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { createWarmNodes, type Spawner } from '../../scripts/chaos/warm-nodes.ts'

const WARM_MAIN = fileURLToPath(new URL('../../scripts/chaos/warm-main.ts', import.meta.url))
/** Loading tsx and a main takes about a second; a loaded 2-core machine may take several. */
const LOAD_TIMEOUT_MS = 30_000
const POLL_MS = 50
const LOWEST_PRIORITY = 19

/** A main that reports what it was started with, and a dependency that marks when it is loaded. */
function writeFixture(dir: string): string {
  writeFileSync(
    join(dir, 'dependency.ts'),
    "import { writeFileSync } from 'node:fs'\nexport const loadedAt = Date.now()\nwriteFileSync(new URL('./loaded', import.meta.url), '')\n",
  )
  writeFileSync(
    join(dir, 'main.ts'),
    [
      "import { readdirSync } from 'node:fs'",
      "import { getPriority } from 'node:os'",
      // Type-only: warm-main must not import it (there is no such module to import).
      "import type { Nothing } from './types-only.ts'",
      "import { loadedAt } from './dependency.ts'",
      "const priorities = readdirSync('/proc/self/task').map((thread) => getPriority(Number(thread)))",
      'const nothing: Nothing | null = null',
      'console.log(JSON.stringify({ value: process.env.WARM_TEST_VALUE, argv: process.argv.slice(1), loadedAt, ranAt: Date.now(), priorities, nothing }))',
      '',
    ].join('\n'),
  )
  return join(dir, 'main.ts')
}

function fixture(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'warm-nodes-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const main = writeFixture(dir)
  return { dir, main, loaded: join(dir, 'loaded'), log: join(dir, 'node.log') }
}

async function waitFor(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + LOAD_TIMEOUT_MS
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await delay(POLL_MS)
  }
}

async function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) await once(child, 'exit')
}

/** A spawner that keeps every process it starts in `spawned`. */
function spawnRecorded(spawned: ChildProcess[]): Spawner {
  return (_name, command, args, options) => {
    const child = spawn(command, args, options)
    spawned.push(child)
    return child
  }
}

t.test('a warmed node loads its imports, then runs as started directly once launched', async (t) => {
  const { dir, main, loaded, log } = fixture(t)
  const nodes = createWarmNodes({
    dir,
    mains: new Map([['node', main]]),
    spawn: (_name, command, args, options) => spawn(command, args, options),
    background: false,
  })
  t.teardown(() => nodes.killAll())
  nodes.warm('node')
  await waitFor('the main’s imports to load', () => existsSync(loaded))
  t.equal(readFileSync(log, 'utf8'), '', 'nothing of the main runs before the launch')
  const launchedAt = Date.now()
  const child = nodes.launch('node', { WARM_TEST_VALUE: 'handed at launch' })
  await exited(child)
  t.equal(child.exitCode, 0, 'the main ran to its end')
  const report = JSON.parse(readFileSync(log, 'utf8'))
  t.equal(report.value, 'handed at launch', 'it has the environment launch() handed it')
  t.same(report.argv, [main], 'process.argv names the main and nothing else')
  t.ok(report.loadedAt < launchedAt && report.ranAt >= launchedAt, 'loaded before, ran after the launch')
})

const rootOnly = process.getuid?.() === 0 ? {} : { skip: 'only root may give a process its priority back' }

t.test(
  'in the background a node warms at the lowest priority and runs at the launcher’s',
  rootOnly,
  async (t) => {
    const { dir, main, loaded, log } = fixture(t)
    const spawned: ChildProcess[] = []
    const nodes = createWarmNodes({
      dir,
      mains: new Map([['node', main]]),
      spawn: spawnRecorded(spawned),
      background: true,
    })
    t.teardown(() => nodes.killAll())
    nodes.warm('node')
    await waitFor('the main’s imports to load', () => existsSync(loaded))
    t.equal(getPriority(spawned[0]?.pid), LOWEST_PRIORITY, 'it waits at the lowest priority')
    const child = nodes.launch('node', {})
    await exited(child)
    const report = JSON.parse(readFileSync(log, 'utf8'))
    t.ok(report.priorities.length > 1, 'the node has several threads')
    t.same(
      report.priorities,
      report.priorities.map(() => getPriority()),
      'every thread runs at the launcher’s priority',
    )
  },
)

t.test('a node without an environment exits; killAll ends waiting and launched nodes', async (t) => {
  const { dir, main, loaded } = fixture(t)
  const orphan = spawn(process.execPath, ['--import', 'tsx', WARM_MAIN, main], {
    stdio: ['pipe', 'ignore', 'ignore'],
  })
  orphan.stdin?.end()
  await exited(orphan)
  t.equal(orphan.exitCode, 1, 'its stdin ended without an environment: it exits')
  // It loaded the imports too: the next node's loading must mark them again.
  rmSync(loaded)
  const spawned: ChildProcess[] = []
  const nodes = createWarmNodes({
    dir,
    mains: new Map([
      ['waiting', main],
      ['launched', join(dir, 'lingering.ts')],
    ]),
    spawn: spawnRecorded(spawned),
    background: false,
  })
  writeFileSync(join(dir, 'lingering.ts'), 'setInterval(() => {}, 1_000)\n')
  nodes.warm('waiting')
  nodes.launch('launched', {})
  await waitFor('the waiting node’s imports to load', () => existsSync(loaded))
  await nodes.killAll()
  t.ok(
    spawned.every((child) => child.signalCode === 'SIGKILL'),
    'both were killed',
  )
})
