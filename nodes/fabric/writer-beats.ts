/**
 * Writer beats: one heartbeat message per writer process, whatever the number of games it writes.
 *
 * A game's heartbeat (crdt/backend.ts) is a writer's promise that everything it stamped up to
 * `stamp` is in the document `version`. A trader process writing many games sends, every round,
 * one beat for all of them: one stamp, and the games' versions. So the number of heartbeat
 * messages a node hears grows with the number of writer processes, not of games.
 *
 * Every BEAT_FULL_EVERY-th beat is full: it lists every game the writer promises about. The beats
 * between list only what differs from the last full one (their `base`): a game whose version
 * changed since, or that was added, and `null` for a game of the base it promises nothing about
 * now. A receiver that holds the base reads a game not listed as "still the base's version". One
 * that does not (the full beat was lost on the way, core NATS being at most once, or it arrived
 * later) applies only what the beat lists: promising the stamp on a version the receiver merely
 * guessed could let a verdict turn final before the replica holds the writer's updates. Each beat
 * depends on its base alone, not on the beats before it, so reordered or repeated beats are read
 * the same; a process's beats are numbered within its life (a random id per start).
 *
 * No I/O: the trader process builds beats with createBeatWriter, and nodes read them with
 * createBeatReader (game-replicas.ts).
 */

import { randomBytes } from 'node:crypto'
import {
  HEARTBEAT_VERSION_LENGTH_MAX,
  type Heartbeat,
  isId,
  isNodeId,
  isStampKey,
  type StampKey,
  writerOf,
} from '../../crdt/index.ts'

/**
 * Every BEAT_FULL_EVERY-th beat lists every game: a node that just started, or missed a full beat,
 * finalizes nothing of a writer's until it hears the next (200 ms at the trader's default 20 ms).
 */
export const BEAT_FULL_EVERY = 10
/** The games one writer process promises about; the node side holds at most GAMES_PER_NODE_MAX. */
export const WRITER_GAMES_MAX = 1_000
/**
 * A beat fits the default NATS max_payload (1 MiB). A full beat of WRITER_GAMES_MAX games with
 * versions of a few dozen bytes (a Yjs state vector of a few writer lives) is about 80 KB; versions
 * may be longer (HEARTBEAT_VERSION_LENGTH_MAX), and a full beat past this is not sent: the trader
 * logs it, and tries a full beat again the next round.
 */
export const WRITER_BEAT_BYTES_MAX = 1024 * 1024
/** Writer processes a node keeps a base for; the longest silent is forgotten past this. */
export const BEAT_WRITERS_MAX = 256
const LIFE_PATTERN = /^[0-9a-f]{16}$/

export interface WriterBeat {
  readonly writer: string
  /** A random id of this process start: beat numbers restart with it. */
  readonly life: string
  /** The beat's number within the life, from 0. */
  readonly n: number
  /** The number of the full beat this one lists differences from; `n` itself for a full beat. */
  readonly base: number
  readonly stamp: StampKey
  /** Game to version; null: no promise about that game now. */
  readonly games: Readonly<Record<string, string | null>>
}

/** A beat from untrusted bytes, or null when it is not one. */
export function parseWriterBeat(data: Uint8Array): WriterBeat | null {
  if (data.length > WRITER_BEAT_BYTES_MAX) return null
  let value: unknown
  try {
    value = JSON.parse(new TextDecoder().decode(data))
  } catch {
    return null
  }
  if (typeof value !== 'object' || value === null) return null
  const { writer, life, n, base, stamp, games } = value as Record<string, unknown>
  if (!isNodeId(writer) || typeof life !== 'string' || !LIFE_PATTERN.test(life)) return null
  if (!Number.isSafeInteger(n) || !Number.isSafeInteger(base)) return null
  if ((base as number) < 0 || (base as number) > (n as number)) return null
  if (!isStampKey(stamp) || writerOf({ stamp }) !== writer) return null
  if (typeof games !== 'object' || games === null || Array.isArray(games)) return null
  const entries = Object.entries(games)
  if (entries.length > WRITER_GAMES_MAX) return null
  for (const [gameId, version] of entries) {
    if (!isId(gameId)) return null
    if (version !== null && (typeof version !== 'string' || version.length > HEARTBEAT_VERSION_LENGTH_MAX))
      return null
  }
  return {
    writer,
    life,
    n: n as number,
    base: base as number,
    stamp,
    games: games as Record<string, string | null>,
  }
}

export interface BeatWriter {
  /** A game's heartbeat for the round under way; every heartbeat of a round has the round's stamp. */
  offer(gameId: string, heartbeat: Heartbeat): void
  /**
   * Hand the round's beat to `send` (nothing when no game was offered: nothing is promised then).
   * The beat counts only if `send` returns: a full beat that failed to go is not the base of the
   * next ones, and the next round is full again.
   */
  flush(send: (beat: WriterBeat) => void): void
  /** Forget the round's offers (a round that failed half-way). */
  discard(): void
}

/**
 * The sending side: collect the games' heartbeats of one round, then flush one beat. A game not
 * offered in a round is withdrawn (null) in that round's beat.
 */
