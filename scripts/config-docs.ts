/** Print every process's options as markdown tables, for docs/configuration.md. */

import { options as gateway } from '../gateway/options.ts'
import { options as api } from '../nodes/api/options.ts'
import { renderOptionsMarkdown } from '../nodes/fabric/config.ts'
import { commonOptions } from '../nodes/fabric/node-main.ts'
import { options as settlement } from '../nodes/settlement/options.ts'
import { options as trader } from '../nodes/trader/options.ts'

for (const [title, schema] of [
  ['Every node', commonOptions],
  ['Trader (`nodes/trader/main.ts`)', trader],
  ['API node (`nodes/api/main.ts`)', api],
  ['Settlement node (`nodes/settlement/main.ts`)', settlement],
  ['Gateway (`gateway/main.ts`)', gateway],
] as const) {
  console.log(`### ${title}\n\n${renderOptionsMarkdown(schema)}`)
}
