import { assert, describe, it } from "@effect/vitest"
import { Result, Schema } from "effect"
import * as fc from "fast-check"
import { isDeepStrictEqual } from "node:util"
import * as Frame from "../src/Frame.ts"
import * as Grammar from "../src/internal/wire/grammar.ts"
import { ProtocolError } from "../src/ProtocolError.ts"

type Expected =
  | {
    readonly command: string
    readonly headers: Record<string, string> | ReadonlyArray<readonly [string, string]>
    readonly body: string
  }
  | { readonly error: ProtocolError["reason"] }

const check = (input: string, expected: Expected) => {
  const result = Frame.parse(input)
  if ("error" in expected) {
    assert.isTrue(Result.isFailure(result), `expected ${expected.error} for ${JSON.stringify(input)}`)
    if (Result.isFailure(result)) {
      assert.instanceOf(result.failure, ProtocolError)
      assert.strictEqual(result.failure.reason, expected.error)
    }
    return
  }
  assert.isTrue(Result.isSuccess(result), `expected a frame for ${JSON.stringify(input)}`)
  if (Result.isSuccess(result)) {
    const frame = result.success
    assert.strictEqual(frame.command, expected.command)
    const entries = Array.isArray(expected.headers) ? expected.headers : Object.entries(expected.headers)
    assert.deepStrictEqual([...frame.headers], entries)
    assert.strictEqual(frame.body, expected.body)
  }
}

