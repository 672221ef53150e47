import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import * as fc from "fast-check"
import * as Multipart from "../src/Multipart.ts"

const parts = (body: string, offsets: string) => {
  const result = Multipart.split(body, offsets)
  assert.isTrue(Result.isSuccess(result), Result.isFailure(result) ? result.failure.message : "")
  return Result.isSuccess(result)
    ? result.success.map((p) => ({ headers: Object.fromEntries(p.headers), body: p.body }))
    : []
}

const fails = (body: string, offsets: string, text: string) => {
  const result = Multipart.split(body, offsets)
  assert.isTrue(Result.isFailure(result), `expected a failure for ${JSON.stringify(offsets)}`)
  if (Result.isFailure(result)) {
    assert.strictEqual(result.failure.reason, "InvalidMultipart")
    assert.include(result.failure.message, text)
  }
}

describe("Multipart: reference §4.4 examples", () => {
  it("worked example 1: two parts with headers", () => {
    assert.deepStrictEqual(parts("k1:v1\r\n\r\nbody1k2:v2\r\n\r\nbody2", "0 14"), [
      { headers: { k1: "v1" }, body: "body1" },
      { headers: { k2: "v2" }, body: "body2" }
    ])
  })

  const readme = "content-type:text/json\r\n\r\n{filename:file.txt,fileLen:5}content-type:text/plain\r\n\r\nhello"
  it("worked example 2: the README's offsets are off by one; 0 55 is right", () => {
    assert.strictEqual(new TextEncoder().encode(readme).length, 87)
    assert.deepStrictEqual(parts(readme, "0 55"), [
      { headers: { "content-type": "text/json" }, body: "{filename:file.txt,fileLen:5}" },
      { headers: { "content-type": "text/plain" }, body: "hello" }
    ])
  })
  it("worked example 2: with the README's 0 56 it cuts where told, as the original does", () => {
    assert.deepStrictEqual(parts(readme, "0 56"), [
      { headers: { "content-type": "text/json" }, body: "{filename:file.txt,fileLen:5}c" },
      { headers: { "ontent-type": "text/plain" }, body: "hello" }
    ])
  })
  // Go gives part 1 the header {"": ""} (B1 in a part). Fixed: an empty header block is no headers.
  it("worked example 3: a part without headers", () => {
    assert.deepStrictEqual(parts("\r\n\r\nAAAk:v\r\n\r\nBB", "0 7"), [
      { headers: {}, body: "AAA" },
      { headers: { k: "v" }, body: "BB" }
    ])
  })
  it("ignores bytes before the first offset", () => {
    assert.deepStrictEqual(parts("junkk:v\r\n\r\nB", "4"), [{ headers: { k: "v" }, body: "B" }])
  })
  it("counts offsets in UTF-8 bytes", () => {
    // "é" is two bytes: the second part starts at byte 10, character 9
    assert.deepStrictEqual(parts("a:é\r\n\r\nxyb:2\r\n\r\nz", "0 10"), [
      { headers: { a: "é" }, body: "xy" },
      { headers: { b: "2" }, body: "z" }
    ])
  })
})

// Go panics on most of these (B12) or keeps the previous message's parts; here each is a typed error.
describe("Multipart: bad offsets and parts are typed errors", () => {
  const body = "k1:v1\r\n\r\nbody1k2:v2\r\n\r\nbody2"
  it("a non-number", () => fails(body, "0 x", "not a decimal number"))
  it("a sign", () => fails(body, "+0 14", "not a decimal number"))
  it("a negative offset", () => fails(body, "0 -14", "not a decimal number"))
  it("a double space", () => fails(body, "0  14", "not a decimal number"))
  it("an empty value", () => fails(body, "", "not a decimal number"))
  it("decreasing offsets", () => fails(body, "14 0", "must not decrease"))
  it("past the end", () => fails(body, "0 29", "past the end"))
  it("a part without a header block", () => fails("k:v\r\nbody", "0", "no header block"))
  it("a bare body", () => fails("body", "0", "no header block"))
  it("an empty part", () => fails(body, "0 0 14", "part 0 has no header block"))
  it("an offset at the very end gives an empty part", () => fails(body, "0 28", "part 1 has no header block"))
  it("a malformed header in a part", () => fails("nocolon\r\n\r\nbody", "0", "part 0"))
  it("an offset inside a UTF-8 character", () => fails("a:é\r\n\r\nxy", "0 3", "UTF-8"))
  it("no offsets", () => {
    const result = Multipart.split(body, [])
    assert.isTrue(Result.isFailure(result))
  })
})

const codePoint = fc.oneof(
  fc.integer({ min: 0, max: 0x7f }),
  fc.integer({ min: 0, max: 0xffff }),
  fc.integer({ min: 0, max: 0x10ffff })
)
/**
 * Any code point, lone surrogates included, weighted toward ASCII: what fast-check's "binary" unit
 * gives, without its seconds of start-up.
 */
const anyChar = codePoint.map((code) => String.fromCodePoint(code))
// text off the wire is well-formed UTF-16 (a WebSocket text frame is UTF-8): no lone surrogates
const textUnit = fc.oneof(
  fc.constantFrom("a", " ", ":", "é", "😀", "e\u0301"),
  codePoint.filter((c) => c < 0xd800 || c > 0xdfff).map((c) => String.fromCodePoint(c))
)

