/**
 * Discrete-event time for the simulator: a heap of callbacks keyed by (time, insertion order).
 * Nothing in a simulation reads a real clock; `nowMs` only moves when the next event runs.
 */

interface Scheduled {
  readonly atMs: number
  readonly order: number
  readonly run: () => void
}

export interface Scheduler {
  nowMs(): number
  at(atMs: number, run: () => void): void
  after(delayMs: number, run: () => void): void
  /** Run events in order until none is left or the step bound is hit; returns the steps run. */
  drain(stepsMax: number): number
  /** Run events up to and including `untilMs`. */
  runUntil(untilMs: number, stepsMax: number): number
  pending(): number
  /** When the next event runs, or null with none left. */
  nextAtMs(): number | null
  /** Run the next event; false with none left. */
  step(): boolean
}

function before(a: Scheduled, b: Scheduled): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.order < b.order)
}

export function createScheduler(startMs: number): Scheduler {
  const heap: Scheduled[] = []
  let now = startMs
  let order = 0

  function push(item: Scheduled): void {
    heap.push(item)
    let i = heap.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      if (!before(heap[i] as Scheduled, heap[parent] as Scheduled)) break
      ;[heap[i], heap[parent]] = [heap[parent] as Scheduled, heap[i] as Scheduled]
      i = parent
    }
  }

  function pop(): Scheduled {
    const top = heap[0] as Scheduled
    const last = heap.pop() as Scheduled
    if (heap.length > 0) {
      heap[0] = last
      let i = 0
      for (;;) {
        const left = 2 * i + 1
        const right = left + 1
        let smallest = i
        if (left < heap.length && before(heap[left] as Scheduled, heap[smallest] as Scheduled))
          smallest = left
        if (right < heap.length && before(heap[right] as Scheduled, heap[smallest] as Scheduled))
          smallest = right
        if (smallest === i) break
        ;[heap[i], heap[smallest]] = [heap[smallest] as Scheduled, heap[i] as Scheduled]
        i = smallest
      }
    }
    return top
  }

  function runWhile(condition: () => boolean, stepsMax: number): number {
    let steps = 0
    while (heap.length > 0 && condition()) {
      if (steps >= stepsMax) throw new Error(`simulation passed ${stepsMax} steps without settling`)
      const next = pop()
      now = Math.max(now, next.atMs)
      next.run()
      steps++
    }
    return steps
  }

  const scheduler: Scheduler = {
    nowMs: () => now,
    at(atMs, run) {
      push({ atMs: Math.max(atMs, now), order: order++, run })
    },
    after(delayMs, run) {
      scheduler.at(now + delayMs, run)
    },
    drain: (stepsMax) => runWhile(() => true, stepsMax),
    runUntil(untilMs, stepsMax) {
      const steps = runWhile(() => (heap[0] as Scheduled).atMs <= untilMs, stepsMax)
      now = Math.max(now, untilMs)
      return steps
    },
    pending: () => heap.length,
    nextAtMs: () => (heap.length === 0 ? null : (heap[0] as Scheduled).atMs),
    step() {
      if (heap.length === 0) return false
      const next = pop()
      now = Math.max(now, next.atMs)
      next.run()
      return true
    },
  }
  return scheduler
}