// Every parser vector of reference §3.6. Where the original Go output is a bug
// that DESIGN.md §4 fixes, the comment names the fix and what Go computed.
describe("Frame.parse: reference §3.6 vectors", () => {
  const vectors: ReadonlyArray<readonly [string, string, Expected]> = [
    ["simple", "LHTTP/1.0 chat\r\npublish:ch\r\n\r\nbody", {
      command: "chat",
      headers: { publish: "ch" },
      body: "body"
    }],
    ["body keeps CRLF CRLF", "LHTTP/1.0 chat\r\na:1\r\nb:2\r\n\r\nbody\r\n\r\nmore:x\r\n", {
      command: "chat",
      headers: { a: "1", b: "2" },
      body: "body\r\n\r\nmore:x\r\n"
    }],
    ["later colons belong to the value", "LHTTP/1.0 chat\r\nupstream:POST http://x.com:80/a?b=c\r\n\r\nbody", {
      command: "chat",
      headers: { upstream: "POST http://x.com:80/a?b=c" },
      body: "body"
    }],
    ["value untrimmed", "LHTTP/1.0 chat\r\npublish: ch\r\n\r\nbody", {
      command: "chat",
      headers: { publish: " ch" },
      body: "body"
    }],
    ["name case-sensitive and untrimmed", "LHTTP/1.0 chat\r\nPublish : ch\r\n\r\nbody", {
      command: "chat",
      headers: { "Publish ": " ch" },
      body: "body"
    }],
    ["last duplicate wins", "LHTTP/1.0 chat\r\nk:v\r\nk:w\r\n\r\n", { command: "chat", headers: { k: "w" }, body: "" }],
    // Go: {"": "nocolon"}. Fixed: a header line without ":" is malformed and gets an error frame.
    ["line without colon", "LHTTP/1.0 chat\r\nnocolon\r\n\r\nbody", { error: "MalformedHeader" }],
    ["channel list kept verbatim", "LHTTP/1.0 chat\r\nsubscribe:a b  c\r\n\r\n", {
      command: "chat",
      headers: { subscribe: "a b  c" },
      body: ""
    }],
    ["empty body", "LHTTP/1.0 chat\r\npublish:x\r\n\r\n", { command: "chat", headers: { publish: "x" }, body: "" }],
    ["no blank line", "LHTTP/1.0 chat\r\npublish:x\r\n", { command: "chat", headers: { publish: "x" }, body: "" }],
    // Go: headers {}, body "x" (⚠ family 3). Fixed: the end of the frame ends the last header line.
    ["no CRLF after the last header", "LHTTP/1.0 chat\r\npublish:x", {
      command: "chat",
      headers: { publish: "x" },
      body: ""
    }],
    ["start line only", "LHTTP/1.0 chat\r\n", { command: "chat", headers: {}, body: "" }],
    // Go: {"": ""} (⚠ family 1, B1). Fixed: no headers.
    ["no headers, empty body", "LHTTP/1.0 chat\r\n\r\n", { command: "chat", headers: {}, body: "" }],
    // Go: {"": ""} (B1). Fixed: no headers, the body whole.
    ["no headers", "LHTTP/1.0 chat\r\n\r\nhello", { command: "chat", headers: {}, body: "hello" }],
    // Go: {"": "line1"}, body "line2" (B1). Fixed: the body whole.
    ["no headers, two body lines", "LHTTP/1.0 chat\r\n\r\nline1\r\nline2", {
      command: "chat",
      headers: {},
      body: "line1\r\nline2"
    }],
    // Go: {"": "", a: "b"}, body "c" (B1). Fixed: a body that looks like headers stays the body.
    ["no headers, header-like body", "LHTTP/1.0 chat\r\n\r\na:b\r\nc", {
      command: "chat",
      headers: {},
      body: "a:b\r\nc"
    }],
    // Go: {"": "line1"}, body "line2" (B1). Fixed.
    ["no headers, body with CRLF CRLF", "LHTTP/1.0 chat\r\n\r\nline1\r\n\r\nline2", {
      command: "chat",
      headers: {},
      body: "line1\r\n\r\nline2"
    }],
    // Go: headers {}, body "x:y\r\n\r\nbody" (⚠ family 2, B2). Fixed: an empty value is a value.
    ["empty header value", "LHTTP/1.0 chat\r\npublish:\r\nx:y\r\n\r\nbody", {
      command: "chat",
      headers: { publish: "", x: "y" },
      body: "body"
    }],
    // Go: headers {}, body "y\n\nb". Fixed: a lone LF in the header section is an error, lines end with CRLF.
    ["LF-only after the start line", "LHTTP/1.0 chat\r\nx:y\n\nb", { error: "MalformedHeader" }],
    ["empty command", "LHTTP/1.0 \r\nx:y\r\n\r\n", { command: "", headers: { x: "y" }, body: "" }],
    // Go: command "chat" (B13: byte 9 unchecked). Fixed: a single space must follow LHTTP/1.0.
    ["no space after the version", "LHTTP/1.0Xchat\r\nx:y\r\n\r\nb", { error: "MalformedStartLine" }],
    ["command with a space", "LHTTP/1.0 chat room\r\nx:y\r\n\r\nb", {
      command: "chat room",
      headers: { x: "y" },
      body: "b"
    }],
    // Go: PANIC. Fixed: the end of the frame ends the start line.
    ["no CRLF at all", "LHTTP/1.0 chat", { command: "chat", headers: {}, body: "" }],
    // Go: PANIC (s[10:9]). Fixed: an error frame.
    ["CRLF right after the version", "LHTTP/1.0\r\nx:y\r\n\r\n", { error: "MalformedStartLine" }],
    // Go: PANIC. Fixed: an error frame naming CRLF.
    ["LF only", "LHTTP/1.0 chat\nx:y\n\nb", { error: "MalformedStartLine" }],
    ["UTF-8 passes through", "LHTTP/1.0 chat\r\nkéy:vé\r\n\r\nbé", {
      command: "chat",
      headers: { "kéy": "vé" },
      body: "bé"
    }]
  ]
  for (const [name, input, expected] of vectors) it(name, () => check(input, expected))
})

describe("Frame.parse: acceptance gates (reference §3.2), answered with errors instead of silence", () => {
  it("a frame of 9 bytes or fewer", () => {
    check("LHTTP/1.0", { error: "MalformedStartLine" })
    check("LHTTP", { error: "NotLhttp" })
    check("", { error: "NotLhttp" })
  })
  it("anything that is not LHTTP", () => check("hello world, this is not lhttp", { error: "NotLhttp" }))
  it("another version", () => check("LHTTP/1.1 chat\r\n\r\n", { error: "UnsupportedVersion" }))
  it("the prefix is case-sensitive", () => check("lhttp/1.0 chat\r\n\r\n", { error: "NotLhttp" }))
})

