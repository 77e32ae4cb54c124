// Proves that the simulated tennis feed says it is alive every FEED_ALIVE_EVERY_MS of real time,
// whatever its pace: at a slow pace (here a point's betting window of 80 s) nothing else happens
// between a point's start and its serve, and without it the trader's stale-feed guard suspended
// every market 8 s into its window. Once stopped, the feed says nothing more. A replayed or
// provider event `{type: 'alive'}` parses as one.

import t from 'tap'
import type { FeedEvent } from '../../../nodes/trader/feed.ts'
import { parseFeedEvent } from '../../../nodes/trader/feed.ts'
import { createSimulatedTennisFeed, FEED_ALIVE_EVERY_MS } from '../../../nodes/trader/simulated-tennis.ts'
import { waitFor } from '../../helpers/wait.ts'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

t.test('a slow feed says it is alive while it waits for the serve, and nothing once stopped', async (t) => {
  const feed = createSimulatedTennisFeed({ seed: 1, timeScale: 0.05, points: 0, betWindowMs: 4_000 })
  const events: FeedEvent['type'][] = []
  feed.start((event) => events.push(event.type))
  await waitFor('two alive events', () => events.filter((type) => type === 'alive').length >= 2)
  t.same(events.slice(0, 2), ['match-start', 'point-start'])
  t.ok(
    events.slice(2).every((type) => type === 'alive'),
    'only alive events while the serve is far off (80 s at this pace)',
  )
  feed.stop()
  const heard = events.length
  // Waiting out a period can only miss a late event, never invent one.
  await sleep(FEED_ALIVE_EVERY_MS + 200)
  t.equal(events.length, heard, 'nothing after stop')
})

t.test('an alive event parses', async (t) => {
  t.same(parseFeedEvent({ type: 'alive' }), { type: 'alive' })
  t.same(parseFeedEvent({ type: 'alive', point: 'x' }), { type: 'alive' }, 'extra fields are dropped')
})
