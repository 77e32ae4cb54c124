/**
 * A chaos stack's node processes, each started warm: `node --import tsx warm-main.ts <main>` loads
 * the node's code (about a second of CPU, most of a node's start) and waits for its environment,
 * which launch() hands it. Warming every node while its servers form, or a node's replacement
 * while a fault lasts, leaves a start only the node's own: connecting, following its streams,
 * becoming ready.
 *
 * In the background (`background: true`), a process warms at the lowest CPU priority, so that it
 * takes only the CPU time that the processes at work leave, and gets its normal priority back, on
 * every thread, when it is launched: from then on it runs exactly as a node started directly.
 *
 * A process warmed and never launched is killed by killAll(); one whose launcher dies reads the
 * end of its stdin and exits. Processes are signalled only by their PID.
 */

import type { ChildProcess, SpawnOptions } from 'node:child_process'
import { closeSync, openSync, readdirSync } from 'node:fs'
import { getPriority, setPriority } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const WARM_MAIN = fileURLToPath(new URL('./warm-main.ts', import.meta.url))
/** The lowest CPU priority: a process this nice runs when nothing else wants the CPU. */
const BACKGROUND_NICENESS = 19
/**
 * Passes over a launched process's threads to give each its priority back: a thread inherits the
 * priority of the thread that starts it, so a pass repeats until it finds none left to change.
 */
const RESTORE_PASSES_MAX = 10

/** How a node's process is started: directly, or inside its network lab host. */
export type Spawner = (
  name: string,
  command: string,
  args: readonly string[],
  options: SpawnOptions,
) => ChildProcess

export interface WarmNodesOptions {
  /** Where each node's log goes, as `<name>.log`, appended to across its restarts. */
  readonly dir: string
  /** Each node's main module, by node name. */
  readonly mains: ReadonlyMap<string, string>
  readonly spawn: Spawner
  /** Warm at the lowest CPU priority; only a process allowed to raise a priority (root) can. */
  readonly background: boolean
}

export interface WarmNodes {
  /** Starts a process for `name` to load its code now, unless one is waiting already. */
  warm(name: string): void
  /** Hands `name`'s waiting process (or a new one) its environment: the node starts. */
  launch(name: string, env: Readonly<Record<string, string>>): ChildProcess
  /** SIGKILLs every process started here, warming or launched, and waits for their exits. */
  killAll(): Promise<void>
}

export function createWarmNodes(options: WarmNodesOptions): WarmNodes {
  /** This process's own priority: the one a launched node runs at, as if started directly. */
  const normalPriority = getPriority()
  const waiting = new Map<string, ChildProcess>()
  const started = new Set<ChildProcess>()
  const start = (name: string): ChildProcess => {
    const main = options.mains.get(name)
    if (main === undefined) throw new RangeError(`no main for node ${name}`)
    const log = openSync(join(options.dir, `${name}.log`), 'a')
    const child = options.spawn(name, process.execPath, ['--import', 'tsx', WARM_MAIN, main], {
      env: process.env,
      stdio: ['pipe', log, log],
    })
    closeSync(log)
    started.add(child)
    child.once('exit', () => started.delete(child))
    // A process that died before its environment came is seen by its exit, not by this write.
    child.stdin?.on('error', () => {})
    return child
  }
  return {
    warm(name) {
      if (waiting.has(name)) return
      const child = start(name)
      // Threads started before this call keep the normal priority: no harm, launch() sets it anyway.
      if (options.background && child.pid !== undefined) setPriority(child.pid, BACKGROUND_NICENESS)
      waiting.set(name, child)
    },
    launch(name, env) {
      const warmed = waiting.get(name)
      waiting.delete(name)
      const child = warmed ?? start(name)
      if (warmed !== undefined && options.background && child.pid !== undefined)
        restorePriority(child.pid, normalPriority)
      child.stdin?.end(JSON.stringify(env))
      return child
    },
    async killAll() {
      waiting.clear()
      await Promise.all([...started].map(killAndWait))
    },
  }
}

/** Every thread of process `pid` at `priority`; throws if threads keep appearing at another. */
function restorePriority(pid: number, priority: number): void {
  for (let pass = 1; pass <= RESTORE_PASSES_MAX; pass++) {
    let changed = false
    for (const thread of threadsOf(pid)) {
      try {
        if (getPriority(thread) === priority) continue
        setPriority(thread, priority)
        changed = true
      } catch (error) {
        // A thread that ended between the listing and the call needs nothing.
        if ((error as { info?: { code?: string } }).info?.code !== 'ESRCH') throw error
      }
    }
    if (!changed) return
  }
  throw new Error(`process ${pid} still has threads below its priority after ${RESTORE_PASSES_MAX} passes`)
}

/** The thread ids of a process (Linux); none once it has exited. */
function threadsOf(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).map(Number)
  } catch {
    return []
  }
}

/** SIGKILL `child` by its PID, resolving once it has exited. */
function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGKILL')
  return exited
}
