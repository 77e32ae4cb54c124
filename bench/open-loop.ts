/**
 * The benchmarks' open-loop load: requests go out at their scheduled instants whatever the replies,
 * and latencies count from the schedule, not the send, so a queue cannot hide behind a slow reply.
 * Between batches the loop sleeps on a 1 ms timer rather than spinning on setImmediate: a spinning
 * generator takes a core's worth of CPU from the servers and nodes it measures.
 */

/** Monotonic microseconds, comparable across this process's calls. */
export const nowUs = () => Number(process.hrtime.bigint() / 1000n)

/**
 * Call `send` `rate * seconds` times at `rate` per second; resolves after the last send. Give
 * `startUs` (from nowUs) to line the schedule up with another loop's or with measurement windows.
 */
export async function openLoop(
  rate: number,
  seconds: number,
  send: (scheduledUs: number, i: number) => void,
  startUs = nowUs(),
): Promise<void> {
  const total = Math.round(rate * seconds)
  const intervalUs = 1_000_000 / rate
  let i = 0
  while (i < total) {
    const due = Math.floor((nowUs() - startUs) / intervalUs) + 1
    for (; i < Math.min(due, total); i++) send(startUs + i * intervalUs, i)
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
}