describe("Frame.parse: the rest of the grammar", () => {
  it("an empty header name is malformed", () => check("LHTTP/1.0 chat\r\n:v\r\n\r\n", { error: "MalformedHeader" }))
  it("a lone CR in a header value is malformed", () =>
    check("LHTTP/1.0 chat\r\na:b\rc\r\n\r\n", { error: "MalformedHeader" }))
  it("a lone CR in the command is malformed", () => check("LHTTP/1.0 ch\rat\r\n\r\n", { error: "MalformedStartLine" }))
  it("a duplicate keeps its first position and its last value", () =>
    check("LHTTP/1.0 c\r\na:1\r\nb:2\r\na:3\r\n\r\n", { command: "c", headers: { a: "3", b: "2" }, body: "" }))
  it("a lone LF or CR in the body is data", () =>
    check("LHTTP/1.0 c\r\n\r\na\nb\rc", { command: "c", headers: {}, body: "a\nb\rc" }))
  it("numeric header names keep their order", () =>
    check("LHTTP/1.0 c\r\nz:1\r\n2:2\r\n1:3\r\n\r\n", {
      command: "c",
      headers: [["z", "1"], ["2", "2"], ["1", "3"]],
      body: ""
    }))
  it("caps the number of distinct headers: 64 are accepted, the 65th is refused TooManyHeaders", () => {
    const headers = (count: number) => Array.from({ length: count }, (_, i) => [`h${i}`, "v"] as const)
    const text = (count: number) => `LHTTP/1.0 c\r\n${headers(count).map(([k, v]) => `${k}:${v}\r\n`).join("")}\r\n`
    check(text(64), { command: "c", headers: headers(64), body: "" })
    // 64 distinct names and one of them again: still 64
    check(`${text(64).slice(0, -2)}h0:w\r\n\r\n`, {
      command: "c",
      headers: [["h0", "w"], ...headers(64).slice(1)],
      body: ""
    })
    const lines = Array.from({ length: 65 }, (_, i) => `h${i}:v\r\n`).join("")
    check(`LHTTP/1.0 c\r\n${lines}\r\n`, { error: "TooManyHeaders" })
    const refused = Frame.parse(`LHTTP/1.0 c\r\n${lines}\r\n`)
    assert.isTrue(Result.isFailure(refused) && refused.failure.message === "a frame carries at most 64 headers")
    const result = Frame.parse(`LHTTP/1.0 c\r\n${lines}\r\n`, { maxHeaders: 100 })
    assert.isTrue(Result.isSuccess(result))
    const repeated = Array.from({ length: 100 }, () => "h:v\r\n").join("")
    check(`LHTTP/1.0 c\r\n${repeated}\r\n`, { command: "c", headers: { h: "v" }, body: "" })
  })
  it("parses bytes as UTF-8 and refuses invalid UTF-8", () => {
    const ok = Frame.parseBytes(new TextEncoder().encode("LHTTP/1.0 chat\r\nk:é\r\n\r\nbé"))
    assert.isTrue(Result.isSuccess(ok))
    if (Result.isSuccess(ok)) assert.strictEqual(ok.success.body, "bé")
    const bad = Frame.parseBytes(new Uint8Array([...new TextEncoder().encode("LHTTP/1.0 chat\r\n\r\n"), 0xff, 0xfe]))
    assert.isTrue(Result.isFailure(bad) && bad.failure.reason === "InvalidUtf8")
  })
})

