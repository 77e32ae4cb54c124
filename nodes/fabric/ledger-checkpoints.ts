/**
 * Ledger checkpoints: a shard's fold as of a stream sequence, kept in the snapshot bucket, so that a
 * node starting up restores it and folds only what came after, instead of every entry of the
 * shard's life. A settlement node writes them (`--ledger-checkpoint-ms`); API and settlement nodes
 * restore from them at start.
 *
 * A checkpoint is the fold's snapshot (ledger/snapshot.ts, validated whole on restore) with the
 * shard, its sequence, and the SHA-256 of the stream message at that sequence as its writer folded
 * it. A node restores one only if the stream still holds that very message there: a checkpoint
 * folded from another copy of the log (nats-server 2.9.10 can leave a stream's replicas holding
 * different messages under one sequence, docs/operations.md) is refused, and the node folds the
 * shard from its first entry as before. Folds are deterministic, so a checkpoint of any node
 * serving the shard is every node's fold at that sequence. The check is of that one message only: a
 * writer whose fold took in, earlier, a message the stream later lost to a fork writes checkpoints
 * that pass it (docs/architecture.md, "Retention and checkpoints"); not guarded against yet.
 *
 * Stored gzipped in chunks, since a bucket value is at most SNAPSHOT_BYTES_MAX: the chunks under
 * `ledger.<shard>.<id>.<i>`, then the head `ledger.<shard>` naming them; the chunks of the head it
 * replaced are deleted after. A reader that finds a chunk gone (a newer checkpoint replaced the one
 * it started reading) reads the head again.
 */

import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import { gunzipSync, gzip } from 'node:zlib'
import type { Logger } from 'pino'
import { type LedgerSnapshot, sha256 } from '../../ledger/index.ts'
import { names, SNAPSHOT_BYTES_MAX } from './streams.ts'
import type { SnapshotStore } from './transport.ts'

const gzipAsync = promisify(gzip)

/** Bytes per chunk: half a bucket value, leaving room for the store's own overhead. */
export const CHECKPOINT_CHUNK_BYTES = SNAPSHOT_BYTES_MAX / 2
/** A checkpoint, compressed, is at most this many chunks (128 MiB): a fold past it is not checkpointed. */
export const CHECKPOINT_CHUNKS_MAX = 256
/**
 * What a checkpoint may inflate to: the longest string V8 holds (2^29 - 24 characters of one byte);
 * no checkpoint past it could have been written, and one is refused rather than parsed.
 */
export const CHECKPOINT_RAW_BYTES_MAX = 2 ** 29 - 24
const CHECKPOINT_VERSION = 1
/** Tries at replacing a head other writers keep replacing first; then this checkpoint is dropped. */
const HEAD_ATTEMPTS_MAX = 3
const ID_PATTERN = /^[0-9a-f]{16}$/
const DIGEST_PATTERN = /^[A-Za-z0-9_-]{43}$/

export interface LedgerCheckpoint {
  readonly shard: number
  /** The stream sequence the fold had reached: its snapshot's `lastSeq`. */
  readonly seq: number
  /** SHA-256 (base64url) of the data of the stream's message at `seq`. */
  readonly digest: string
  /** The fold's snapshot, untrusted until createLedgerFold validates it. */
  readonly snapshot: unknown
}

export const messageDigest = (data: Uint8Array) => sha256(data)

const headKey = names.ledgerCheckpointKey
const chunkKey = names.ledgerCheckpointChunkKey

interface Head {
  readonly id: string
  /** The stream sequence the checkpoint stands at. */
  readonly seq: number
  readonly chunks: number
  /** SHA-256 (base64url) of the compressed checkpoint, all chunks in order. */
  readonly sha256: string
}

function parseHead(data: Uint8Array | null): Head | null {
  if (data === null) return null
  try {
    const { id, seq, chunks, sha256 } = JSON.parse(new TextDecoder().decode(data)) as Record<string, unknown>
    if (typeof id !== 'string' || !ID_PATTERN.test(id)) return null
    if (!Number.isSafeInteger(seq) || (seq as number) < 1) return null
    if (!Number.isSafeInteger(chunks) || (chunks as number) < 1 || (chunks as number) > CHECKPOINT_CHUNKS_MAX)
      return null
    if (typeof sha256 !== 'string' || !DIGEST_PATTERN.test(sha256)) return null
    return { id, seq: seq as number, chunks: chunks as number, sha256 }
  } catch {
    return null
  }
}

/** The checkpoint's bytes, compressed off the event loop (the JSON is built on it). */
export async function encodeCheckpoint(checkpoint: {
  readonly shard: number
  readonly digest: string
  readonly snapshot: LedgerSnapshot
}): Promise<Uint8Array> {
  const { shard, digest, snapshot } = checkpoint
  const text = JSON.stringify({ version: CHECKPOINT_VERSION, shard, seq: snapshot.lastSeq, digest, snapshot })
  return await gzipAsync(text)
}

