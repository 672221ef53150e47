import { assert, describe, it } from "@effect/vitest"
import { Result } from "effect"
import * as fc from "fast-check"
import * as Channel from "../src/Channel.ts"

const list = (value: string): ReadonlyArray<string> => {
  const result = Channel.parseList(value)
  assert.isTrue(Result.isSuccess(result), Result.isFailure(result) ? result.failure.message : "")
  return Result.isSuccess(result) ? result.success : []
}

const refused = (value: string, text: string) => {
  const result = Channel.parseList(value)
  assert.isTrue(Result.isFailure(result), `expected ${JSON.stringify(value)} to be refused`)
  if (Result.isFailure(result)) {
    assert.strictEqual(result.failure.reason, "InvalidChannel")
    assert.include(result.failure.message, text)
  }
}

describe("Channel.parseList", () => {
  it("splits on single spaces", () => assert.deepStrictEqual(list("a b c"), ["a", "b", "c"]))
  it("keeps one of each channel, in first-seen order", () => assert.deepStrictEqual(list("b a b a"), ["b", "a"]))
  it("allows hierarchical channels", () => assert.deepStrictEqual(list("room.1 user_2.inbox"), ["room.1", "user_2.inbox"]))
  it("allows UTF-8 and punctuation other than the wildcards", () =>
    assert.deepStrictEqual(list("café chat-room:1 a/b"), ["café", "chat-room:1", "a/b"]))
  // reference §4.1 and §8 (B10): each of these broke the original's shared NATS connection or eavesdropped
  it("refuses an empty id from a doubled space", () => refused("a  b", "is empty"))
  it("refuses an empty id from a leading space", () => refused(" a", "is empty"))
  it("refuses an empty id from a trailing space", () => refused("a ", "is empty"))
  it("refuses an empty list", () => refused("", "is empty"))
  it("refuses the > wildcard", () => refused(">", "\"*\" or \">\""))
  it("refuses the * wildcard", () => refused("room.*", "\"*\" or \">\""))
  it("refuses a tab, which NATS reads as a queue group", () => refused("a\tb", "whitespace"))
  it("refuses other whitespace and control characters", () => {
    refused("a\u00a0b", "whitespace")
    refused("a\u0000b", "control")
    refused("a\u007fb", "control")
  })
  it("refuses empty tokens", () => {
    refused("a..b", "empty dot-separated token")
    refused(".a", "empty dot-separated token")
    refused("a.", "empty dot-separated token")
    refused(".", "empty dot-separated token")
  })
  it("refuses system and reply subjects", () => {
    refused("$SYS.x", "reserved")
    refused("$JS.API", "reserved")
    refused("_INBOX.x", "reserved")
    refused("_INBOX", "reserved")
  })
  it("refuses the whole list on one bad id", () => refused("good also.good a..b", "a..b"))
  it("caps the length", () => {
    assert.deepStrictEqual(list("x".repeat(255)), ["x".repeat(255)])
    refused("x".repeat(256), "longer than 255")
    assert.isTrue(Result.isFailure(Channel.validate("x".repeat(11), { maxLength: 10 })))
  })
  it("shortens a long id in the message", () => {
    const result = Channel.validate("*".repeat(1000))
    assert.isTrue(Result.isFailure(result) && result.failure.message.length < 200)
  })
})

describe("Channel properties", () => {
  it("every accepted id is a literal NATS subject of non-empty tokens", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 20 }), (id) => {
        const result = Channel.validate(id)
        if (Result.isSuccess(result)) {
          assert.isFalse(/[\s*>]/.test(id))
          assert.isTrue(id.split(".").every((token) => token.length > 0))
          assert.isFalse(id.startsWith("$") || id.startsWith("_INBOX"))
        } else {
          assert.strictEqual(result.failure.reason, "InvalidChannel")
        }
      }),
      { numRuns: 3000 }
    )
  })
})