describe("Frame.render (reference §3.7, §3.8, §4.2)", () => {
  it("writes name:value with no space, headers in insertion order", () => {
    const frame = Frame.make("auth", { "content-type": "image/png" }, "hi")
    assert.strictEqual(Frame.render(frame), "LHTTP/1.0 auth\r\ncontent-type:image/png\r\n\r\nhi")
  })
  it("writes a frame without headers with the blank line", () => {
    assert.strictEqual(Frame.render(Frame.make("chat", {}, "reply")), "LHTTP/1.0 chat\r\n\r\nreply")
  })
  it("re-serializes a published message whole (reference §4.2)", () => {
    const sent = "LHTTP/1.0 chat\r\ncontent-type:text/plain\r\npublish:room1\r\n\r\nhello"
    const frame = Frame.parse(sent)
    assert.isTrue(Result.isSuccess(frame))
    if (Result.isSuccess(frame)) assert.strictEqual(Frame.render(frame.success), sent)
  })
  it("validate refuses what would not read back", () => {
    assert.isTrue(Result.isFailure(Frame.validate(Frame.make("a\r\nb"))))
    assert.isTrue(Result.isFailure(Frame.validate(Frame.make("c", { "a:b": "v" }))))
    assert.isTrue(Result.isFailure(Frame.validate(Frame.make("c", { "": "v" }))))
    assert.isTrue(Result.isFailure(Frame.validate(Frame.make("c", { a: "x\r\ninjected:1" }))))
    assert.isTrue(Result.isSuccess(Frame.validate(Frame.make("c", { a: "b" }, "any\r\n\r\nbody"))))
  })
})

describe("Frame.FromString", () => {
  it("decodes and encodes", () => {
    const text = "LHTTP/1.0 chat\r\npublish:room\r\n\r\nhello"
    const frame = Schema.decodeSync(Frame.FromString)(text)
    assert.strictEqual(frame.command, "chat")
    assert.strictEqual(frame.headers.get("publish"), "room")
    assert.strictEqual(Schema.encodeSync(Frame.FromString)(frame), text)
  })
  it("fails decoding with the parser's message", () => {
    const result = Schema.decodeUnknownResult(Frame.FromString)("LHTTP/1.0 chat\r\nnocolon\r\n\r\n")
    assert.isTrue(Result.isFailure(result))
    if (Result.isFailure(result)) assert.include(result.failure.message, "no \":\"")
  })
  it("refuses to encode a frame with a header injection", () => {
    const result = Schema.encodeUnknownResult(Frame.FromString)(Frame.make("c", { a: "1\r\nb:2" }))
    assert.isTrue(Result.isFailure(result))
  })
  it("refuses non-strings and non-map headers", () => {
    assert.isTrue(Result.isFailure(Schema.decodeUnknownResult(Frame.FromString)(42)))
    assert.isTrue(
      Result.isFailure(Schema.encodeUnknownResult(Frame.FromString)({ command: "c", headers: { a: "b" }, body: "" }))
    )
  })
})

// Arbitraries. Pieces of text are drawn from an alphabet that often holds the
// characters the grammar cares about (":", " ", non-ASCII), so that the
// properties reach the corners rather than only random letters.
/**
 * Any code point, lone surrogates included, weighted toward ASCII: what fast-check's "binary" unit
 * gives, without its seconds of start-up.
 */
const anyChar = fc.oneof(
  fc.integer({ min: 0, max: 0x7f }),
  fc.integer({ min: 0, max: 0xffff }),
  fc.integer({ min: 0, max: 0x10ffff })
).map((code) => String.fromCodePoint(code))
const lineUnit = fc.oneof(fc.constantFrom("a", "b", " ", ":", "é", "e\u0301", "😀", "\t"), anyChar)
  .filter((s) => !/[\r\n]/.test(s))
const bodyUnit = fc.oneof(lineUnit, fc.constantFrom("\r\n", "\r", "\n", "\r\n\r\n", "LHTTP/1.0 ", "k:v"))
/** A command or a header value: anything but CR and LF. */
const line = fc.string({ unit: lineUnit, maxLength: 10 })
/** A header name: non-empty, no ":", CR or LF; often one of a few, so that names repeat. */
const headerName = fc.oneof(
  fc.constantFrom("k", "publish", "id", "Publish ", "é"),
  fc.string({ unit: lineUnit.filter((s) => s !== ":"), minLength: 1, maxLength: 6 })
)
const body = fc.string({ unit: bodyUnit, maxLength: 12 })

