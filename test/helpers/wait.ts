/** Wait with a deadline until a condition holds; never a fixed sleep. */

import { setTimeout as delay } from 'node:timers/promises'

export const WAIT_TIMEOUT_MS = 10_000
export const WAIT_INTERVAL_MS = 20

export async function waitFor(
  what: string,
  condition: () => boolean | Promise<boolean>,
  timeoutMs = WAIT_TIMEOUT_MS,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await delay(WAIT_INTERVAL_MS)
  }
}
