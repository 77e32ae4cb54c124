/**
 * Node processes as separate OS processes (the stack launcher, the benchmark, the kill test):
 * `node --import tsx nodes/<kind>/main.ts` with its identity in the environment, and a bounded
 * stop that signals only the processes it was given, by PID.
 */

import { type ChildProcess, spawn } from 'node:child_process'

export const STOP_GRACE_MS = 10_000

export interface NodeProcessOptions {
  readonly main: string
  readonly nodeId: string
  readonly region: string
  readonly shards: number
  /** Further environment (config of the node); wins over the inherited environment. */
  readonly env?: Readonly<Record<string, string>>
  /** Extra arguments for node itself, e.g. --cpu-prof. */
  readonly nodeArgs?: readonly string[]
}

/** Start a node process; its stdout and stderr are pipes the caller reads or drains. */
export function spawnNodeProcess(options: NodeProcessOptions): ChildProcess {
  return spawn(process.execPath, [...(options.nodeArgs ?? []), '--import', 'tsx', options.main], {
    env: {
      ...process.env,
      FABRIC_NODE_ID: options.nodeId,
      FABRIC_REGION: options.region,
      FABRIC_LEDGER_SHARDS: String(options.shards),
      // Stop with the launcher, whatever way it ends (see nodes/fabric/node-main.ts).
      FABRIC_EXIT_WITH_PARENT: '1',
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
}

const hasExited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null

/** SIGTERM each process, SIGKILL those still running after the grace period; resolves when all exited. */
export async function stopProcesses(
  children: readonly ChildProcess[],
  graceMs = STOP_GRACE_MS,
): Promise<void> {
  await Promise.all(
    children.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (hasExited(child)) return resolve()
          const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
          child.once('exit', () => {
            clearTimeout(timer)
            resolve()
          })
          child.kill('SIGTERM')
        }),
    ),
  )
}
