// Proves that the gateway's options are documented as they are declared: the gateway's table in
// docs/configuration.md is the one the generator prints from gateway/options.ts, and every bound in
// gateway/limits.ts is an option.

import { readFileSync } from 'node:fs'
import t from 'tap'
import { DEFAULT_GATEWAY_LIMITS } from '../../gateway/limits.ts'
import { options } from '../../gateway/options.ts'
import { renderOptionsMarkdown } from '../../nodes/fabric/config.ts'

t.test('docs/configuration.md lists the gateway options as declared', async (t) => {
  const doc = readFileSync('docs/configuration.md', 'utf8')
  const table = `### Gateway (\`gateway/main.ts\`)\n\n${renderOptionsMarkdown(options)}`
  t.ok(doc.includes(table), 'regenerate the section with `npx tsx scripts/config-docs.ts`')
})

t.test('every gateway limit is an option with its default', async (t) => {
  for (const [name, value] of Object.entries(DEFAULT_GATEWAY_LIMITS)) {
    const spec = (options as Record<string, { default?: unknown }>)[name]
    t.equal(spec?.default, value, name)
  }
})
