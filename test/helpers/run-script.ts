/** Run a TypeScript entry point of the project in a process of its own, to its exit. */

import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export interface ScriptRun {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/**
 * `node --import tsx <script> ...args` from the project's root, with only PATH and `env` in its
 * environment; killed (SIGKILL) if it has not exited within `timeoutMs`.
 */
export function runScript(
  script: string,
  args: readonly string[] = [],
  env: Record<string, string> = {},
  timeoutMs = 60_000,
): Promise<ScriptRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ...env },
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
    })
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    const killer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('error', (error) => {
      clearTimeout(killer)
      reject(error)
    })
    child.on('close', (code) => {
      clearTimeout(killer)
      resolve({ code, stdout, stderr })
    })
  })
}
