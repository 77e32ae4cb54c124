/**
 * Feeds that are not simulated: a replay of a recorded feed file (JSON lines of
 * `{"afterMs": n, "event": {...}}`, each delay counted from the previous line), and a manual feed
 * that a caller drives event by event (tests, operator tools).
 */

import { readFileSync } from 'node:fs'
import { type FeedAdapter, type FeedEvent, parseFeedEvent } from './feed.ts'

export const REPLAY_LINES_MAX = 1_000_000
export const REPLAY_DELAY_MS_MAX = 3_600_000

export interface ReplayStep {
  readonly afterMs: number
  readonly event: FeedEvent
}

/** Parse a recorded feed; a bad line is an error naming its line number. */
export function parseRecording(text: string): ReplayStep[] {
  const lines = text.split('\n').filter((line) => line.trim() !== '')
  if (lines.length > REPLAY_LINES_MAX)
    throw new RangeError(`a recording holds at most ${REPLAY_LINES_MAX} lines`)
  return lines.map((line, index) => {
    let value: { afterMs?: unknown; event?: unknown }
    try {
      value = JSON.parse(line)
    } catch {
      throw new SyntaxError(`line ${index + 1}: not JSON`)
    }
    const event = parseFeedEvent(value.event)
    const afterMs = value.afterMs
    if (event === null) throw new SyntaxError(`line ${index + 1}: not a feed event`)
    if (
      !Number.isSafeInteger(afterMs) ||
      (afterMs as number) < 0 ||
      (afterMs as number) > REPLAY_DELAY_MS_MAX
    ) {
      throw new SyntaxError(`line ${index + 1}: afterMs must be an integer in 0..${REPLAY_DELAY_MS_MAX}`)
    }
    return { afterMs: afterMs as number, event }
  })
}

export function createReplayFeed(path: string, timeScale = 1): FeedAdapter {
  const steps = parseRecording(readFileSync(path, 'utf8'))
  let timer: NodeJS.Timeout | null = null
  return {
    name: `replay(${path})`,
    start(emit, resume) {
      const skipped = (event: FeedEvent) =>
        resume !== undefined &&
        (event.type === 'match-start' || ('point' in event && event.point <= resume.afterPoint))
      let index = 0
      while (steps[index] !== undefined && skipped((steps[index] as ReplayStep).event)) index++
      const next = () => {
        const step = steps[index++]
        if (step === undefined) return
        timer = setTimeout(() => {
          emit(step.event)
          next()
        }, step.afterMs / timeScale)
      }
      next()
    },
    stop() {
      if (timer) clearTimeout(timer)
    },
  }
}

export interface ManualFeed extends FeedAdapter {
  emit(event: FeedEvent): void
}

export function createManualFeed(): ManualFeed {
  let sink: ((event: FeedEvent) => void) | null = null
  return {
    name: 'manual',
    start(emit) {
      sink = emit
    },
    stop() {
      sink = null
    },
    emit(event) {
      if (sink === null) throw new Error('the manual feed is not started')
      sink(event)
    },
  }
}
