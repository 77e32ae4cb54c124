/**
 * A seeded PRNG (sfc32, seeded through splitmix32). It owns all randomness of the simulator,
 * the generated workloads and the benchmarks, so a seed replays a run exactly.
 */

export interface Prng {
  readonly seed: number
  /** A float in [0, 1). */
  next(): number
  /** An integer in [min, max], both inclusive. */
  int(min: number, max: number): number
  chance(probability: number): boolean
  pick<T>(items: readonly T[]): T
  shuffle<T>(items: readonly T[]): T[]
  /** A uint32, e.g. an actor id. */
  uint32(): number
}

function splitmix32(state: number): () => number {
  let s = state >>> 0
  return () => {
    s = (s + 0x9e3779b9) >>> 0
    let z = s
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
}

export function createPrng(seed: number): Prng {
  const init = splitmix32(seed)
  let a = init()
  let b = init()
  let c = init()
  let d = init()
  function uint32(): number {
    const result = (((a + b) >>> 0) + d) >>> 0
    d = (d + 1) >>> 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) >>> 0
    c = ((c << 21) | (c >>> 11)) >>> 0
    c = (c + result) >>> 0
    return result
  }
  for (let i = 0; i < 12; i++) uint32()
  const prng: Prng = {
    seed,
    next: () => uint32() / 4_294_967_296,
    int: (min, max) => min + Math.floor(prng.next() * (max - min + 1)),
    chance: (probability) => prng.next() < probability,
    pick: (items) => {
      if (items.length === 0) throw new RangeError('pick from an empty list')
      return items[prng.int(0, items.length - 1)] as never
    },
    shuffle: (items) => {
      const copy = [...items]
      for (let i = copy.length - 1; i > 0; i--) {
        const j = prng.int(0, i)
        ;[copy[i], copy[j]] = [copy[j] as never, copy[i] as never]
      }
      return copy
    },
    uint32,
  }
  return prng
}
