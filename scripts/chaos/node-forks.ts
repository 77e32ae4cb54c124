/**
 * Forks the nodes saw: two answers of the servers that contradict each other at one sequence of a
 * stream, as a node logged them. A run's own comparison of the replicas (replica-states.ts) sees
 * only what the replicas hold at its end, and a fork can be gone by then: a replica that held
 * another message there caught up, or a purge below a ledger checkpoint removed the sequence. Two
 * contradictions count, each between two answers of the servers, never a node's own reasoning:
 *
 * - `ledger diverged: the stream acknowledged <entry> at <seq>, where the fold holds <other>`: an
 *   append was acknowledged at a sequence whose message, as the stream delivered it, is another;
 * - `stream diverged: the stream's message <seq> is not the one this node handled under that
 *   sequence`: the message delivered at a sequence is not the one the stream's leader answers there.
 *
 * A node that refolds after either is what a fork does to it (fork-attribution.ts). Pure but for
 * reading the logs.
 */

import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'

const CONTRADICTIONS = [
  /^ledger diverged: the stream acknowledged \S+ at \d+, where the fold holds /,
  /^stream diverged: the stream's message \d+ is not the one this node handled under that sequence$/,
]

/** One line per stream a node logged a contradiction on, `<stream>: <node> logged "<message>"`. */
export function forksInLogs(logs: ReadonlyMap<string, string>): string[] {
  const byStream = new Map<string, string>()
  for (const [node, text] of [...logs].sort(([a], [b]) => (a < b ? -1 : 1)))
    for (const line of text.split('\n')) {
      if (!line.startsWith('{')) continue
      let record: { msg?: unknown; stream?: unknown }
      try {
        record = JSON.parse(line) as { msg?: unknown; stream?: unknown }
      } catch {
        continue
      }
      const { msg, stream } = record
      if (typeof msg !== 'string' || typeof stream !== 'string' || byStream.has(stream)) continue
      if (CONTRADICTIONS.some((pattern) => pattern.test(msg)))
        byStream.set(stream, `${stream}: ${node} logged "${msg}"`)
    }
  return [...byStream.values()]
}

/** The logs of `nodes` kept in `dir` as `<node>.log`. */
export function forksInLogDir(dir: string, nodes: readonly string[]): string[] {
  const logs = new Map<string, string>()
  for (const node of nodes) {
    const file = join(dir, `${node}.log`)
    if (existsSync(file)) logs.set(node, readFileSync(file, 'utf8'))
  }
  return forksInLogs(logs)
}
