/**
 * A lane: effects run one after another, in the order offered, off the path
 * of the messages that offered them (a connection's upstream calls). It holds
 * a fiber only while it has work. Each effect must handle its own failures;
 * one that dies anyway is logged and the lane goes on.
 */
import type { Fiber } from "effect"
import { Effect } from "effect"

/** Runs effects in order, one at a time. */
export class Lane {
  readonly #fork: (effect: Effect.Effect<void>) => Fiber.Fiber<void>
  #queue: Array<Effect.Effect<void>> = []
  #running = false
  #fiber: Fiber.Fiber<void> | undefined
  #stopped = false

  constructor(fork: (effect: Effect.Effect<void>) => Fiber.Fiber<void>) {
    this.#fork = fork
  }

  /** Effects queued or running. */
  get size(): number {
    return this.#queue.length + (this.#running ? 1 : 0)
  }

  /** Queues an effect after those already offered. */
  offer(effect: Effect.Effect<void>): void {
    if (this.#stopped) return
    this.#queue.push(effect)
    if (this.#running) return
    this.#running = true
    // a fork runs at once and may finish before it returns
    const fiber = this.#fork(this.#drain())
    if (this.#running) this.#fiber = fiber
  }

  /** Drops what is queued and interrupts what runs: the owner is gone. */
  stop(): void {
    this.#stopped = true
    this.#queue = []
    const fiber = this.#fiber
    this.#fiber = undefined
    if (fiber !== undefined) fiber.interruptUnsafe()
  }

  #drain(): Effect.Effect<void> {
    const lane = this
    return Effect.gen(function*() {
      let next: Effect.Effect<void> | undefined
      while ((next = lane.#queue.shift()) !== undefined) {
        yield* next.pipe(Effect.catchDefect((defect) => Effect.logWarning("an upstream call died", defect)))
      }
    }).pipe(
      // however the fiber ends (an interruption from outside included), the next offer starts a new one
      Effect.ensuring(Effect.sync(() => {
        lane.#running = false
        lane.#fiber = undefined
      }))
    )
  }
}
