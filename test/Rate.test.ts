// The token buckets of the rate limits (src/internal/server/rate.ts): `messageRate` per connection,
// `connectionRate` per address (server.md "Limits"). The server's tests show a limit answered; these
// pin the arithmetic: how many a burst allows, how fast it refills, that it refills up to the burst
// and no further, and that the per-address map forgets only full buckets. The buckets read
// `performance.now()`, so the clock here is vitest's fake `performance` (no wait, no sleep).
import { afterEach, assert, beforeEach, describe, it } from "@effect/vitest"
import { vi } from "vitest"
import { Bucket, Buckets } from "../src/internal/server/rate.ts"

const takes = (take: () => boolean, count: number): Array<boolean> => Array.from({ length: count }, take)

describe("rate: token buckets", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["performance"] })
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it("a bucket gives its burst at once, then nothing until a token has been earned", () => {
    const bucket = new Bucket({ perSecond: 2, burst: 3 })
    assert.deepStrictEqual(takes(() => bucket.take(), 4), [true, true, true, false])
    vi.advanceTimersByTime(499) // 0.998 of a token
    assert.isFalse(bucket.take())
    vi.advanceTimersByTime(1) // one token, at 2 a second
    assert.deepStrictEqual(takes(() => bucket.take(), 2), [true, false])
    vi.advanceTimersByTime(1000) // two tokens
    assert.deepStrictEqual(takes(() => bucket.take(), 3), [true, true, false])
  })

  it("a refused take spends nothing: the fractions earned add up", () => {
    const bucket = new Bucket({ perSecond: 4, burst: 1 })
    assert.isTrue(bucket.take())
    for (let i = 0; i < 4; i++) {
      vi.advanceTimersByTime(50) // a fifth of a token each time
      assert.isFalse(bucket.take())
    }
    vi.advanceTimersByTime(50)
    assert.isTrue(bucket.take())
  })

  it("a bucket refills up to its burst and no further, however long it waited", () => {
    const bucket = new Bucket({ perSecond: 10, burst: 2 })
    assert.deepStrictEqual(takes(() => bucket.take(), 3), [true, true, false])
    vi.advanceTimersByTime(60_000)
    assert.deepStrictEqual(takes(() => bucket.take(), 3), [true, true, false])
  })

  it("idle: full again (nothing to remember) only once the burst is earned back", () => {
    const bucket = new Bucket({ perSecond: 2, burst: 2 })
    assert.isTrue(bucket.idle)
    assert.isTrue(bucket.take())
    assert.isFalse(bucket.idle)
    vi.advanceTimersByTime(499)
    assert.isFalse(bucket.idle)
    vi.advanceTimersByTime(1)
    assert.isTrue(bucket.idle)
    assert.deepStrictEqual(takes(() => bucket.take(), 3), [true, true, false])
    vi.advanceTimersByTime(750)
    assert.isFalse(bucket.idle)
    vi.advanceTimersByTime(250)
    assert.isTrue(bucket.idle)
  })

  it("buckets by key: each key has its own burst", () => {
    const buckets = new Buckets({ perSecond: 1, burst: 2 })
    assert.deepStrictEqual(takes(() => buckets.take("10.0.0.1"), 3), [true, true, false])
    assert.deepStrictEqual(takes(() => buckets.take("10.0.0.2"), 3), [true, true, false])
    vi.advanceTimersByTime(1000)
    assert.deepStrictEqual(takes(() => buckets.take("10.0.0.1"), 2), [true, false])
  })

  it("the sweep every 1,024 takes forgets full buckets only: an emptied one stays empty", () => {
    const buckets = new Buckets({ perSecond: 1, burst: 1 })
    assert.deepStrictEqual(takes(() => buckets.take("busy"), 2), [true, false])
    // 2 takes so far; 1,022 more by other addresses (the 1,024th sweeps), each a full bucket after
    for (let i = 0; i < 1022; i++) buckets.take(`peer-${i}`)
    vi.advanceTimersByTime(500) // half a token: "busy" is not full, the others are
    for (let i = 0; i < 1024; i++) buckets.take(`other-${i}`) // another sweep, with time passed
    assert.isFalse(buckets.take("busy"))
    vi.advanceTimersByTime(500)
    assert.isTrue(buckets.take("busy"))
  })
})
