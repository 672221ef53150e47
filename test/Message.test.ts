import { assert, describe, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import * as fc from "fast-check"
import * as Message from "../src/Message.ts"
import { ProtocolError } from "../src/ProtocolError.ts"

const decode = (input: string): Message.Message => {
  const result = Message.decode(input)
  assert.isTrue(Result.isSuccess(result), Result.isFailure(result) ? result.failure.message : "")
  return Result.getOrThrow(result)
}

const refused = (input: string, reason: ProtocolError["reason"]) => {
  const result = Message.decode(input)
  assert.isTrue(Result.isFailure(result) && result.failure.reason === reason, `expected ${reason}`)
}

describe("Message.decode classifies what a frame asks for", () => {
  it("a plain command is a Notify with no channels", () => {
    const message = decode("LHTTP/1.0 chat\r\ncontent-type:text/plain\r\n\r\nhi")
    assert.strictEqual(message._tag, "Notify")
    if (message._tag === "Notify") {
      assert.strictEqual(message.command, "chat")
      assert.strictEqual(message.body, "hi")
      assert.deepStrictEqual([message.subscribe, message.publish, message.unsubscribe], [[], [], []])
      assert.isUndefined(message.upstream)
      assert.isUndefined(message.multipart)
    }
  })

  it("reads subscribe, publish and unsubscribe lists whatever their order", () => {
    const message = decode("LHTTP/1.0 chat\r\nunsubscribe:c\r\npublish:b b2\r\nsubscribe:a\r\n\r\n")
    assert.strictEqual(message._tag, "Notify")
    if (message._tag !== "Failure") {
      assert.deepStrictEqual<ReadonlyArray<string>>(message.subscribe, ["a"])
      assert.deepStrictEqual<ReadonlyArray<string>>(message.publish, ["b", "b2"])
      assert.deepStrictEqual<ReadonlyArray<string>>(message.unsubscribe, ["c"])
    }
  })

  it("an empty channel header asks for nothing, as in the original", () => {
    const message = decode("LHTTP/1.0 chat\r\npublish:\r\n\r\n")
    assert.isTrue(message._tag === "Notify" && message.publish.length === 0)
  })

  it("a frame with an id is a Request", () => {
    const message = decode("LHTTP/1.0 rpc\r\nid:42\r\n\r\n{}")
    assert.strictEqual(message._tag, "Request")
    if (message._tag === "Request") assert.strictEqual(message.id, "42")
  })

  it("splits an upstream header", () => {
    const message = decode("LHTTP/1.0 chat\r\nupstream:POST http://x.com:80/a?b=c\r\n\r\nbody")
    assert.isTrue(message._tag === "Notify" && message.upstream !== undefined)
    if (message._tag === "Notify") {
      assert.deepStrictEqual(message.upstream, { method: "POST", url: "http://x.com:80/a?b=c" })
    }
  })

  it("cuts multipart parts before anything else sees them", () => {
    const message = decode("LHTTP/1.0 upload\r\nmultipart:0 14\r\n\r\nk1:v1\r\n\r\nbody1k2:v2\r\n\r\nbody2")
    assert.isTrue(message._tag === "Notify")
    if (message._tag === "Notify") {
      assert.deepStrictEqual(message.multipart?.map((p) => p.body), ["body1", "body2"])
      assert.strictEqual(message.multipart?.[1]?.headers.get("k2"), "v2")
    }
  })

  it("reads an error frame as a Failure", () => {
    const message = decode("LHTTP/1.0 error\r\nstatus:400\r\nreason:MalformedHeader\r\nid:7\r\n\r\nbad header")
    assert.deepStrictEqual(message, {
      _tag: "Failure",
      status: 400,
      reason: "MalformedHeader",
      message: "bad header",
      id: "7"
    })
  })

  it("an error command without a valid status is not a Failure", () => {
    assert.strictEqual(decode("LHTTP/1.0 error\r\nstatus:oops\r\nreason:x\r\n\r\n")._tag, "Notify")
  })

  it("refuses invalid channels in any list", () => {
    refused("LHTTP/1.0 chat\r\nsubscribe:a..b\r\n\r\n", "InvalidChannel")
    refused("LHTTP/1.0 chat\r\npublish:>\r\n\r\n", "InvalidChannel")
    refused("LHTTP/1.0 chat\r\nunsubscribe:$SYS.x\r\n\r\n", "InvalidChannel")
    refused("LHTTP/1.0 chat\r\nsubscribe:a b  c\r\n\r\n", "InvalidChannel")
  })

  it("refuses an upstream header that is not <METHOD> <URL>", () => {
    refused("LHTTP/1.0 chat\r\nupstream:http://x.com\r\n\r\n", "InvalidUpstream")
    refused("LHTTP/1.0 chat\r\nupstream:POST http://x.com extra\r\n\r\n", "InvalidUpstream")
    refused("LHTTP/1.0 chat\r\nupstream:P-OST http://x.com\r\n\r\n", "InvalidUpstream")
  })

  it("refuses bad multipart offsets", () => refused("LHTTP/1.0 up\r\nmultipart:5 1\r\n\r\nxxxxxx", "InvalidMultipart"))
  it("refuses a malformed frame", () => refused("LHTTP/1.0 chat\r\nnocolon\r\n\r\n", "MalformedHeader"))
})

// reference §12.4: what the original JavaScript SDK sends, and what it decodes (minus its bugs, §12.2)
describe("Message: the original SDK's frames (reference §12.4)", () => {
  it("reads the frames the SDK sends", () => {
    const subscribe = decode("LHTTP/1.0 chat\r\nsubscribe:a\r\n\r\n")
    assert.isTrue(subscribe._tag === "Notify" && subscribe.subscribe[0] === "a")
    const both = decode("LHTTP/1.0 chat\r\nsubscribe:a\r\npublish:b\r\nx:1\r\n\r\nhi")
    assert.isTrue(both._tag === "Notify")
    if (both._tag === "Notify") {
      assert.deepStrictEqual([both.subscribe, both.publish, both.headers.get("x"), both.body], [
        ["a"],
        ["b"],
        "1",
        "hi"
      ])
    }
    // the SDK's send() without headers: Go mangled a multi-line body here (B1)
    const reply = decode("LHTTP/1.0 chat\r\n\r\nline1\r\nline2")
    assert.isTrue(reply._tag === "Notify" && reply.headers.size === 0 && reply.body === "line1\r\nline2")
  })

  it("decodes what the SDK decodes, without its bugs", () => {
    const plain = decode("LHTTP/1.0 chat\r\npublish:chatroom\r\n\r\nhello")
    assert.isTrue(plain._tag === "Notify" && plain.headers.get("publish") === "chatroom" && plain.body === "hello")
    // SDK: "POST http" (it split on every ":")
    const upstream = decode("LHTTP/1.0 chat\r\nupstream:POST http://x.com/a\r\n\r\nb")
    assert.isTrue(upstream._tag === "Notify" && upstream.headers.get("upstream") === "POST http://x.com/a")
    // SDK: body "line1" (it kept what stood between the first and second CRLF CRLF)
    const twice = decode("LHTTP/1.0 chat\r\nk:v\r\n\r\nline1\r\n\r\nline2")
    assert.isTrue(twice._tag === "Notify" && twice.body === "line1\r\n\r\nline2")
    // SDK: body undefined
    const unended = decode("LHTTP/1.0 chat\r\nk:v")
    assert.isTrue(unended._tag === "Notify" && unended.headers.get("k") === "v" && unended.body === "")
    // SDK: command "", headers {}, body "". Here: an error, so the sender learns why.
    refused("hello", "NotLhttp")
    // SDK: headers {"": ""}. Here: an empty header name is malformed.
    refused("LHTTP/1.0 chat\r\n:\r\n\r\nhello", "MalformedHeader")
  })

  it("the demo's wire exchange reads as the demo meant it", () => {
    const frames = [
      "LHTTP/1.0 chat\r\nsubscribe:chatroom\r\n\r\n",
      "LHTTP/1.0 auth\r\ncontent-type:image/png\r\n\r\n",
      "LHTTP/1.0 chat\r\npublish:chatroom\r\n\r\nhi",
      "LHTTP/1.0 auth\r\ncontent-type:image/png\r\n\r\nhi"
    ].map(decode)
    assert.deepStrictEqual(frames.map((m) => m._tag === "Notify" ? [m.command, m.body] : []), [
      ["chat", ""],
      ["auth", ""],
      ["chat", "hi"],
      ["auth", "hi"]
    ])
    // every subscriber receives the publish re-serialized: the same text
    assert.strictEqual(Message.encode(frames[2]!), "LHTTP/1.0 chat\r\npublish:chatroom\r\n\r\nhi")
  })
})

describe("Message.FromString", () => {
  const decodeSchema = Schema.decodeUnknownResult(Message.FromString)

  it("decodes to the same value as the fast typed path", () => {
    const text = "LHTTP/1.0 chat\r\nid:1\r\npublish:room\r\nmultipart:0\r\n\r\nk:v\r\n\r\nb"
    const viaSchema = decodeSchema(text)
    assert.isTrue(Result.isSuccess(viaSchema))
    if (Result.isSuccess(viaSchema)) assert.deepStrictEqual(viaSchema.success, decode(text))
  })

  it("encodes a message to its frame text", () => {
    const text = "LHTTP/1.0 chat\r\npublish:room\r\ncontent-type:text/plain\r\n\r\nhello"
    assert.strictEqual(Schema.encodeSync(Message.FromString)(decode(text)), text)
    const failure = Schema.encodeSync(Message.FromString)({
      _tag: "Failure",
      status: 404,
      reason: "UnknownCommand",
      message: "no such command",
      id: "9"
    })
    assert.strictEqual(failure, "LHTTP/1.0 error\r\nstatus:404\r\nreason:UnknownCommand\r\nid:9\r\n\r\nno such command")
  })

  it("fails with the protocol error's message", () => {
    const result = decodeSchema("LHTTP/1.0 chat\r\nsubscribe:a..b\r\n\r\n")
    assert.isTrue(Result.isFailure(result) && result.failure.message.includes("a..b"))
  })

  it("validates the structure of what it encodes", () => {
    const bad = Schema.encodeUnknownResult(Message.FromString)({ _tag: "Notify", command: "x" })
    assert.isTrue(Result.isFailure(bad))
    // a channel id is checked by its Schema: a wildcard in a message built by hand is refused
    const notify = (subscribe: ReadonlyArray<string>) => ({
      _tag: "Notify",
      command: "x",
      headers: new Map(),
      body: "",
      subscribe,
      publish: [],
      unsubscribe: []
    })
    assert.isTrue(Result.isSuccess(Schema.encodeUnknownResult(Message.FromString)(notify(["room"]))))
    for (const channel of ["*", "a.*", ">", "a..b", ""]) {
      assert.isTrue(Result.isFailure(Schema.encodeUnknownResult(Message.FromString)(notify([channel]))), channel)
      assert.isTrue(Result.isFailure(Schema.decodeUnknownResult(Message.Message)(notify([channel]))), channel)
    }
  })
})

/**
 * Any code point, lone surrogates included, weighted toward ASCII: what fast-check's "binary" unit
 * gives, without its seconds of start-up.
 */
const anyChar = fc.oneof(
  fc.integer({ min: 0, max: 0x7f }),
  fc.integer({ min: 0, max: 0xffff }),
  fc.integer({ min: 0, max: 0x10ffff })
).map((code) => String.fromCodePoint(code))

/** A command or a header value: anything but CR and LF. */
const line = fc.string({ unit: fc.oneof(fc.constantFrom("a", " ", ":", "é"), anyChar), maxLength: 8 })
  .filter((s) => !/[\r\n]/.test(s))
const channel = fc.array(fc.stringMatching(/^[a-z0-9_-]{1,4}$/), { minLength: 1, maxLength: 3 }).map((t) => t.join("."))
const channelList = fc.oneof(
  fc.constant(""), // asks for nothing
  fc.array(fc.oneof(channel, fc.constant("room")), { minLength: 1, maxLength: 4 }).map((ids) => ids.join(" "))
)
/** Header lines as a client writes them: built-ins with valid values, names near them that are not built-in. */
const headerLine = fc.oneof(
  fc.tuple(fc.constantFrom("subscribe", "publish", "unsubscribe"), channelList),
  fc.tuple(fc.constant("id"), line),
  fc.tuple(fc.constantFrom("k", "content-type", "Publish", "publish ", "ID", "é"), line)
)

/**
 * A frame's text built from its parts (the blank line and a body, a final CRLF, or nothing after
 * the last line), with what a Message of it holds, per docs/protocol.md §2, §4 and §6.
 */
const wireMessage = fc.record({
  command: fc.oneof(line, fc.constant("error")),
  lines: fc.array(headerLine, { maxLength: 5 }),
  end: fc.constantFrom("blank line", "CRLF", "end of frame"),
  body: fc.string({ unit: fc.oneof(fc.constantFrom("\r\n", "\r\n\r\n", "k:v", "é"), anyChar), maxLength: 12 })
}).map(({ body: written, command, end, lines }) => {
  let text = "LHTTP/1.0 " + command
  for (const [name, value] of lines) text += "\r\n" + name + ":" + value
  if (end === "blank line") text += "\r\n\r\n" + written
  else if (end === "CRLF") text += "\r\n"
  const headers = new Map<string, string>(lines) // a repeated name: first position, last value
  const body = end === "blank line" ? written : ""
  const channels = (name: string) => {
    const value = headers.get(name)
    return value ? [...new Set(value.split(" "))] : []
  }
  let canonical = "LHTTP/1.0 " + command + "\r\n"
  for (const [name, value] of headers) canonical += name + ":" + value + "\r\n"
  canonical += "\r\n" + body
  return {
    text,
    id: headers.get("id") || undefined, // an empty id is no id
    command,
    headers: [...headers],
    body,
    subscribe: channels("subscribe"),
    publish: channels("publish"),
    unsubscribe: channels("unsubscribe"),
    canonical
  }
})

describe("Message properties", () => {
  it("decode reads every text of the grammar into what it asks for, and encode writes it in the shape of §3", () => {
    fc.assert(
      fc.property(wireMessage, (expected) => {
        const message = decode(expected.text)
        assert.notStrictEqual(message._tag, "Failure")
        if (message._tag === "Failure") return
        assert.deepStrictEqual(
          {
            tag: message._tag,
            id: message._tag === "Request" ? message.id : undefined,
            command: message.command,
            headers: [...message.headers],
            body: message.body,
            subscribe: message.subscribe,
            publish: message.publish,
            unsubscribe: message.unsubscribe
          },
          {
            tag: expected.id === undefined ? "Notify" : "Request",
            id: expected.id,
            command: expected.command,
            headers: expected.headers,
            body: expected.body,
            subscribe: expected.subscribe,
            publish: expected.publish,
            unsubscribe: expected.unsubscribe
          },
          JSON.stringify(expected.text)
        )
        assert.strictEqual(Message.encode(message), expected.canonical)
        assert.strictEqual(Schema.encodeSync(Message.FromString)(message), expected.canonical)
      }),
      { numRuns: 1000 }
    )
  })

  const lhttpish = fc.array(
    fc.constantFrom(
      "LHTTP/1.0 ",
      "chat",
      "\r\n",
      "\n",
      ":",
      " ",
      "a",
      "..",
      ">",
      "publish:",
      "subscribe:",
      "multipart:",
      "upstream:",
      "id:",
      "0",
      "5",
      "\r\n\r\n"
    ),
    { maxLength: 20 }
  ).map((parts) => "LHTTP/1.0 " + parts.join(""))

  it("decoding any string gives a Message or a ProtocolError, never a throw, and the Schema agrees", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: anyChar, maxLength: 40 }), lhttpish), (input) => {
        const result = Message.decode(input)
        const viaSchema = Schema.decodeUnknownResult(Message.FromString)(input)
        if (Result.isFailure(result)) {
          assert.instanceOf(result.failure, ProtocolError)
          assert.isTrue(Result.isFailure(viaSchema), JSON.stringify(input))
          if (Result.isFailure(viaSchema)) assert.include(viaSchema.failure.message, result.failure.message)
        } else {
          assert.isTrue(Result.isSuccess(viaSchema), JSON.stringify(input))
          if (Result.isSuccess(viaSchema)) assert.deepStrictEqual(viaSchema.success, result.success)
        }
      }),
      { numRuns: 2000 }
    )
  })
})