describe("Multipart properties", () => {
  const name = fc.oneof(
    fc.constantFrom("k", "content-type", "é"),
    fc.string({ unit: textUnit, minLength: 1, maxLength: 6 })
  )
    .filter((s) => !/[:\r\n]/.test(s))
  const value = fc.string({ unit: textUnit, maxLength: 8 }).filter((s) => !/[\r\n]/.test(s))
  const bodyUnit = fc.oneof(textUnit, fc.constantFrom("\r\n", "\r\n\r\n", "k:v", "\r", "\n"))
  const body = fc.string({ unit: bodyUnit, maxLength: 16 })
  const part = fc.record({
    headers: fc.array(fc.tuple(name, value), { maxLength: 4 }).map((entries) => new Map(entries)),
    body
  })

  it("split(join(parts)) gives the parts back", () => {
    fc.assert(
      fc.property(fc.array(part, { minLength: 1, maxLength: 6 }), (input) => {
        const joined = Multipart.join(input)
        const result = Multipart.split(joined.body, joined.offsets)
        assert.isTrue(Result.isSuccess(result))
        if (Result.isSuccess(result)) {
          assert.deepStrictEqual(
            result.success.map((p) => [[...p.headers], p.body]),
            input.map((p) => [[...p.headers], p.body])
          )
        }
      }),
      { numRuns: 500 }
    )
  })

  // Bodies written by hand, not by join: bytes before the first offset, header lines that repeat
  // a name, no header lines at all (the part starts with CRLF CRLF), CRLF CRLF inside a part's
  // body, and offsets counted in UTF-8 bytes here with Buffer.
  const rawPart = fc.record({ lines: fc.array(fc.tuple(name, value), { maxLength: 4 }), body })
  it("split reads every body of §4.3 into the parts its offsets mark", () => {
    const junkBefore = fc.string({ unit: textUnit, maxLength: 6 })
    fc.assert(
      fc.property(junkBefore, fc.array(rawPart, { minLength: 1, maxLength: 5 }), (junk, parts) => {
        let text = junk
        const offsets: Array<number> = []
        for (const { body, lines } of parts) {
          offsets.push(Buffer.byteLength(text, "utf8"))
          text += lines.map(([n, v]) => `${n}:${v}`).join("\r\n") + "\r\n\r\n" + body
        }
        const result = Multipart.split(text, offsets.join(" "))
        assert.isTrue(Result.isSuccess(result), JSON.stringify([text, offsets]))
        if (Result.isSuccess(result)) {
          assert.deepStrictEqual(
            result.success.map((p) => [[...p.headers], p.body]),
            parts.map((p) => [[...new Map(p.lines)], p.body])
          )
        }
      }),
      { numRuns: 500 }
    )
  })

  it("never throws on any body and offsets", () => {
    fc.assert(
      fc.property(fc.string({ unit: anyChar, maxLength: 40 }), fc.string({ maxLength: 12 }), (body, offsets) => {
        const result = Multipart.split(body, offsets)
        assert.isTrue(Result.isSuccess(result) || result.failure.reason === "InvalidMultipart")
      }),
      { numRuns: 2000 }
    )
  })
})

// Mutation testing (docs/testing.md "Mutation testing"): what the survivors of `npm run mutate` showed untested
describe("Multipart: what mutation testing found untested", () => {
  const message = (body: string, offsets: string | ReadonlyArray<number>) => {
    const result = Multipart.split(body, offsets)
    assert.isTrue(Result.isFailure(result), `expected a failure for ${JSON.stringify(offsets)}`)
    return Result.isFailure(result) ? result.failure.message : ""
  }

  it("an offset is all digits, at most 15 of them", () => {
    const body = "a:1\r\n\r\nx"
    assert.strictEqual(
      message(body, "0 1x"),
      "offset \"1x\" is not a decimal number (offsets are separated by single spaces)"
    )
    assert.strictEqual(
      message(body, "0000000000000000"),
      "offset \"0000000000000000\" is not a decimal number (offsets are separated by single spaces)"
    )
    assert.strictEqual(message(body, []), "no offsets")
  })

  it("a non-ASCII body: offsets count bytes; the last may be the end, one past it is refused", () => {
    const part = "k:é\r\n\r\nbé" // 11 bytes, 9 characters
    assert.strictEqual(message(part, "0 12"), "offset 12 is past the end of the 11-byte body")
    assert.strictEqual(message(part + part, "0 11 23"), "offset 23 is past the end of the 22-byte body")
    // an offset at the very end is not past it: the last part is empty, so it has no header block
    assert.strictEqual(message(part, "0 11"), "part 1 has no header block ended by CRLF CRLF")
    assert.strictEqual(message("k:1\r\n\r\nb", "0 9"), "offset 9 is past the end of the 8-byte body")
  })
})

describe("Multipart: the header and a BOM", () => {
  it("the header is named multipart", () => assert.strictEqual(Multipart.header, "multipart"))

  it("a part that starts with a BOM keeps it: the bytes are read as they are", () => {
    const result = Multipart.split("k:v\r\n\r\na\uFEFFb:1\r\n\r\nc", "0 8")
    assert.isTrue(Result.isSuccess(result))
    if (Result.isSuccess(result)) {
      assert.deepStrictEqual(result.success.map((part) => [[...part.headers], part.body]), [
        [[["k", "v"]], "a"],
        [[["\uFEFFb", "1"]], "c"]
      ])
    }
  })
})