/**
 * A text of the grammar (docs/protocol.md §2), built from its parts, so the
 * frame it spells is known without the parser: the start line, header lines,
 * then either the blank line and a body, or a final CRLF, or nothing (the end
 * of the frame ends the line and the header section, rule 5).
 */
const wireText = fc.record({
  command: line,
  headers: fc.array(fc.tuple(headerName, line), { maxLength: 5 }),
  end: fc.constantFrom("blank line", "CRLF", "end of frame"),
  body
}).map(({ body, command, end, headers }) => {
  let text = "LHTTP/1.0 " + command
  for (const [name, value] of headers) text += "\r\n" + name + ":" + value
  if (end === "blank line") text += "\r\n\r\n" + body
  else if (end === "CRLF") text += "\r\n"
  const names = headers.map(([name]) => name)
  return {
    text,
    // a Map keeps a name's first position and its last value, as rule 6 says
    frame: Frame.make(command, new Map(headers), end === "blank line" ? body : ""),
    // the shape render writes: the blank line always, each name once
    canonical: end === "blank line" && new Set(names).size === names.length
  }
})

/** Strings near the grammar, most of them refused: they reach deeper than random text. */
const lhttpish = fc.array(
  fc.constantFrom("LHTTP/1.0 ", "LHTTP/1.0", "LHTTP/", "chat", "\r\n", "\r", "\n", ":", " ", "a", "é", "\r\n\r\n"),
  { maxLength: 16 }
).map((parts) => parts.join(""))

const entries = (frame: Frame.Frame) => [frame.command, [...frame.headers], frame.body]

const parsed = (text: string): Frame.Frame => {
  const result = Frame.parse(text)
  assert.isTrue(Result.isSuccess(result), `expected a frame for ${JSON.stringify(text)}`)
  return Result.getOrThrow(result)
}

