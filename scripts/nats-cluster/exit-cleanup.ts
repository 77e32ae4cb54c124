/**
 * The safety net for a test process that exits without close() (a crash, process.exit): it leaves
 * no server running and no temp dir behind. Only the launcher's own children and dirs are touched,
 * and a child only ever by its PID.
 */

import type { ChildProcess } from 'node:child_process'
import { rmSync } from 'node:fs'
import { rm } from 'node:fs/promises'

/** Server processes started and not yet seen to exit. */
export const liveChildren = new Set<ChildProcess>()
/** Temp dirs made and not yet removed. */
export const liveDirs = new Set<string>()

process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL')
  for (const dir of liveDirs) {
    try {
      rmSync(dir, { recursive: true, force: true })
    } catch {
      // A just-killed server may still be writing; a leftover dir beats failing the exit.
    }
  }
})

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true })
  liveDirs.delete(dir)
}
