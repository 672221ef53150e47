/**
 * Fuzzing: 100,000 generated and mutated frames against the codec, and
 * 100,000 through the whole pipeline on the in-memory transport. The codec
 * never throws; the server answers every frame that does not decode with the
 * codec's error frame, in order, stays alive, and goes on serving another
 * connection. `FUZZ_RUNS` sets the count (`scripts/fuzz.sh` runs a longer one).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import * as fc from "fast-check"
import * as Echo from "../src/demo/Echo.ts"
import * as Frame from "../src/Frame.ts"
import * as Message from "../src/Message.ts"
import { frame } from "./utils/lhttp.ts"
import { startMemoryServer } from "./utils/memory.ts"

const runs = Number(process.env.FUZZ_RUNS ?? 100_000)

/** Pieces of the grammar, built into frames. */
const piece = fc.constantFrom(
  "LHTTP/1.0 ", "LHTTP/1.1 ", "chat", "echo", "\r\n", "\n", "\r", ":", " ", "a", "..", ">", "*", "$SYS",
  "publish:", "subscribe:", "unsubscribe:", "multipart:", "upstream:", "id:", "0", "5 1", "POST http://x/",
  "\r\n\r\n", "é", "\u0000", "\uD800", "room", "fuzz"
)
const built = fc.array(piece, { maxLength: 24 }).map((parts) => parts.join(""))

/** A valid frame with one mutation: a character replaced, inserted or removed. */
const valid = fc.record({
  command: fc.constantFrom("chat", "echo", "x"),
  headers: fc.array(fc.tuple(fc.constantFrom("publish", "subscribe", "id", "k", "multipart"), fc.string({ maxLength: 8 })), {
    maxLength: 4
  }),
  body: fc.string({ maxLength: 32 })
}).map(({ body, command, headers }) =>
  `LHTTP/1.0 ${command}\r\n${headers.map(([name, value]) => `${name}:${value}\r\n`).join("")}\r\n${body}`
)
const mutated = fc.tuple(valid, fc.nat(), fc.constantFrom("replace", "insert", "remove"), fc.string({ minLength: 1, maxLength: 1 }))
  .map(([text, at, how, char]) => {
    const i = at % (text.length + 1)
    return how === "insert"
      ? text.slice(0, i) + char + text.slice(i)
      : how === "replace"
      ? text.slice(0, i) + char + text.slice(i + 1)
      : text.slice(0, i) + text.slice(i + 1)
  })

const anything = fc.oneof(built, mutated, fc.string({ maxLength: 64 }))

describe("Fuzz", () => {
  it("the codec: every input is a Message or a ProtocolError, never a throw", () => {
    fc.assert(
      fc.property(anything, (input) => {
        const message = Message.decode(input)
        if (Result.isFailure(message)) {
          assert.strictEqual(message.failure._tag, "ProtocolError")
          // its error frame reads back
          assert.isTrue(Result.isSuccess(Frame.parse(Frame.render(message.failure.toFrame()))))
        }
      }),
      { numRuns: runs }
    )
  })

  it.live("the pipeline: each input that does not decode is answered with its error frame, in order; the server stays alive", () =>
    Effect.gen(function*() {
      const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000)
      const inputs = fc.sample(anything, { numRuns: runs, seed })
      // what the codec says of each, with the server's limits
      const expected = inputs.flatMap((input) => {
        const message = Message.decode(input, { maxHeaders: 64 })
        return Result.isFailure(message) ? [message.failure.reason] : []
      })
      const { connect } = yield* startMemoryServer({ processors: [Echo.Echo] }, Echo.layer)
      const fuzzer = yield* connect()
      for (let i = 0; i < inputs.length; i += 1000) yield* fuzzer.transport.sendAll(inputs.slice(i, i + 1000))
      yield* fuzzer.send(frame("echo", { id: "end" }, "end"))
      // every frame until the marker's answer: the codec's refusals come in the order of their inputs
      const reasons: Array<string> = []
      while (true) {
        const text = yield* fuzzer.next("30 seconds")
        if (text === frame("echo", { id: "end" }, "end")) break
        const error = /^LHTTP\/1\.0 error\r\nstatus:\d{3}\r\nreason:([A-Za-z]+)\r\n/.exec(text)
        if (error !== null) reasons.push(error[1]!)
      }
      // the decode failures are answered, in the order of their inputs (other error frames may come between)
      let at = 0
      for (const reason of reasons) if (at < expected.length && reason === expected[at]) at++
      assert.strictEqual(at, expected.length, `every decode failure was answered, in order (FUZZ_SEED=${seed})`)
      assert.isAbove(expected.length, runs / 10)
      // another connection is served
      const other = yield* connect()
      yield* other.send(frame("echo", {}, "still here"))
      assert.strictEqual(yield* other.next(), frame("echo", {}, "still here"))
    }), 120_000)
})
