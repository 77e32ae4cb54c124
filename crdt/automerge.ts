/**
 * The Automerge backend: entries and watermarks as immutable strings in the root map, entries
 * under `e/<key>` and watermarks under `w/<writer>`.
 *
 * Values are JSON in ImmutableString scalars rather than nested objects or text, so each entry is
 * one op instead of one per field or character. Automerge queues a change until its dependencies
 * arrive, which gives the per-writer ordering that finality relies on. A heartbeat's version is the
 * writer's heads; a replica holds it once it has every one of them.
 */

import * as Automerge from '@automerge/automerge'
import type { Backend, Ingest, Replica, ReplicaOptions } from './backend.ts'
import { createIngest, prepareCommit, prepareHeartbeat, rememberHeld } from './backend.ts'
import { CrdtError } from './errors.ts'
import { stateHash } from './game.ts'
import { entryKey, storedValue } from './ops.ts'

type Root = Record<string, Automerge.ImmutableString>

const ENTRY_PREFIX = 'e/'
const WATERMARK_PREFIX = 'w/'
const HEADS_PATTERN = /^([0-9a-f]{64})(,[0-9a-f]{64})*$/

/** Whether the document holds a version (heads, comma-separated): true, false, or null if malformed. */
function holdsVersion(doc: Automerge.Doc<Root>, version: string): boolean | null {
  if (version === '') return true
  if (!HEADS_PATTERN.test(version)) return null
  return Automerge.hasHeads(doc, version.split(','))
}

function actorOf(options: ReplicaOptions): Automerge.ActorId | undefined {
  if (options.actor === undefined) return undefined
  // Automerge actors are hex bytes; a fixed prefix keeps them clear of random ones.
  return `f0${(options.actor >>> 0).toString(16).padStart(8, '0')}`
}

function readValue(doc: Automerge.Doc<Root>, key: string): unknown {
  const value = doc[key]
  if (!(value instanceof Automerge.ImmutableString)) return undefined
  try {
    return JSON.parse(value.val)
  } catch {
    return undefined
  }
}

/** Feed the keys a change touched into the game state. */
function ingestKeys(ingest: Ingest, doc: Automerge.Doc<Root>, keys: Iterable<string>): void {
  for (const key of keys) {
    if (key.startsWith(ENTRY_PREFIX)) ingest.entry(key.slice(ENTRY_PREFIX.length), readValue(doc, key))
    else if (key.startsWith(WATERMARK_PREFIX))
      ingest.watermark(key.slice(WATERMARK_PREFIX.length), readValue(doc, key))
  }
}

function touchedKeys(patches: readonly Automerge.Patch[], into: Set<string>): void {
  for (const patch of patches) {
    const key = patch.path[0]
    if (typeof key === 'string') into.add(key)
  }
}

function createAutomergeReplica(options: ReplicaOptions, initial?: Automerge.Doc<Root>): Replica {
  const actor = actorOf(options)
  let doc: Automerge.Doc<Root> = initial ?? Automerge.init<Root>(actor === undefined ? {} : { actor })
  const ingest = createIngest()
  const holds = rememberHeld((version) => holdsVersion(doc, version))
  /** The heads of the document they were read from (a change makes a new document). */
  let heads: { readonly of: Automerge.Doc<Root>; readonly version: string } | null = null
  if (initial !== undefined) ingestKeys(ingest, doc, Object.keys(doc))
  ingest.take()

  return {
    backend: 'automerge',
    game: ingest.game,
    commit(list) {
      const { entries: stored, writer, watermark } = prepareCommit(ingest.game, list)
      const keys = new Set<string>()
      doc = Automerge.change(doc, { patchCallback: (patches) => touchedKeys(patches, keys) }, (root) => {
        for (const entry of stored) {
          root[ENTRY_PREFIX + entryKey(entry)] = new Automerge.ImmutableString(
            JSON.stringify(storedValue(entry)),
          )
        }
        root[WATERMARK_PREFIX + writer] = new Automerge.ImmutableString(JSON.stringify(watermark))
      })
      ingestKeys(ingest, doc, keys)
      ingest.take()
      const change = Automerge.getLastLocalChange(doc)
      if (change === undefined) throw new Error('automerge produced no change for a commit')
      return change
    },
    heartbeat(stamp) {
      const writer = prepareHeartbeat(ingest.game, stamp)
      if (heads?.of !== doc) heads = { of: doc, version: Automerge.getHeads(doc).join(',') }
      const heartbeat = { writer, stamp, version: heads.version }
      ingest.heartbeat(heartbeat, holds)
      ingest.take()
      return heartbeat
    },
    apply(update) {
      const keys = new Set<string>()
      try {
        doc = Automerge.loadIncremental(doc, update, {
          patchCallback: (patches) => touchedKeys(patches, keys),
        })
      } catch (cause) {
        throw new CrdtError('INVALID_UPDATE', 'not an Automerge change or document', { cause })
      }
      ingestKeys(ingest, doc, keys)
      ingest.recheck(holds)
      return ingest.take()
    },
    applyHeartbeat(heartbeat) {
      ingest.heartbeat(heartbeat, holds)
      return ingest.take()
    },
    snapshot() {
      return Automerge.save(doc)
    },
    stateHash() {
      return stateHash(ingest.game)
    },
  }
}

export const automergeBackend: Backend = {
  name: 'automerge',
  create: (options = {}) => createAutomergeReplica(options),
  restore(snapshot, options = {}) {
    const actor = actorOf(options)
    let doc: Automerge.Doc<Root>
    try {
      doc = Automerge.load<Root>(snapshot, actor === undefined ? {} : { actor })
    } catch (cause) {
      throw new CrdtError('INVALID_SNAPSHOT', 'not an Automerge document', { cause })
    }
    return createAutomergeReplica(options, doc)
  },
}