// Mutation testing (docs/testing.md "Mutation testing"): what the survivors of `npm run mutate` showed untested
describe("Message: what mutation testing found untested", () => {
  it("an error frame without an id is a Failure with no id property at all", () => {
    const failure = decode("LHTTP/1.0 error\r\nstatus:404\r\nreason:UnknownCommand\r\n\r\nno such command")
    assert.deepStrictEqual(failure, {
      _tag: "Failure",
      status: 404,
      reason: "UnknownCommand",
      message: "no such command"
    })
    assert.isFalse("id" in failure)
    const withId = decode("LHTTP/1.0 error\r\nstatus:429\r\nreason:TooManyRequests\r\nid:7\r\n\r\nslow down")
    assert.deepStrictEqual(withId, {
      _tag: "Failure",
      status: 429,
      reason: "TooManyRequests",
      message: "slow down",
      id: "7"
    })
  })

  it("a malformed upstream header says what the header looks like", () => {
    const result = Message.decode("LHTTP/1.0 chat\r\nupstream:http://x.com\r\n\r\n")
    assert.isTrue(Result.isFailure(result))
    if (Result.isFailure(result)) assert.strictEqual(result.failure.message, "an upstream header is \"<METHOD> <URL>\"")
  })

  it("encoding a message whose frame cannot be written fails with the frame's problem", () => {
    const message = {
      _tag: "Notify",
      command: "chat",
      headers: new Map([["a", "x\r\ninjected:1"]]),
      body: "",
      subscribe: [],
      publish: [],
      unsubscribe: []
    }
    const result = Schema.encodeUnknownResult(Message.FromString)(message)
    assert.isTrue(Result.isFailure(result))
    if (Result.isFailure(result)) assert.include(result.failure.message, "a header value cannot hold CR or LF")
  })
})

describe("Message: the schemas of its parts", () => {
  it("Upstream is a method and a URL; Part is headers and a body: anything else is refused", () => {
    assert.isTrue(Schema.is(Message.Upstream)({ method: "POST", url: "http://x" }))
    assert.isFalse(Schema.is(Message.Upstream)({ method: "POST" }))
    assert.isFalse(Schema.is(Message.Upstream)({}))
    assert.isTrue(Schema.is(Message.Part)({ headers: new Map(), body: "b" }))
    assert.isFalse(Schema.is(Message.Part)({ headers: new Map() }))
    assert.isFalse(Schema.is(Message.Part)({ headers: {}, body: "b" }))
  })
})

describe("Message.isBuiltinName", () => {
  it("names the built-in headers, and nothing else", () => {
    for (const name of Object.values(Message.Header)) assert.isTrue(Message.isBuiltinName(name), name)
    for (const name of ["chat", "Subscribe", "content-type", ""]) assert.isFalse(Message.isBuiltinName(name), name)
  })
})
