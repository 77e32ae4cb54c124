/**
 * Named errors of the CRDT core. Each carries a stable `code` so that shells (API nodes, the
 * gateway) can map it to a wire error without parsing messages.
 */

export type CrdtErrorCode =
  | 'CLOCK_DRIFT'
  | 'CLOCK_OVERFLOW'
  | 'INVALID_STAMP'
  | 'INVALID_NODE_ID'
  | 'INVALID_OP'
  | 'INVALID_UPDATE'
  | 'INVALID_SNAPSHOT'
  | 'WATERMARK_REGRESSION'

export class CrdtError extends Error {
  readonly code: CrdtErrorCode

  constructor(code: CrdtErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'CrdtError'
    this.code = code
  }
}

/** A remote stamp lies further in the future than the configured maximum drift allows. */
export class ClockDriftError extends CrdtError {
  readonly driftMs: number
  readonly maxDriftMs: number

  constructor(driftMs: number, maxDriftMs: number) {
    super(
      'CLOCK_DRIFT',
      `remote stamp is ${driftMs} ms ahead of the local clock, beyond the maximum drift of ${maxDriftMs} ms`,
    )
    this.name = 'ClockDriftError'
    this.driftMs = driftMs
    this.maxDriftMs = maxDriftMs
  }
}
