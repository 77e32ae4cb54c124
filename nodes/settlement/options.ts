/** The settlement process's options (beside the common ones in nodes/fabric/node-main.ts). */

import { defineOptions } from '../fabric/config.ts'

export const options = defineOptions({
  database: {
    type: 'string',
    default: 'settlement.db',
    env: 'SETTLEMENT_DATABASE',
    flag: '--database',
    doc: 'path of the SQLite projection (kept across restarts; a new one is filled from the ledger, from the shards’ checkpoints on)',
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
  ledgerCheckpointMs: {
    type: 'integer',
    default: 0,
    min: 0,
    max: 86_400_000,
    env: 'SETTLEMENT_LEDGER_CHECKPOINT_MS',
    flag: '--ledger-checkpoint-ms',
    doc: 'how often to store each served ledger shard’s fold as its checkpoint, from which nodes start instead of the shard’s first entry, and purge the stream below this node’s previous one (0, the default: never; give it to one settlement node per region, 300000 say)',
  },
})
