/**
 * The time plan of one measured load: a warm-up, then measured windows back to back, while the
 * load runs on without a pause. A request belongs to the window its scheduled send falls in, so a
 * slow reply still counts against the window that caused it. Latencies go into HDR histograms, one
 * per window, in microseconds; the headline merges the windows and the spread shows how far they
 * differ.
 */

import * as hdr from 'hdr-histogram-js'
import { nowUs } from './open-loop.ts'

/** No latency above this is tracked; a reply later than this is an error (its request timed out). */
export const LATENCY_MS_MAX = 120_000

export interface WindowPlan {
  /** When the warm-up starts, in nowUs() microseconds. */
  readonly startUs: number
  readonly warmupS: number
  readonly windowS: number
  readonly windows: number
}

export const planSeconds = (plan: Omit<WindowPlan, 'startUs'>) => plan.warmupS + plan.windows * plan.windowS

/** The window a send scheduled at `scheduledUs` counts in: -1 in the warm-up, `windows` after the last. */
export function windowOf(plan: WindowPlan, scheduledUs: number): number {
  const sinceUs = scheduledUs - plan.startUs - plan.warmupS * 1e6
  return sinceUs < 0 ? -1 : Math.min(plan.windows, Math.floor(sinceUs / (plan.windowS * 1e6)))
}

/** Where window `index` starts (index `windows` is where the last one ends), in nowUs() microseconds. */
export const boundaryUs = (plan: WindowPlan, index: number) =>
  plan.startUs + (plan.warmupS + index * plan.windowS) * 1e6

/**
 * Call `sample` at every window boundary (windows + 1 of them, the first when the warm-up ends)
 * and `onWindow` after each window; resolves with the samples once the last window has ended.
 */
export async function atBoundaries<T>(
  plan: WindowPlan,
  sample: () => Promise<T>,
  onWindow: (index: number) => void = () => {},
): Promise<T[]> {
  const samples: T[] = []
  for (let index = 0; index <= plan.windows; index++) {
    const waitMs = (boundaryUs(plan, index) - nowUs()) / 1000
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs))
    samples.push(await sample())
    if (index > 0) onWindow(index - 1)
  }
  return samples
}

export function latencyHistogram() {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: LATENCY_MS_MAX * 1000,
    numberOfSignificantValueDigits: 3,
  })
}
export type Histogram = ReturnType<typeof latencyHistogram>

export const histograms = (count: number) => Array.from({ length: count }, latencyHistogram)

/** The windows' histograms as one. */
export function merged(windows: readonly Histogram[]): Histogram {
  const all = latencyHistogram()
  for (const each of windows) all.add(each)
  return all
}

/** A percentile in milliseconds, or undefined for an empty histogram. */
export const percentileMs = (h: Histogram, percentile: number) =>
  h.totalCount === 0 ? undefined : h.getValueAtPercentile(percentile) / 1000

export interface Spread {
  readonly min: number
  readonly median: number
  readonly max: number
}

/** Min, median and max of the defined values; undefined when none is. */
export function spreadOf(values: readonly (number | undefined)[]): Spread | undefined {
  const sorted = values.filter((value) => value !== undefined).sort((a, b) => a - b)
  if (sorted.length === 0) return undefined
  const middle = sorted.length >> 1
  const median = sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
  return { min: sorted[0]!, median, max: sorted[sorted.length - 1]! }
}

/** A percentile's spread over the windows. */
export const percentileSpread = (windows: readonly Histogram[], percentile: number) =>
  spreadOf(windows.map((each) => percentileMs(each, percentile)))

export const formatMs = (value: number | undefined) =>
  value === undefined ? '-' : value < 100 ? value.toFixed(1) : Math.round(value).toLocaleString('en-US')

export const formatSpread = (spread: Spread | undefined) =>
  spread === undefined
    ? '-'
    : `${formatMs(spread.min)} / ${formatMs(spread.median)} / ${formatMs(spread.max)}`
