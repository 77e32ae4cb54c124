/**
 * A node process's log as the benchmarks read it: pino writes one JSON object per line on stdout;
 * anything else on it is passed over.
 */

import type { ChildProcess } from 'node:child_process'

/** pino's level number for warnings; errors and fatals are above it. */
export const PINO_WARN = 40

export type LogEntry = Readonly<Record<string, unknown>>

/** Call `onEntry` with each JSON log line the process writes on stdout, in order. */
export function onLogEntries(child: ChildProcess, onEntry: (entry: LogEntry, line: string) => void): void {
  let buffered = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8')
    const lines = buffered.split('\n')
    buffered = lines.pop() ?? ''
    for (const line of lines) {
      let entry: unknown
      try {
        entry = JSON.parse(line)
      } catch {
        continue // not a log line
      }
      if (typeof entry === 'object' && entry !== null) onEntry(entry as LogEntry, line)
    }
  })
}
