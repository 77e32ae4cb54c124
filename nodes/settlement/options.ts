/** The settlement process's options (beside the common ones in nodes/fabric/node-main.ts). */

import { defineOptions } from '../fabric/config.ts'

export const options = defineOptions({
  database: {
    type: 'string',
    default: 'settlement.db',
    env: 'SETTLEMENT_DATABASE',
    flag: '--database',
    doc: 'path of the SQLite projection (rebuilt from the ledger on start)',
  },
})
