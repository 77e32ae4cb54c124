// Proves which node log lines a chaos run takes as the servers contradicting themselves
// (scripts/chaos/node-forks.ts): an append acknowledged at a sequence whose delivered message is
// another, and a delivered message the stream's leader answers differently; one line per stream,
// the first node's. A node's other reasons to refold (entries gone below a purge, a stream behind
// the node) are not forks, nor are lines that are not a node's JSON.

import t from 'tap'
import { forksInLogs } from '../../scripts/chaos/node-forks.ts'

const line = (fields: Record<string, unknown>) => JSON.stringify({ level: 50, time: 1, ...fields })

t.test(
  'two answers of the servers that contradict each other are a fork; other divergences are not',
  async (t) => {
    const logs = new Map([
      [
        'settle-2',
        [
          line({
            stream: 'LEDGER_EU_1',
            seq: 24,
            msg: "stream diverged: the stream's message 24 is not the one this node handled under that sequence",
          }),
          line({
            stream: 'LEDGER_EU_2',
            msg: 'ledger diverged: the stream delivered 9 after 6: entries in between are gone (purged below a checkpoint while this node was behind?)',
          }),
        ].join('\n'),
      ],
      [
        'api-1',
        [
          'RAW stack trace line',
          '{ not json',
          line({
            stream: 'LEDGER_EU_1',
            msg: 'ledger diverged: the stream acknowledged u7/b65 at 39, where the fold holds u7/b23',
          }),
          line({
            stream: 'LEDGER_EU_3',
            msg: 'ledger diverged: the stream acknowledged u3/b2 at 12, where the fold holds a malformed entry',
          }),
          line({ msg: 'ledger diverged: the stream acknowledged u3/b2 at 12, where the fold holds u3/b1' }),
        ].join('\n'),
      ],
    ])
    t.same(forksInLogs(logs), [
      'LEDGER_EU_1: api-1 logged "ledger diverged: the stream acknowledged u7/b65 at 39, where the fold holds u7/b23"',
      'LEDGER_EU_3: api-1 logged "ledger diverged: the stream acknowledged u3/b2 at 12, where the fold holds a malformed entry"',
    ])
    t.same(forksInLogs(new Map([['settle-2', logs.get('settle-2') as string]])), [
      `LEDGER_EU_1: settle-2 logged "stream diverged: the stream's message 24 is not the one this node handled under that sequence"`,
    ])
    t.same(forksInLogs(new Map()), [], 'no logs, no forks')
  },
)
