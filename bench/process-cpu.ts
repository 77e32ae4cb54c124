/**
 * CPU time of processes by kind, read from /proc: user plus system time, which the kernel sums over
 * every thread of a process, in clock ticks of `getconf CLK_TCK`. A process that has exited reads
 * as its last sample would have; a benchmark whose process died fails elsewhere. And the resident
 * memory of a process (VmRSS in /proc/<pid>/status).
 */

import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

function clockTicksPerSecond(): number {
  const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim())
  if (!Number.isSafeInteger(ticks) || ticks <= 0) throw new Error(`getconf CLK_TCK printed ${ticks}`)
  return ticks
}
export const CLOCK_TICKS_PER_SECOND = clockTicksPerSecond()

/** CPU time `pid` has used, user plus system, in microseconds; undefined once it is gone. */
export function cpuUs(pid: number): number | undefined {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // The command name (field 2) is in parentheses and may hold spaces; utime and stime are fields
  // 14 and 15, so the 12th and 13th after it.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const ticks = Number(fields[11]) + Number(fields[12])
  if (!Number.isFinite(ticks)) throw new Error(`/proc/${pid}/stat has no utime and stime: ${stat}`)
  return (ticks * 1e6) / CLOCK_TICKS_PER_SECOND
}

/** The pids of each kind of process, read when sampled (a restarted server gets a new pid). */
export type ProcessKinds<K extends string> = Readonly<Record<K, () => readonly (number | undefined)[]>>

export type CpuSample<K extends string> = Readonly<Record<K, ReadonlyMap<number, number>>>

/** Every process's CPU time so far, by kind and pid. */
export function sampleCpu<K extends string>(kinds: ProcessKinds<K>): CpuSample<K> {
  const sample = {} as Record<K, Map<number, number>>
  for (const kind of Object.keys(kinds) as K[]) {
    const byPid = new Map<number, number>()
    for (const pid of kinds[kind]()) {
      const used = pid === undefined ? undefined : cpuUs(pid)
      if (pid !== undefined && used !== undefined) byPid.set(pid, used)
    }
    sample[kind] = byPid
  }
  return sample
}

/** CPU microseconds each kind used between two samples; a process missing from either adds nothing. */
export function cpuBetween<K extends string>(before: CpuSample<K>, after: CpuSample<K>): Record<K, number> {
  const used = {} as Record<K, number>
  for (const kind of Object.keys(after) as K[]) {
    let sum = 0
    for (const [pid, us] of after[kind]) {
      const start = before[kind].get(pid)
      if (start !== undefined) sum += us - start
    }
    used[kind] = sum
  }
  return used
}

/** The resident set size of `pid` in bytes (VmRSS of /proc/<pid>/status); undefined once it is gone. */
export function rssBytes(pid: number): number | undefined {
  let status: string
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return undefined
  }
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]
  return kib === undefined ? undefined : Number(kib) * 1024
}