describe("Frame: round trips (docs/protocol.md §3)", () => {
  // rule 5: the end of the frame ends the start line, a header line and the header section; render
  // always writes the blank line, as the original's serializer did (reference §3.7)
  it("a text without the blank line renders with it", () => {
    assert.strictEqual(Frame.render(parsed("LHTTP/1.0 chat")), "LHTTP/1.0 chat\r\n\r\n")
    assert.strictEqual(Frame.render(parsed("LHTTP/1.0 chat\r\n")), "LHTTP/1.0 chat\r\n\r\n")
    assert.strictEqual(Frame.render(parsed("LHTTP/1.0 chat\r\nk:v")), "LHTTP/1.0 chat\r\nk:v\r\n\r\n")
    assert.strictEqual(Frame.render(parsed("LHTTP/1.0 chat\r\nk:v\r\n")), "LHTTP/1.0 chat\r\nk:v\r\n\r\n")
    assert.strictEqual(Frame.render(parsed("LHTTP/1.0 chat\r\n\r\n")), "LHTTP/1.0 chat\r\n\r\n")
  })

  it("parse reads every text of the grammar as the frame its parts spell", () => {
    fc.assert(
      fc.property(wireText, ({ frame, text }) => {
        assert.deepStrictEqual(entries(parsed(text)), entries(frame), JSON.stringify(text))
      }),
      { numRuns: 1000 }
    )
  })

  it("rendersAs says, without rendering, whether render(parse(text)) is the text itself", () => {
    fc.assert(
      fc.property(fc.oneof(wireText.map(({ text }) => text), lhttpish), (text) => {
        const frame = Frame.parse(text)
        if (Result.isSuccess(frame)) {
          assert.strictEqual(
            Grammar.rendersAs(frame.success, text),
            Frame.render(frame.success) === text,
            JSON.stringify(text)
          )
        }
      }),
      { numRuns: 2000 }
    )
  })

  it("render(parse(text)) is the text itself exactly when it has the blank line and no repeated name", () => {
    fc.assert(
      fc.property(wireText, ({ canonical, text }) => {
        const again = Frame.render(parsed(text))
        if (canonical) assert.strictEqual(again, text)
        else assert.notStrictEqual(again, text)
      }),
      { numRuns: 1000 }
    )
  })

  it("parse → render → parse is stable for every text parse accepts", () => {
    fc.assert(
      fc.property(fc.oneof(wireText.map(({ text }) => text), lhttpish), (text) => {
        const first = Frame.parse(text)
        if (Result.isFailure(first)) return
        const rendered = Frame.render(first.success)
        const second = parsed(rendered)
        assert.deepStrictEqual(entries(second), entries(first.success), JSON.stringify(text))
        assert.strictEqual(Frame.render(second), rendered)
      }),
      { numRuns: 2000 }
    )
  })

  // frames with parts that cannot be written as text: a line break in the command, a name
  // that is empty or holds ":" or a line break, a value with a line break
  const withBreaks = fc.string({ unit: fc.oneof(lineUnit, fc.constantFrom("\r\n", "\r", "\n")), maxLength: 8 })
  const anyFrame = fc.record({
    command: fc.oneof(line, withBreaks),
    headers: fc.array(
      fc.tuple(fc.oneof(headerName, fc.constantFrom("", "a:b", ":"), withBreaks), fc.oneof(line, withBreaks)),
      { maxLength: 4 }
    ).map((pairs) => new Map(pairs)),
    body
  })

  it("parse(render(frame)) is the frame for every frame validate accepts, and validate refuses the others", () => {
    let accepted = 0
    fc.assert(
      fc.property(anyFrame, (frame) => {
        const back = Frame.parse(Frame.render(frame))
        const readsBack = Result.isSuccess(back) && isDeepStrictEqual(entries(back.success), entries(frame))
        const valid = Result.isSuccess(Frame.validate(frame))
        if (valid) accepted++
        assert.strictEqual(valid, readsBack, JSON.stringify(entries(frame)))
      }),
      { numRuns: 1000 }
    )
    assert.isAbove(accepted, 100) // the generator reaches both sides
  })

  it("never throws on any string or bytes: a frame or a ProtocolError", () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: anyChar, maxLength: 40 }), lhttpish), (input) => {
        const result = Frame.parse(input)
        if (Result.isFailure(result)) assert.instanceOf(result.failure, ProtocolError)
      }),
      { numRuns: 2000 }
    )
    fc.assert(
      fc.property(
        fc.oneof(fc.uint8Array({ maxLength: 64 }), lhttpish.map((s) => new TextEncoder().encode(s))),
        (bytes) => {
          const result = Frame.parseBytes(bytes)
          if (Result.isFailure(result)) assert.instanceOf(result.failure, ProtocolError)
        }
      ),
      { numRuns: 2000 }
    )
  })
})

