/**
 * Token buckets for the rate limits: `perSecond` tokens a second, at most
 * `burst` saved up. Refilled lazily on each take, from one clock read.
 */

/** A rate: tokens a second and the most that can be saved up. */
export interface Rate {
  readonly perSecond: number
  readonly burst: number
}

const now: () => number = typeof performance === "object" ? () => performance.now() : () => Date.now()

/** One bucket. */
export class Bucket {
  readonly #rate: Rate
  #tokens: number
  #at: number

  constructor(rate: Rate) {
    this.#rate = rate
    this.#tokens = rate.burst
    this.#at = now()
  }

  /** Takes a token; false when there is none. */
  take(): boolean {
    if (this.#tokens < 1) {
      const at = now()
      this.#tokens = Math.min(this.#rate.burst, this.#tokens + ((at - this.#at) / 1000) * this.#rate.perSecond)
      this.#at = at
      if (this.#tokens < 1) return false
    }
    this.#tokens--
    return true
  }

  /** Whether the bucket is full again (nothing to remember). */
  get idle(): boolean {
    return this.#tokens + ((now() - this.#at) / 1000) * this.#rate.perSecond >= this.#rate.burst
  }
}

/** Buckets by key (a peer's address), forgetting the full ones now and then. */
export class Buckets {
  readonly #rate: Rate
  readonly #buckets = new Map<string, Bucket>()
  #takes = 0

  constructor(rate: Rate) {
    this.#rate = rate
  }

  take(key: string): boolean {
    if (++this.#takes % 1024 === 0) {
      for (const [name, bucket] of this.#buckets) if (bucket.idle) this.#buckets.delete(name)
    }
    let bucket = this.#buckets.get(key)
    if (bucket === undefined) this.#buckets.set(key, bucket = new Bucket(this.#rate))
    return bucket.take()
  }
}
