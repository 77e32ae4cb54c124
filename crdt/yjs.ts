/**
 * The Yjs backend: entries in one Y.Map, watermarks in another.
 *
 * Yjs integrates a client's structs only in order (a gap leaves later ones pending), which is the
 * per-writer ordering that finality relies on. Map observers report exactly the keys a
 * transaction changed, local or remote, and feed them to the game state.
 */

import * as Y from 'yjs'
import type { Backend, Replica, ReplicaOptions } from './backend.ts'
import { createIngest, prepareCommit } from './backend.ts'
import { CrdtError } from './errors.ts'
import { stateHash } from './game.ts'
import { entryKey } from './ops.ts'

const LOCAL = Symbol('local commit')

function createYjsReplica(options: ReplicaOptions = {}): Replica {
  const doc = new Y.Doc()
  if (options.actor !== undefined) doc.clientID = options.actor >>> 0
  const entries = doc.getMap<unknown>('entries')
  const marks = doc.getMap<unknown>('watermarks')
  const ingest = createIngest()
  entries.observe((event) => {
    for (const key of event.keysChanged) ingest.entry(key, entries.get(key))
  })
  marks.observe((event) => {
    for (const writer of event.keysChanged) ingest.watermark(writer, marks.get(writer))
  })
  let captured: Uint8Array | null = null
  doc.on('update', (update: Uint8Array, origin: unknown) => {
    if (origin === LOCAL) captured = update
  })

  return {
    backend: 'yjs',
    game: ingest.game,
    commit(list) {
      const { stored, writer, watermark } = prepareCommit(ingest.game, list)
      captured = null
      doc.transact(() => {
        for (const entry of stored) entries.set(entryKey(entry), entry)
        marks.set(writer, watermark)
      }, LOCAL)
      ingest.take()
      if (captured === null) throw new Error('yjs produced no update for a commit')
      return captured
    },
    apply(update) {
      try {
        Y.applyUpdate(doc, update)
      } catch (cause) {
        ingest.take()
        throw new CrdtError('INVALID_UPDATE', 'not a Yjs update', { cause })
      }
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
