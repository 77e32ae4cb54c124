/**
 * What the bet placement benchmark reports per rate: the windows' counts, histograms, ledger
 * messages and CPU samples summed up, printed as two tables (latency, then errors and cost), and
 * written as JSON for tools.
 */

import { writeFileSync } from 'node:fs'
import { LEDGER_STREAM_BYTES_MAX } from '../nodes/fabric/streams.ts'
import type { BetWindow } from './bet-load.ts'
import { type CpuSample, cpuBetween } from './process-cpu.ts'
import type { RawWindows } from './raw-probe.ts'
import {
  formatMs,
  formatSpread,
  type Histogram,
  merged,
  percentileMs,
  percentileSpread,
  type Spread,
} from './windows.ts'

export const CPU_KINDS = ['nats', 'api', 'settlement', 'generator'] as const
export type CpuKind = (typeof CPU_KINDS)[number]

/** Taken at every window boundary. */
export interface BoundarySample {
  readonly cpu: CpuSample<CpuKind>
  readonly ledgerMessages: number
  /** What the region's ledger shard streams hold, bytes (their state as the servers count it). */
  readonly ledgerBytes: number
}

export interface RawSummary {
  readonly latency: Histogram
  readonly p99Windows: Spread | undefined
  readonly errors: number
}

export interface RateResult {
  readonly offered: number
  /** Successful provisional answers per second over the measured windows. */
  readonly served: number
  readonly errorsByCode: ReadonlyMap<string, number>
  readonly finalsMissing: number
  readonly provisional: Histogram
  readonly provisionalP99Windows: Spread | undefined
  readonly final: Histogram
  readonly finalP99Windows: Spread | undefined
  readonly raw: RawSummary
  readonly betsPerLedgerMessage: number | undefined
  /** Ledger stream bytes per served bet: its entry, its share of batch and settlement messages. */
  readonly ledgerBytesPerBet: number | undefined
  readonly cpuUsPerBet: Readonly<Record<CpuKind | 'total', number | undefined>>
}

/** Provisional and final latency merged over the windows, and the spread of their p99 over them. */
export function latencyOver(windows: readonly Pick<BetWindow, 'provisional' | 'final'>[]) {
  return {
    provisional: merged(windows.map((each) => each.provisional)),
    provisionalP99Windows: percentileSpread(
      windows.map((each) => each.provisional),
      99,
    ),
    final: merged(windows.map((each) => each.final)),
    finalP99Windows: percentileSpread(
      windows.map((each) => each.final),
      99,
    ),
  }
}

export const summarizeRaw = (raw: RawWindows): RawSummary => ({
  latency: merged(raw.latency),
  p99Windows: percentileSpread(raw.latency, 99),
  errors: raw.errors.reduce((sum, each) => sum + each, 0),
})

export function summarizeRate(
  offered: number,
  windowS: number,
  bets: readonly BetWindow[],
  raw: RawWindows,
  samples: readonly BoundarySample[],
): RateResult {
  const servedBets = bets.reduce((sum, each) => sum + each.served, 0)
  const errorsByCode = new Map<string, number>()
  for (const window of bets)
    for (const [code, n] of window.errors) errorsByCode.set(code, (errorsByCode.get(code) ?? 0) + n)
  const first = samples[0]!
  const last = samples[samples.length - 1]!
  const cpu = cpuBetween(first.cpu, last.cpu)
  const perBet = (us: number) => (servedBets === 0 ? undefined : us / servedBets)
  const ledgerMessages = last.ledgerMessages - first.ledgerMessages
  return {
    offered,
    served: servedBets / (bets.length * windowS),
    errorsByCode,
    finalsMissing: bets.reduce((sum, each) => sum + each.finalsMissing, 0),
    ...latencyOver(bets),
    raw: summarizeRaw(raw),
    betsPerLedgerMessage: ledgerMessages > 0 ? servedBets / ledgerMessages : undefined,
    ledgerBytesPerBet: servedBets > 0 ? (last.ledgerBytes - first.ledgerBytes) / servedBets : undefined,
    cpuUsPerBet: {
      total: perBet(CPU_KINDS.reduce((sum, kind) => sum + cpu[kind], 0)),
      ...(Object.fromEntries(CPU_KINDS.map((kind) => [kind, perBet(cpu[kind])])) as Record<
        CpuKind,
        number | undefined
      >),
    },
  }
}

const mibOf = (bytes: number) => Math.round(bytes / 1024 ** 2)

/**
 * How long the region's ledger byte budget lasts from empty at the rate served: the shard streams
 * refuse appends once full (docs/operations.md, "The ledger's size").
 */
function budgetSeconds(result: RateResult): number | undefined {
  const perBet = result.ledgerBytesPerBet
  return perBet === undefined || perBet <= 0 || result.served <= 0
    ? undefined
    : LEDGER_STREAM_BYTES_MAX / perBet / result.served
}

function budgetText(result: RateResult): string {
  const seconds = budgetSeconds(result)
  if (result.ledgerBytesPerBet === undefined || seconds === undefined) return '-'
  return `${Math.round(result.ledgerBytesPerBet)} (${(seconds / 60).toFixed(1)} min)`
}

export const errorCount = (result: RateResult) =>
  [...result.errorsByCode.values()].reduce((sum, each) => sum + each, 0)