// Mutation testing (docs/testing.md "Mutation testing"): what the survivors of `npm run mutate` showed
// untested. The message of a ProtocolError is the body of its error frame, so it is asserted too.
describe("Frame: what mutation testing found untested", () => {
  const failure = (result: Result.Result<Frame.Frame, ProtocolError>) => {
    assert.isTrue(Result.isFailure(result))
    return Result.isFailure(result) ? [result.failure.reason, result.failure.message] : []
  }

  it("each grammar problem has its own message (the body of the error frame)", () => {
    const cases: ReadonlyArray<readonly [string, string, string]> = [
      ["hello", "NotLhttp", "a frame starts with \"LHTTP/1.0 <command>\""],
      ["LHTTP/1.1 chat", "UnsupportedVersion", "only LHTTP/1.0 is supported"],
      ["LHTTP/1.0\r\n\r\n", "MalformedStartLine", "a single space must follow \"LHTTP/1.0\""],
      ["LHTTP/1.0 chat\rx\r\n\r\n", "MalformedStartLine", "the start line holds a lone CR or LF: lines end with CRLF"],
      [
        "LHTTP/1.0 chat\r\na:1\nb:2\r\n\r\n",
        "MalformedHeader",
        "the header section holds a lone CR or LF: lines end with CRLF"
      ],
      [
        "LHTTP/1.0 chat\r\nnocolon\r\n\r\n",
        "MalformedHeader",
        "a header line is \"name:value\" and this one has no \":\""
      ],
      ["LHTTP/1.0 chat\r\n:v\r\n\r\n", "MalformedHeader", "a header name is empty"]
    ]
    for (const [input, reason, message] of cases) {
      assert.deepStrictEqual(failure(Frame.parse(input)), [reason, message], input)
    }
    const lines = Array.from({ length: 3 }, (_, i) => `h${i}:v`).join("\r\n")
    assert.deepStrictEqual(failure(Frame.parse(`LHTTP/1.0 c\r\n${lines}\r\n\r\n`, { maxHeaders: 2 })), [
      "TooManyHeaders",
      "a frame carries at most 2 headers"
    ])
  })

  it("each validation problem has its own message", () => {
    const cases: ReadonlyArray<readonly [Frame.Frame, string, string]> = [
      [Frame.make("a\r\nb"), "MalformedStartLine", "a command cannot hold a CR or LF"],
      [Frame.make("c", { "": "v" }), "MalformedHeader", "a header name cannot be empty"],
      [Frame.make("c", { "a:b": "v" }), "MalformedHeader", "a header name cannot hold \":\", CR or LF"],
      [Frame.make("c", { "a\nb": "v" }), "MalformedHeader", "a header name cannot hold \":\", CR or LF"],
      [Frame.make("c", { a: "x\ry" }), "MalformedHeader", "a header value cannot hold CR or LF"]
    ]
    for (const [frame, reason, message] of cases) {
      assert.deepStrictEqual(failure(Frame.validate(frame)), [reason, message])
    }
    const encoded = Schema.encodeUnknownResult(Frame.FromString)(Frame.make("c", { a: "x\ry" }))
    assert.isTrue(Result.isFailure(encoded))
    if (Result.isFailure(encoded)) assert.include(encoded.failure.message, "a header value cannot hold CR or LF")
  })

  it("make: a record or a map of headers, an empty body by default", () => {
    const frame = Frame.make("chat", { a: "1", b: "2" })
    assert.deepStrictEqual([frame.command, [...frame.headers], frame.body], ["chat", [["a", "1"], ["b", "2"]], ""])
    const headers = new Map([["x", "y"]])
    assert.strictEqual(Frame.make("c", headers, "body").headers, headers)
    assert.strictEqual(Frame.make("c").headers.size, 0)
    assert.strictEqual(Frame.render(Frame.make("c")), "LHTTP/1.0 c\r\n\r\n")
    assert.strictEqual(Frame.protocol, "LHTTP/1.0")
  })

  it("decodeUtf8: invalid UTF-8 is InvalidUtf8 with its message; a BOM is kept, not eaten", () => {
    const bad = Frame.decodeUtf8(new Uint8Array([0x61, 0xff]))
    assert.isTrue(Result.isFailure(bad))
    if (Result.isFailure(bad)) {
      assert.deepStrictEqual([bad.failure.reason, bad.failure.message], ["InvalidUtf8", "the frame is not valid UTF-8"])
    }
    const bom = new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode("LHTTP/1.0 c\r\n\r\n")])
    assert.deepStrictEqual(Frame.decodeUtf8(bom), Result.succeed("\uFEFFLHTTP/1.0 c\r\n\r\n"))
    // a frame that starts with a BOM does not start with "LHTTP/": the bytes are read as they are
    assert.deepStrictEqual(failure(Frame.parseBytes(bom))[0], "NotLhttp")
  })

  it("the Headers schema: a Map of string names to string values, nothing else", () => {
    const is = Schema.is(Frame.Headers)
    assert.isTrue(is(new Map([["a", "b"]])))
    assert.isTrue(is(new Map()))
    assert.isFalse(is({ a: "b" }))
    assert.isFalse(is(new Map<unknown, unknown>([[1, "b"]])))
    assert.isFalse(is(new Map<unknown, unknown>([["a", 1]])))
    assert.isFalse(is(new Map<unknown, unknown>([["a", "b"], ["c", 2]])))
    const isFrame = Schema.is(Frame.Frame)
    assert.isTrue(isFrame(Frame.make("c")))
    assert.isFalse(isFrame({ command: "c", headers: new Map() }))
    assert.isFalse(isFrame({ command: "c", headers: new Map<unknown, unknown>([["a", 1]]), body: "" }))
  })
})
