/**
 * The Yjs backend: entries in one Y.Map, watermarks in another.
 *
 * Yjs integrates a client's structs only in order (a gap leaves later ones pending), which is the
 * per-writer ordering that finality relies on. After each transaction, local or remote, the keys
 * it changed are fed to the game state. A heartbeat's version is the writer's state vector as
 * `client:clock` pairs; a replica holds it once its own state vector covers every pair.
 */

import * as Y from 'yjs'
import type { Backend, Replica, ReplicaOptions } from './backend.ts'
import { createIngest, prepareCommit, prepareHeartbeat, rememberHeld } from './backend.ts'
import { CrdtError } from './errors.ts'
import { stateHash } from './game.ts'
import { entryKey, storedValue } from './ops.ts'

const VERSION_PATTERN = /^(\d{1,10}:\d{1,15})(,\d{1,10}:\d{1,15})*$/

function encodeVersion(doc: Y.Doc): string {
  const stateVector = Y.decodeStateVector(Y.encodeStateVector(doc))
  return [...stateVector].map(([client, clock]) => `${client}:${clock}`).join(',')
}

/** Whether the document holds a version: true, false, or null when the version is malformed. */
function holdsVersion(doc: Y.Doc, version: string): boolean | null {
  if (version === '') return true
  if (!VERSION_PATTERN.test(version)) return null
  for (const pair of version.split(',')) {
    const [client, clock] = pair.split(':').map(Number) as [number, number]
    if (Y.getState(doc.store, client) < clock) return false
  }
  return true
}

function createYjsReplica(options: ReplicaOptions = {}): Replica {
  const doc = new Y.Doc()
  if (options.actor !== undefined) doc.clientID = options.actor >>> 0
  const entries = doc.getMap<unknown>('entries')
  const marks = doc.getMap<unknown>('watermarks')
  const ingest = createIngest()
  const holds = rememberHeld((version) => holdsVersion(doc, version))
  /** The document's version, until the next transaction changes it. */
  let version: string | null = null
  // One listener for the keys each transaction changed, local or remote; Yjs tracks them anyway,
  // so this costs no event objects.
  doc.on('afterTransaction', (transaction: Y.Transaction) => {
    version = null
    const changed = transaction.changed as Map<unknown, Set<string | null>>
    for (const key of changed.get(entries) ?? []) if (key !== null) ingest.entry(key, entries.get(key))
    for (const writer of changed.get(marks) ?? [])
      if (writer !== null) ingest.watermark(writer, marks.get(writer))
  })

  return {
    backend: 'yjs',
    game: ingest.game,
    commit(list) {
      const { entries: stored, writer, watermark } = prepareCommit(ingest.game, list)
      // Listen for the encoded update only while committing: with a listener attached, Yjs
      // encodes every transaction, remote ones included.
      let captured: Uint8Array | null = null
      const capture = (update: Uint8Array) => {
        captured = update
      }
      doc.on('update', capture)
      try {
        doc.transact(() => {
          for (const entry of stored) entries.set(entryKey(entry), storedValue(entry))
          marks.set(writer, watermark)
        })
      } finally {
        doc.off('update', capture)
      }
      ingest.take()
      if (captured === null) throw new Error('yjs produced no update for a commit')
      return captured
    },
    heartbeat(stamp) {
      const writer = prepareHeartbeat(ingest.game, stamp)
      version ??= encodeVersion(doc)
      const heartbeat = { writer, stamp, version }
      ingest.heartbeat(heartbeat, holds)
      ingest.take()
      return heartbeat
    },
    apply(update) {
      try {
        Y.applyUpdate(doc, update)
      } catch (cause) {
        ingest.take()
        throw new CrdtError('INVALID_UPDATE', 'not a Yjs update', { cause })
      }
      ingest.recheck(holds)
      return ingest.take()
    },
    applyHeartbeat(heartbeat) {
      ingest.heartbeat(heartbeat, holds)
      return ingest.take()
    },
    snapshot() {
      return Y.encodeStateAsUpdate(doc)
    },
    stateHash() {
      return stateHash(ingest.game)
    },
  }
}

export const yjsBackend: Backend = {
  name: 'yjs',
  create: createYjsReplica,
  restore(snapshot, options) {
    const replica = createYjsReplica(options)
    try {
      replica.apply(snapshot)
    } catch (cause) {
      throw new CrdtError('INVALID_SNAPSHOT', 'not a Yjs snapshot', { cause })
    }
    return replica
  },
}