/** A checkpoint of `shard` from its bytes; throws a TypeError for anything else. */
export function decodeCheckpoint(data: Uint8Array, shard: number): LedgerCheckpoint {
  let value: unknown
  try {
    value = JSON.parse(gunzipSync(data, { maxOutputLength: CHECKPOINT_RAW_BYTES_MAX }).toString('utf8'))
  } catch (cause) {
    throw new TypeError('a ledger checkpoint is not gzipped JSON', { cause })
  }
  const { version, shard: itsShard, seq, digest, snapshot } = (value ?? {}) as Record<string, unknown>
  if (version !== CHECKPOINT_VERSION) throw new TypeError(`a ledger checkpoint of version ${String(version)}`)
  if (itsShard !== shard)
    throw new TypeError(`a checkpoint of shard ${String(itsShard)} under shard ${shard}`)
  if (!Number.isSafeInteger(seq) || (seq as number) < 1)
    throw new TypeError('a ledger checkpoint without its sequence')
  if (typeof digest !== 'string' || !DIGEST_PATTERN.test(digest))
    throw new TypeError('a ledger checkpoint without its message digest')
  const lastSeq = (snapshot as { lastSeq?: unknown } | null)?.lastSeq
  if (lastSeq !== seq)
    throw new TypeError(`a checkpoint at ${String(seq)} holding a fold at ${String(lastSeq)}`)
  return { shard, seq: seq as number, digest, snapshot }
}

/**
 * Store a checkpoint's bytes, standing at stream sequence `seq`, as the shard's, unless the stored
 * one stands at `seq` or later (a node behind never replaces a newer checkpoint); resolves with
 * whether it did and the sequence of the checkpoint it found (0: none).
 */
export async function putCheckpoint(
  store: SnapshotStore,
  shard: number,
  seq: number,
  data: Uint8Array,
): Promise<{ readonly written: boolean; readonly previousSeq: number }> {
  const found = parseHead(await store.get(headKey(shard)))
  if (found !== null && found.seq >= seq) return { written: false, previousSeq: found.seq }
  const chunks = Math.max(1, Math.ceil(data.length / CHECKPOINT_CHUNK_BYTES))
  if (chunks > CHECKPOINT_CHUNKS_MAX)
    throw new RangeError(
      `a ledger checkpoint of ${data.length} bytes is over ${CHECKPOINT_CHUNKS_MAX} chunks`,
    )
  const id = randomBytes(8).toString('hex')
  for (let index = 0; index < chunks; index++)
    await store.put(
      chunkKey(shard, id, index),
      data.subarray(index * CHECKPOINT_CHUNK_BYTES, (index + 1) * CHECKPOINT_CHUNK_BYTES),
    )
  // Looked at again after the upload (another writer may have stored a newer one meanwhile), and
  // replaced only at the revision looked at: a write in between makes it look again.
  const head = JSON.stringify({ id, seq, chunks, sha256: messageDigest(data) })
  let previous: Head | null = null
  for (let attempt = 0; ; attempt++) {
    const entry = await store.entry(headKey(shard))
    previous = parseHead(entry?.value ?? null)
    if ((previous !== null && previous.seq >= seq) || attempt >= HEAD_ATTEMPTS_MAX) {
      for (let index = 0; index < chunks; index++) await store.delete(chunkKey(shard, id, index))
      return { written: false, previousSeq: previous?.seq ?? 0 }
    }
    if ((await store.update(headKey(shard), head, entry?.revision ?? 0)) !== null) break
  }
  if (previous !== null && previous.id !== id)
    for (let index = 0; index < previous.chunks; index++)
      await store.delete(chunkKey(shard, previous.id, index))
  return { written: true, previousSeq: previous?.seq ?? 0 }
}

/** Delete the shard's checkpoint, head first, so that nobody starts from it any more. */
export async function deleteCheckpoint(store: SnapshotStore, shard: number): Promise<void> {
  const head = parseHead(await store.get(headKey(shard)))
  await store.delete(headKey(shard))
  if (head !== null)
    for (let index = 0; index < head.chunks; index++) await store.delete(chunkKey(shard, head.id, index))
}

/** The shard's checkpoint bytes, or null when it has none (or what is there does not hold together). */
export async function getCheckpoint(store: SnapshotStore, shard: number): Promise<Uint8Array | null> {
  // A chunk missing: a newer checkpoint replaced this one while it was read; read the new one.
  for (let attempt = 0; attempt < 2; attempt++) {
    const head = parseHead(await store.get(headKey(shard)))
    if (head === null) return null
    const parts: Uint8Array[] = []
    for (let index = 0; index < head.chunks; index++) {
      const part = await store.get(chunkKey(shard, head.id, index))
      if (part === null) break
      parts.push(part)
    }
    if (parts.length < head.chunks) continue
    const data = Buffer.concat(parts)
    return messageDigest(data) === head.sha256 ? data : null
  }
  return null
}

/**
 * The checkpoint a node may restore `shard` from: the stored one, if it decodes, and the stream
 * still holds at its sequence the message its writer folded there (`messageAt`); null otherwise,
 * saying why in the log.
 */
export async function checkpointToRestore(context: {
  readonly store: SnapshotStore
  readonly shard: number
  readonly messageAt: (seq: number) => Promise<Uint8Array | null>
  readonly log: Logger
}): Promise<LedgerCheckpoint | null> {
  const { store, shard, log } = context
  try {
    const data = await getCheckpoint(store, shard)
    if (data === null) return null
    const checkpoint = decodeCheckpoint(data, shard)
    const held = await context.messageAt(checkpoint.seq)
    if (held === null || messageDigest(held) !== checkpoint.digest) {
      log.warn(
        { shard, seq: checkpoint.seq, held: held !== null },
        'the ledger checkpoint does not match the stream at its sequence; folding the shard from its first entry',
      )
      return null
    }
    return checkpoint
  } catch (error) {
    log.warn({ shard, err: error }, 'no usable ledger checkpoint; folding the shard from its first entry')
    return null
  }
}
