import { assert, describe, it } from "@effect/vitest"
import { Effect, Result } from "effect"
import * as ErrorFrame from "../src/ErrorFrame.ts"
import * as Frame from "../src/Frame.ts"
import { ProtocolError } from "../src/ProtocolError.ts"

describe("ErrorFrame", () => {
  it("writes the documented format", () => {
    const frame = ErrorFrame.make({ status: 400, reason: "MalformedHeader", message: "a header name is empty" })
    assert.strictEqual(
      Frame.render(frame),
      "LHTTP/1.0 error\r\nstatus:400\r\nreason:MalformedHeader\r\n\r\na header name is empty"
    )
  })

  it("echoes the request id", () => {
    const frame = ErrorFrame.make({ status: 400, reason: "InvalidChannel", message: "m", id: "abc" })
    assert.strictEqual(Frame.render(frame), "LHTTP/1.0 error\r\nstatus:400\r\nreason:InvalidChannel\r\nid:abc\r\n\r\nm")
  })

  it("keeps line breaks out of its headers", () => {
    const frame = ErrorFrame.make({ status: 500, reason: "a\r\nb", message: "m", id: "x\ny" })
    assert.isTrue(Result.isSuccess(Frame.validate(frame)))
    assert.strictEqual(frame.headers.get("reason"), "a b")
  })

  it("reads an error frame back", () => {
    const frame = ErrorFrame.make({ status: 431, reason: "TooManyHeaders", message: "too many", id: "1" })
    assert.deepStrictEqual(ErrorFrame.fromFrame(frame), {
      status: 431,
      reason: "TooManyHeaders",
      message: "too many",
      id: "1"
    })
    assert.isUndefined(ErrorFrame.fromFrame(Frame.make("chat")))
    assert.isUndefined(ErrorFrame.fromFrame(Frame.make("error", { status: "4000", reason: "x" })))
    assert.isUndefined(ErrorFrame.fromFrame(Frame.make("error", { status: "400" })))
  })

  it("reads an error frame from the wire (docs/protocol.md §5), not only what make wrote", () => {
    const read = (text: string) => ErrorFrame.fromFrame(Result.getOrThrow(Frame.parse(text)))
    assert.deepStrictEqual(read("LHTTP/1.0 error\r\nreason:UnknownCommand\r\nstatus:404\r\nid:9\r\n\r\nno such"), {
      status: 404,
      reason: "UnknownCommand",
      message: "no such",
      id: "9"
    })
    assert.deepStrictEqual(read("LHTTP/1.0 error\r\nstatus:505\r\nreason:UnsupportedVersion"), {
      status: 505,
      reason: "UnsupportedVersion",
      message: "",
      id: undefined
    })
    assert.isUndefined(read("LHTTP/1.0 error\r\nstatus:600\r\nreason:x\r\n\r\n"))
    assert.isUndefined(read("LHTTP/1.0 error\r\nstatus:40\r\nreason:x\r\n\r\n"))
    assert.isUndefined(read("LHTTP/1.0 error\r\nstatus:400\r\nreason:\r\n\r\n"))
    assert.isUndefined(read("LHTTP/1.0 Error\r\nstatus:400\r\nreason:x\r\n\r\n"))
  })
})

describe("ProtocolError", () => {
  it("becomes the error frame the server sends, with its status", () => {
    const error = new ProtocolError({ reason: "TooManyHeaders", message: "a frame carries at most 64 headers" })
    assert.strictEqual(error.status, 431)
    assert.strictEqual(
      Frame.render(error.toFrame("req-1")),
      "LHTTP/1.0 error\r\nstatus:431\r\nreason:TooManyHeaders\r\nid:req-1\r\n\r\na frame carries at most 64 headers"
    )
  })

  it("is a parser's typed error", () => {
    const result = Frame.parse("LHTTP/1.1 chat")
    assert.isTrue(Result.isFailure(result))
    if (Result.isFailure(result)) {
      assert.strictEqual(result.failure._tag, "ProtocolError")
      assert.strictEqual(result.failure.status, 505)
    }
  })

  it.effect("fails an Effect and is caught by its tag", () =>
    Effect.gen(function*() {
      const reason = yield* new ProtocolError({ reason: "NotLhttp", message: "m" }).pipe(
        Effect.catchTag("ProtocolError", (error) => Effect.succeed(error.reason))
      )
      assert.strictEqual(reason, "NotLhttp")
    }))
})
