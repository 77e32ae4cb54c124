/**
 * Waiting with a deadline: tests never sleep for a fixed time, they poll until what they wait for
 * holds or the deadline passes, and then say what they waited for and what they last saw.
 */

import { setTimeout as delay } from 'node:timers/promises'

/** Short enough to add little to a real wait, long enough not to hammer a server that is starting. */
export const POLL_INTERVAL_MS = 100

export interface PollOptions {
  timeoutMs: number
  /** Runs before each attempt; throw to give up early, e.g. when a process that must run has died. */
  check?: () => void
  /** Appended to the timeout error, e.g. server logs. */
  context?: () => string
}

/**
 * Calls `attempt` every POLL_INTERVAL_MS until it returns a value other than undefined.
 * Errors from `attempt` count as "not yet"; the last one is reported if the deadline passes.
 */
export async function pollUntil<T>(
  what: string,
  attempt: () => Promise<T | undefined>,
  options: PollOptions,
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs
  let last = 'no attempt finished'
  for (;;) {
    options.check?.()
    try {
      const value = await attempt()
      if (value !== undefined) return value
      last = 'not yet'
    } catch (err) {
      last = describeError(err)
    }
    if (Date.now() >= deadline) {
      const context = options.context ? `\n${options.context()}` : ''
      throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${what} (last: ${last})${context}`)
    }
    await delay(POLL_INTERVAL_MS)
  }
}

export function describeError(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err)
}
