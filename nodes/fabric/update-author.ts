/**
 * Who wrote an update, and whom it fences, as its headers carry it: every update names its writer,
 * and a takeover names the writers it fences with the stamps of those fences (replica-sync.ts says
 * how the log decides them). Pure: headers in, headers out.
 */

import { isStampKey } from '../../crdt/index.ts'
import type { LogFence } from './log-fences.ts'

/** The writer whose ops an update holds. */
export const WRITER_HEADER = 'Fabric-Writer'
/** The writers an update fences (comma-separated): a takeover. */
export const FENCE_HEADER = 'Fabric-Fence'
/** The stamps of those fences, in the same order (comma-separated); see log-fences.ts. */
export const FENCE_STAMPS_HEADER = 'Fabric-Fence-Stamps'

/** Who wrote an update, and whom it fences, at which stamps. */
export interface UpdateAuthor {
  readonly writer: string
  readonly fences?: readonly { readonly target: string; readonly stamp: string }[]
}

/** The headers that name an update's author; none without one. */
export function authorHeaders(author: UpdateAuthor | undefined): Record<string, string> {
  const headers: Record<string, string> = {}
  if (author !== undefined) {
    headers[WRITER_HEADER] = author.writer
    if (author.fences?.length) {
      headers[FENCE_HEADER] = author.fences.map((fence) => fence.target).join(',')
      headers[FENCE_STAMPS_HEADER] = author.fences.map((fence) => fence.stamp).join(',')
    }
  }
  return headers
}

/** The fences an update's headers name, each with its stamp when the writer sent them. */
export function fencesOf(targets: string | undefined, stamps: string | undefined): LogFence[] {
  if (!targets) return []
  const stampList = stamps ? stamps.split(',') : []
  return targets.split(',').map((target, i) => {
    const stamp = stampList[i]
    return isStampKey(stamp) ? { target, stamp } : { target }
  })
}
