/**
 * A node process started before it can be configured, so that loading its code overlaps the wait
 * for its cluster:
 *
 *   node --import tsx scripts/chaos/warm-main.ts nodes/api/main.ts
 *
 * It imports every module the main imports (most of a node's start is loading and transforming
 * them), then reads the node's environment as one JSON object from stdin, adds it to its own, and
 * imports the main itself, which runs as it would have run alone: the same modules, evaluated in
 * the same order, with the same environment and `process.argv` by the time the main's body runs. A
 * stdin closed without an environment (its launcher gave up on it, or died) ends the process.
 */

import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'

/**
 * The modules a main imports for their values, in order: `import ... from '...'` and
 * `import '...'` (multi-line lists included); `import type` loads nothing at run time.
 */
const STATIC_IMPORT = /^import\s+(?!type\s)(?:[^'";]*?\sfrom\s*)?['"]([^'"]+)['"]/gm

const mainArg = process.argv[2]
if (mainArg === undefined) {
  console.error('usage: warm-main.ts <path of a node main>')
  process.exit(2)
}
const mainPath = resolve(mainArg)
const mainUrl = pathToFileURL(mainPath)
for (const match of readFileSync(mainUrl, 'utf8').matchAll(STATIC_IMPORT)) {
  const specifier = match[1] as string
  await import(specifier.startsWith('.') ? new URL(specifier, mainUrl).href : specifier)
}
const envText = await readStdin()
if (envText.trim() === '') process.exit(1)
Object.assign(process.env, JSON.parse(envText) as Record<string, string>)
// As if node had been given the main: its options come from argv[2...], and a forking main
// (the gateway's workers) forks argv[1].
process.argv.splice(1, 2, mainPath)
await import(mainUrl.href)

async function readStdin(): Promise<string> {
  let text = ''
  for await (const chunk of process.stdin) text += chunk
  return text
}
