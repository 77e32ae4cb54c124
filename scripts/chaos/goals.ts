/**
 * What a fault may cost, per scenario: the goals the soak profile enforces and the short profile
 * only reports (speed is a benchmark's to measure, not a gate in the test suite). Pure.
 *
 * - Acceptance while faulted, by what the fault leaves standing:
 *   - `all`: a majority of servers and at least one node of each kind keep running (a node killed,
 *     paused or cut off, a writer taken over), so every valid placement should be booked;
 *   - `majority-led`: a server is lost or links are cut while a majority remains: the shards whose
 *     leader stayed with the majority should book every valid placement; the others wait for an
 *     election, whose window the report gives per shard;
 *   - `none`: no majority (or no writer, or a node refusing on purpose): refusals are the right
 *     answer, and the ratio is reported only.
 * - For every fault: a first answer within a second, finals after the heal and convergence fast.
 */

export type AcceptanceGoal = 'all' | 'majority-led' | 'none'

export const GOALS = {
  acceptanceRatioMin: 0.98,
  firstAnswerMaxMs: 1_000,
  finalsAfterHealP99Ms: 250,
  convergedAfterHealMs: 1_000,
} as const

/** The figures of one run that the goals are about (null: not measured). */
export interface GoalFigures {
  /** Valid placements made while faulted (figures.ts). */
  readonly valid: number
  readonly acceptanceRatio: number | null
  readonly acceptanceRatioMajorityLed: number | null
  readonly firstAnswerMaxMs: number | null
  readonly finalsAfterHealP99Ms: number | null
  readonly convergedAfterHealMs: number | null
  /**
   * The acceptance ratio from the moment every stream led from the faulted servers had a leader
   * again until the heal; null when no stream was led from them, or nothing was placed then.
   */
  readonly acceptanceAfterElections?: number | null
}

/** Each goal the figures miss, as a line for the report; empty when every goal is met. */
export function missedGoals(figures: GoalFigures, acceptance: AcceptanceGoal): string[] {
  const missed: string[] = []
  const percent = (ratio: number) => `${(100 * ratio).toFixed(1)} %`
  const min = percent(GOALS.acceptanceRatioMin)
  if (acceptance !== 'none') {
    const [ratio, what] =
      acceptance === 'all'
        ? [figures.acceptanceRatio, 'acceptance while faulted']
        : [figures.acceptanceRatioMajorityLed, 'acceptance on majority-led shards while faulted']
    // A fault during which nobody placed a valid bet measured nothing, which is a miss. With
    // placements but no shard led from the majority side (the fabric stream's or the bucket's
    // leader was faulted too), the majority-led goal has nothing to judge; the others still do.
    if (figures.valid === 0) missed.push(`${what}: not measured (no valid placement), goal >= ${min}`)
    else if (ratio !== null && ratio < GOALS.acceptanceRatioMin)
      missed.push(`${what} ${percent(ratio)}, goal >= ${min}`)
    // The shards led from the faulted side come back within the election window: after it, all.
    const after = figures.acceptanceAfterElections ?? null
    if (acceptance === 'majority-led' && after !== null && after < GOALS.acceptanceRatioMin)
      missed.push(`acceptance once every faulted stream had a new leader ${percent(after)}, goal >= ${min}`)
  }
  if (figures.firstAnswerMaxMs !== null && figures.firstAnswerMaxMs > GOALS.firstAnswerMaxMs)
    missed.push(`slowest first answer ${figures.firstAnswerMaxMs} ms, goal <= ${GOALS.firstAnswerMaxMs} ms`)
  if (figures.finalsAfterHealP99Ms !== null && figures.finalsAfterHealP99Ms > GOALS.finalsAfterHealP99Ms)
    missed.push(
      `finals after the heal p99 ${figures.finalsAfterHealP99Ms} ms, goal <= ${GOALS.finalsAfterHealP99Ms} ms`,
    )
  if (figures.convergedAfterHealMs === null)
    missed.push(`replicas did not agree after the heal, goal <= ${GOALS.convergedAfterHealMs} ms`)
  else if (figures.convergedAfterHealMs > GOALS.convergedAfterHealMs)
    missed.push(
      `converged ${figures.convergedAfterHealMs} ms after the heal, goal <= ${GOALS.convergedAfterHealMs} ms`,
    )
  return missed
}