export function createBeatWriter(writer: string, life = randomBytes(8).toString('hex')): BeatWriter {
  /** The versions the last full beat listed, and its number. */
  let base = new Map<string, string>()
  let baseN = 0
  let offered = new Map<string, string>()
  let stamp: StampKey | null = null
  let n = 0

  return {
    offer(gameId, heartbeat) {
      if (heartbeat.writer !== writer)
        throw new RangeError(`a heartbeat of ${heartbeat.writer}, not ${writer}`)
      if (stamp !== null && heartbeat.stamp !== stamp)
        throw new RangeError(`one round, one stamp: ${heartbeat.stamp} after ${stamp}`)
      if (!offered.has(gameId) && offered.size >= WRITER_GAMES_MAX)
        throw new RangeError(`a writer promises about at most ${WRITER_GAMES_MAX} games`)
      stamp = heartbeat.stamp
      offered.set(gameId, heartbeat.version)
    },
    flush(send) {
      const round = offered
      const roundStamp = stamp
      offered = new Map()
      stamp = null
      if (roundStamp === null) return // nothing to promise: no beat
      const full = n % BEAT_FULL_EVERY === 0
      const games: Record<string, string | null> = {}
      if (full) {
        for (const [gameId, version] of round) games[gameId] = version
      } else {
        for (const [gameId, version] of round) if (base.get(gameId) !== version) games[gameId] = version
        for (const gameId of base.keys()) if (!round.has(gameId)) games[gameId] = null
      }
      send({ writer, life, n, base: full ? n : baseN, stamp: roundStamp, games })
      if (full) {
        base = round
        baseN = n
      }
      n++
    },
    discard() {
      offered = new Map()
      stamp = null
    },
  }
}

/** A beat's bytes; over WRITER_BEAT_BYTES_MAX it cannot be sent (a RangeError says so). */
export function encodeWriterBeat(beat: WriterBeat): string {
  const text = JSON.stringify(beat)
  if (Buffer.byteLength(text) > WRITER_BEAT_BYTES_MAX)
    throw new RangeError(
      `a beat of ${Object.keys(beat.games).length} games is over ${WRITER_BEAT_BYTES_MAX} bytes`,
    )
  return text
}

/**
 * The beats a receiver remembers to pass over a repeat. A writer sends each beat through both its
 * connections (so that it reaches the region while one server is cut off), and a node hears most
 * beats twice; reading one again changes nothing (module comment), so a repeat is dropped before
 * it is parsed. Each writer's two copies arrive close together; a repeat this filter misses (more
 * writers' beats than this in between) is merely read twice.
 */
export const BEAT_REPEATS_KEPT = 16

/**
 * True for bytes equal to one of the last `kept` beats it was given (that one is then a repeat);
 * false, remembering them, for the others. Holds at most `kept` x WRITER_BEAT_BYTES_MAX bytes.
 */
export function createRepeatFilter(kept = BEAT_REPEATS_KEPT): (data: Uint8Array) => boolean {
  const recent: Buffer[] = []
  let next = 0
  return (data) => {
    for (const earlier of recent) if (earlier.length === data.length && earlier.equals(data)) return true
    // A copy: the client library may reuse the memory a message arrived in.
    const copy = Buffer.from(data)
    if (recent.length < kept) recent.push(copy)
    else recent[next] = copy
    next = (next + 1) % kept
    return false
  }
}

export interface GameHeartbeat {
  readonly gameId: string
  readonly heartbeat: Heartbeat
}

/** What a receiver knows of one writer's beats: its latest full beat. */
interface HeardWriter {
  readonly life: string
  readonly baseN: number
  readonly stamp: StampKey
  readonly versions: ReadonlyMap<string, string>
}

export interface BeatReader {
  /** The games' heartbeats a beat stands for, by the rules in the module comment. */
  read(beat: WriterBeat): GameHeartbeat[]
  /**
   * `read` without building the list: `visit` is called once per game with the version the beat
   * promises it. A node hears every writer's beat 50 times a second, each for all its games.
   */
  visit(beat: WriterBeat, visit: (gameId: string, version: string) => void): void
}

/**
 * The receiving side: turns each writer's beats into the games' heartbeats they promise. A base
 * keeps only the games `holds` names (the node's own; default all), so what a node keeps is
 * bounded by its games, not by what writers send.
 */
export function createBeatReader(holds: (gameId: string) => boolean = () => true): BeatReader {
  const heard = new Map<string, HeardWriter>()

  /**
   * Keep a full beat as its writer's base, unless a later one is kept already: of the same life, a
   * later number; of another life, a later stamp (a restarted writer stamps past its earlier life,
   * so a late full beat of the old life does not evict the new one's).
   */
  function keepBase(beat: WriterBeat): void {
    const known = heard.get(beat.writer)
    if (known !== undefined && (known.life === beat.life ? known.baseN >= beat.n : known.stamp > beat.stamp))
      return
    const versions = new Map<string, string>()
    for (const [gameId, version] of Object.entries(beat.games))
      if (version !== null && holds(gameId)) versions.set(gameId, version)
    // Most recently kept last, so the one forgotten past the limit is the longest silent.
    heard.delete(beat.writer)
    heard.set(beat.writer, { life: beat.life, baseN: beat.n, stamp: beat.stamp, versions })
    if (heard.size > BEAT_WRITERS_MAX) heard.delete(heard.keys().next().value as string)
  }

  function visit(beat: WriterBeat, visitor: (gameId: string, version: string) => void): void {
    if (beat.base === beat.n) keepBase(beat)
    const known = heard.get(beat.writer)
    const listed = beat.games
    // The base's games the beat does not list keep the base's version; the listed ones are read
    // from the beat, where null withdraws the promise.
    if (known !== undefined && known.life === beat.life && known.baseN === beat.base)
      for (const [gameId, version] of known.versions)
        if (!Object.hasOwn(listed, gameId)) visitor(gameId, version)
    for (const gameId of Object.keys(listed)) {
      const version = listed[gameId]
      if (typeof version === 'string') visitor(gameId, version)
    }
  }

  return {
    read(beat) {
      const heartbeats: GameHeartbeat[] = []
      visit(beat, (gameId, version) =>
        heartbeats.push({ gameId, heartbeat: { writer: beat.writer, stamp: beat.stamp, version } }),
      )
      return heartbeats
    },
    visit,
  }
}
