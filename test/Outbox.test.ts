// The per-connection outbox and the slow-consumer policy (src/internal/server/outbox.ts; server.md "Limits":
// maxOutboundBytes, slowConsumer "close" | "drop", close code 4001). The server's tests show a slow
// reader closed over the memory transport and SSE; these pin the outbox itself: frames of one tick
// written together, the bound judged on queued + buffered bytes with its edge, a burst written early,
// what each policy does, the counters, and the close codes and reasons a peer may receive.
//
// The transport here is a plain one that records what it is given (the Transport interface is four
// functions); `buffered` stands for the bytes its peer has not taken. A tick is awaited as the outbox
// schedules its flush, with setImmediate: callbacks run in order, so the flush has run when it resolves.
import { assert, describe, it } from "@effect/vitest"
import { closeCode, closeReason, Outbox } from "../src/internal/server/outbox.ts"
import { Stats } from "../src/internal/server/stats.ts"
import { Outbound } from "../src/internal/wire/outbound.ts"
import { CloseCode } from "../src/internal/wire/protocol.ts"
import type { Transport } from "../src/Transport.ts"

const tick = () => new Promise<void>((resolve) => setImmediate(resolve))

const recording = () => {
  const state = {
    writes: [] as Array<Array<string>>,
    closes: [] as Array<readonly [number, string]>,
    buffered: 0,
    open: true
  }
  const transport: Transport = {
    peer: { url: "/", requestHeaders: {}, remoteAddress: "127.0.0.1" },
    write: (frames) => void state.writes.push(frames.map((frame) => frame.text)),
    bufferedBytes: () => state.buffered,
    close: (code, reason) => {
      state.closes.push([code, reason])
      state.open = false
    },
    isOpen: () => state.open
  }
  return { state, transport }
}

// a frame of `size` ASCII bytes
const frame = (name: string, size: number) => new Outbound(name.padEnd(size, "."))