const threePercentiles = (h: Histogram) =>
  [50, 99, 99.9].map((percentile) => formatMs(percentileMs(h, percentile))).join(' / ')

const errorsText = (result: RateResult) =>
  result.errorsByCode.size === 0
    ? '0'
    : [...result.errorsByCode].map(([code, n]) => `${code} ${n}`).join(', ')

/** For JSON reports: a figure rounded to `digits`, or null for none. */
export const round = (value: number | undefined, digits: number) =>
  value === undefined ? null : Number(value.toFixed(digits))

/** For JSON reports: a spread in ms, to 0.01 ms. */
export const spreadJson = (value: Spread | undefined) =>
  value === undefined
    ? null
    : { min: round(value.min, 2), median: round(value.median, 2), max: round(value.max, 2) }

/** For JSON reports: a percentile in ms, to 0.01 ms. */
export const percentileJson = (h: Histogram, percentile: number) => round(percentileMs(h, percentile), 2)

export function printTables(results: readonly RateResult[], rawIdle: RawSummary): void {
  console.log(
    `\nlatency from the scheduled send, successful answers only; "windows" is the p99's min / median / max over the measured windows`,
  )
  console.log(
    'offered/s | served/s | provisional p50 / p99 / p99.9 ms | provisional p99 windows | final p50 / p99 / p99.9 ms | final p99 windows | raw R3 during load p50 / p99 ms | raw p99 windows',
  )
  for (const r of results) {
    console.log(
      `${r.offered} | ${Math.round(r.served)} | ${threePercentiles(r.provisional)} | ${formatSpread(r.provisionalP99Windows)} | ${threePercentiles(r.final)} | ${formatSpread(r.finalP99Windows)} | ${formatMs(percentileMs(r.raw.latency, 50))} / ${formatMs(percentileMs(r.raw.latency, 99))} | ${formatSpread(r.raw.p99Windows)}`,
    )
  }
  console.log(
    `idle | - | - | - | - | - | ${formatMs(percentileMs(rawIdle.latency, 50))} / ${formatMs(percentileMs(rawIdle.latency, 99))} | ${formatSpread(rawIdle.p99Windows)}`,
  )
  console.log('\nerrors by code, and cost per served bet over the measured windows')
  console.log(
    `offered/s | errors | finals missing | raw publish errors | bets per ledger message | ledger bytes per bet (the region's ${mibOf(LEDGER_STREAM_BYTES_MAX)} MiB budget full after, at this rate) | CPU us per bet: total = nats-servers + API nodes + settlement + generator`,
  )
  for (const r of results) {
    const cpu = r.cpuUsPerBet
    const us = (value: number | undefined) => (value === undefined ? '-' : String(Math.round(value)))
    console.log(
      `${r.offered} | ${errorsText(r)} | ${r.finalsMissing} | ${r.raw.errors} | ${r.betsPerLedgerMessage?.toFixed(2) ?? '-'} | ${budgetText(r)} | ${us(cpu.total)} = ${us(cpu.nats)} + ${us(cpu.api)} + ${us(cpu.settlement)} + ${us(cpu.generator)}`,
    )
  }
}

/** The JSON report; `method` says what was run and how. */
export function writeJson(
  file: string,
  method: Record<string, unknown>,
  results: readonly RateResult[],
  rawIdle: RawSummary,
  /** Warnings and errors the node processes logged, counted by `kind: message`. */
  nodeWarnings: Readonly<Record<string, number>>,
): void {
  const spread = spreadJson
  const p = percentileJson
  const rates = results.map((r) => ({
    offered: r.offered,
    served: round(r.served, 1),
    errors: errorCount(r),
    errorsByCode: Object.fromEntries(r.errorsByCode),
    finalsMissing: r.finalsMissing,
    provisionalP50Ms: p(r.provisional, 50),
    provisionalP99Ms: p(r.provisional, 99),
    provisionalP999Ms: p(r.provisional, 99.9),
    provisionalP99MsWindows: spread(r.provisionalP99Windows),
    finalP50Ms: p(r.final, 50),
    finalP99Ms: p(r.final, 99),
    finalP999Ms: p(r.final, 99.9),
    finalP99MsWindows: spread(r.finalP99Windows),
    betsPerLedgerMessage: round(r.betsPerLedgerMessage, 2),
    ledgerBytesPerBet: round(r.ledgerBytesPerBet, 0),
    ledgerBudgetFullAfterS: round(budgetSeconds(r), 0),
    rawP50MsDuringLoad: p(r.raw.latency, 50),
    rawP99MsDuringLoad: p(r.raw.latency, 99),
    rawP99MsDuringLoadWindows: spread(r.raw.p99Windows),
    rawErrorsDuringLoad: r.raw.errors,
    cpuUsPerBet: Object.fromEntries(Object.entries(r.cpuUsPerBet).map(([kind, us]) => [kind, round(us, 0)])),
  }))
  const idle = {
    p50Ms: p(rawIdle.latency, 50),
    p99Ms: p(rawIdle.latency, 99),
    p99MsWindows: spread(rawIdle.p99Windows),
    errors: rawIdle.errors,
  }
  writeFileSync(file, `${JSON.stringify({ method, rawIdle: idle, rates, nodeWarnings }, null, 2)}\n`)
}
