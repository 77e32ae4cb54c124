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
  leaderSpreadMs: {
    type: 'integer',
    default: 15_000,
    min: 0,
    max: 3_600_000,
    env: 'SETTLEMENT_LEADER_SPREAD_MS',
    flag: '--leader-spread-ms',
    doc: 'how often to spread the served ledger shards’ stream leaders evenly over the servers (0: never; run it on one settlement node per region)',
  },
})
