// Proves the replay adapter: a recorded feed file plays back its events in order with their
// delays (compressed by the time scale), and a bad recording is refused naming the bad line.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { FeedEvent } from '../../../nodes/trader/feed.ts'
import { createReplayFeed, parseRecording } from '../../../nodes/trader/replay-feed.ts'
import { waitFor } from '../../helpers/wait.ts'

t.test('a recording plays back in order', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'replay-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'match.jsonl')
  const lines = [
    { afterMs: 0, event: { type: 'match-start', home: 'A', away: 'B', server: 'home' } },
    { afterMs: 100, event: { type: 'point-start', point: 1, server: 'home' } },
    { afterMs: 400, event: { type: 'serve', point: 1, second: false } },
    { afterMs: 200, event: { type: 'point-end', point: 1, winner: 'away', ace: false } },
  ]
  writeFileSync(path, lines.map((line) => JSON.stringify(line)).join('\n'))
  const seen: FeedEvent[] = []
  const feed = createReplayFeed(path, 10)
  feed.start((event) => seen.push(event))
  t.teardown(() => feed.stop())
  await waitFor('all events replayed', () => seen.length === 4)
  t.same(
    seen.map((event) => event.type),
    ['match-start', 'point-start', 'serve', 'point-end'],
  )
})

t.test('a bad recording names its bad line', async (t) => {
  t.throws(() => parseRecording('{"afterMs":0,"event":{"type":"match-end"}}\nnot json'), /line 2: not JSON/)
  t.throws(() => parseRecording('{"afterMs":-1,"event":{"type":"match-end"}}'), /line 1: afterMs/)
  t.throws(
    () => parseRecording('{"afterMs":0,"event":{"type":"serve","point":0,"second":false}}'),
    /line 1: not a feed event/,
  )
})