describe("Outbox", () => {
  it("frames offered in one tick are written together at its end, in order, as one write", async () => {
    const { state, transport } = recording()
    const stats = new Stats()
    const outbox = new Outbox(transport, 1000, "close", stats)
    assert.isTrue(outbox.offer(frame("a", 3)))
    assert.isTrue(outbox.offer(frame("b", 4)))
    assert.deepStrictEqual(state.writes, [])
    await tick()
    assert.deepStrictEqual(state.writes, [["a..", "b..."]])
    assert.deepStrictEqual([stats.framesOut, stats.bytesOut], [2, 7])
    // the next tick is scheduled anew
    assert.isTrue(outbox.offer(frame("c", 2)))
    await tick()
    assert.deepStrictEqual(state.writes, [["a..", "b..."], ["c."]])
    assert.deepStrictEqual([stats.framesOut, stats.bytesOut], [3, 9])
  })

  it("one flush at the end of a tick for every outbox with frames, each written once", async () => {
    const one = recording()
    const two = recording()
    const a = new Outbox(one.transport, 1000, "close")
    const b = new Outbox(two.transport, 1000, "close")
    a.offer(frame("a1", 2))
    b.offer(frame("b1", 2))
    a.offer(frame("a2", 2))
    await tick()
    assert.deepStrictEqual([one.state.writes, two.state.writes], [[["a1", "a2"]], [["b1"]]])
    b.offer(frame("b2", 2))
    await tick()
    assert.deepStrictEqual([one.state.writes, two.state.writes], [[["a1", "a2"]], [["b1"], ["b2"]]])
  })

  it("the bound holds queued + buffered bytes: exactly maxBytes is accepted and waits for the tick", async () => {
    const { state, transport } = recording()
    const outbox = new Outbox(transport, 10, "close")
    state.buffered = 4
    assert.isTrue(outbox.offer(frame("a", 6)))
    assert.deepStrictEqual(state.writes, []) // 0 + 6 + 4 = 10: not past the bound, not written early
    await tick()
    assert.deepStrictEqual(state.writes, [["a....."]])
    assert.deepStrictEqual(state.closes, [])
  })

  it("frames already queued that with the next reach exactly maxBytes are not written early", async () => {
    const { state, transport } = recording()
    const outbox = new Outbox(transport, 10, "close")
    assert.isTrue(outbox.offer(frame("a", 3)))
    state.buffered = 4
    assert.isTrue(outbox.offer(frame("b", 3))) // 3 + 3 + 4 = 10
    assert.deepStrictEqual(state.writes, [])
    await tick()
    assert.deepStrictEqual(state.writes, [["a..", "b.."]])
  })

  it("a slow consumer of an outbox that keeps no counters is closed all the same", () => {
    const { state, transport } = recording()
    const outbox = new Outbox(transport, 10, "close")
    state.buffered = 10
    assert.isFalse(outbox.offer(frame("a", 1)))
    assert.deepStrictEqual(state.closes, [[4001, "slow consumer"]])
  })

  it("a burst past the bound within one tick is written out early, then judged by what the peer has not taken", async () => {
    const { state, transport } = recording()
    const stats = new Stats()
    const outbox = new Outbox(transport, 10, "close", stats)
    assert.isTrue(outbox.offer(frame("a", 6)))
    state.buffered = 5
    // 6 queued + 5 + 5 buffered > 10: the 6 queued are written now; then 5 + 5 = 10 fits
    assert.isTrue(outbox.offer(frame("b", 5)))
    assert.deepStrictEqual(state.writes, [["a....."]])
    assert.deepStrictEqual([stats.framesOut, stats.bytesOut], [1, 6])
    await tick()
    assert.deepStrictEqual(state.writes, [["a....."], ["b...."]])
    assert.deepStrictEqual(state.closes, [])
    assert.isFalse(outbox.isClosed)
  })

  it("\"close\": a frame that cannot fit beside what the peer has not taken closes it, 4001 slow consumer, counted once", async () => {
    const { state, transport } = recording()
    const stats = new Stats()
    const outbox = new Outbox(transport, 10, "close", stats)
    assert.isTrue(outbox.offer(frame("a", 2)))
    state.buffered = 8
    assert.isFalse(outbox.offer(frame("b", 3))) // 3 + 8 > 10 once the 2 queued are written
    assert.deepStrictEqual(state.writes, [["a."]])
    assert.deepStrictEqual(state.closes, [[4001, "slow consumer"]])
    assert.strictEqual(CloseCode.slowConsumer, 4001)
    assert.strictEqual(stats.slowConsumerCloses, 1)
    assert.isTrue(outbox.isClosed)
    // closed: everything after is refused, nothing written, nothing closed twice
    state.buffered = 0
    assert.isFalse(outbox.offer(frame("c", 1)))
    outbox.close(1000, "again")
    await tick()
    assert.deepStrictEqual(state.writes, [["a."]])
    assert.deepStrictEqual(state.closes, [[4001, "slow consumer"]])
    assert.strictEqual(stats.slowConsumerCloses, 1)
  })

  it("\"drop\": the frame that does not fit is refused, the connection stays and takes the next that fits", async () => {
    const { state, transport } = recording()
    const stats = new Stats()
    const outbox = new Outbox(transport, 10, "drop", stats)
    state.buffered = 8
    assert.isFalse(outbox.offer(frame("big", 3)))
    assert.isTrue(outbox.offer(frame("s", 2)))
    await tick()
    assert.deepStrictEqual(state.writes, [["s."]])
    assert.deepStrictEqual(state.closes, [])
    assert.strictEqual(stats.slowConsumerCloses, 0)
    assert.isFalse(outbox.isClosed)
  })

  it("close flushes what is queued first, then closes once with a code and reason a peer may receive", async () => {
    const { state, transport } = recording()
    const outbox = new Outbox(transport, 1000, "close")
    outbox.offer(frame("last", 4))
    outbox.close(999, "bye")
    assert.deepStrictEqual(state.writes, [["last"]])
    assert.deepStrictEqual(state.closes, [[1000, "bye"]])
    assert.isTrue(outbox.isClosed)
    assert.isFalse(outbox.offer(frame("late", 4)))
    await tick()
    assert.deepStrictEqual(state.writes, [["last"]])
  })

  it("a transport that closed by itself is written nothing and counts nothing", async () => {
    const { state, transport } = recording()
    const stats = new Stats()
    const outbox = new Outbox(transport, 1000, "close", stats)
    outbox.offer(frame("a", 3))
    state.open = false
    await tick()
    assert.deepStrictEqual(state.writes, [])
    assert.deepStrictEqual([stats.framesOut, stats.bytesOut], [0, 0])
    // what was queued is gone, not written later
    state.open = true
    outbox.flush()
    assert.deepStrictEqual(state.writes, [])
  })

  it("closeCode: 1000-1003, 1007-1014 and 3000-4999 pass; any other code becomes 1000", () => {
    for (const code of [1000, 1001, 1002, 1003, 1007, 1010, 1014, 3000, 4001, 4999]) {
      assert.strictEqual(closeCode(code), code)
    }
    for (const code of [0, 999, 1004, 1005, 1006, 1015, 2999, 5000, 1000.5, Number.NaN]) {
      assert.strictEqual(closeCode(code), 1000, String(code))
    }
  })

  it("closeReason: cut to the 123 UTF-8 bytes of a close frame, at a character boundary", () => {
    const short = "é".repeat(41) // 82 bytes
    assert.strictEqual(closeReason(short), short)
    assert.strictEqual(closeReason("a".repeat(123)), "a".repeat(123))
    assert.strictEqual(closeReason("a".repeat(124)), "a".repeat(123))
    assert.strictEqual(closeReason("é".repeat(61) + "a"), "é".repeat(61) + "a") // 123 bytes
    assert.strictEqual(closeReason("é".repeat(62)), "é".repeat(61)) // 124 bytes: the 62nd would be cut in two
    // byte 123 is inside the 41st euro sign (bytes 121-123): cut before it
    assert.strictEqual(closeReason("a" + "€".repeat(41)), "a" + "€".repeat(40))
    assert.strictEqual(closeReason("ab" + "€".repeat(41)), "ab" + "€".repeat(40))
    assert.strictEqual(closeReason("€".repeat(42)), "€".repeat(41))
  })
})
