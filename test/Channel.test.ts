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
  it("allows hierarchical channels", () =>
    assert.deepStrictEqual(list("room.1 user_2.inbox"), ["room.1", "user_2.inbox"]))
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

// The rules of docs/protocol.md §4.1, written out one by one.
const followsTheRules = (id: string): boolean =>
  id.length > 0 &&
  id.length <= 255 &&
  !/\s/.test(id) && // whitespace, tabs included
  !/[\x00-\x1f\x7f]/.test(id) && // ASCII control characters
  !id.includes("*") &&
  !id.includes(">") &&
  id.split(".").every((token) => token.length > 0) &&
  !id.startsWith("$") &&
  !id.startsWith("_INBOX")

/**
 * Any code point, lone surrogates included, weighted toward ASCII: what fast-check's "binary" unit
 * gives, without its seconds of start-up.
 */
const anyChar = fc.oneof(
  fc.integer({ min: 0, max: 0x7f }),
  fc.integer({ min: 0, max: 0xffff }),
  fc.integer({ min: 0, max: 0x10ffff })
).map((code) => String.fromCodePoint(code))

// Ids near the rules: each piece is allowed, or breaks exactly one rule.
const nearValid = fc.string({
  unit: fc.constantFrom(
    ...["a", "B", "7", "é", "😀", "-", ":", "/", "_", "."],
    ...["$", "_INBOX", "*", ">", "\t", "\u00a0", "\u0000", "\u007f"]
  ),
  maxLength: 6
})

describe("Channel properties", () => {
  it("validate accepts an id exactly when it follows every rule of §4.1", () => {
    const seen = { accepted: 0, refused: 0 }
    fc.assert(
      fc.property(fc.oneof(nearValid, fc.string({ unit: anyChar, maxLength: 20 })), (id) => {
        const result = Channel.validate(id)
        assert.strictEqual(Result.isSuccess(result), followsTheRules(id), JSON.stringify(id))
        if (Result.isFailure(result)) assert.strictEqual(result.failure.reason, "InvalidChannel")
        seen[Result.isSuccess(result) ? "accepted" : "refused"]++
      }),
      { numRuns: 2000 }
    )
    // both sides are reached, so neither "accept all" nor "refuse all" passes
    assert.isAbove(seen.accepted, 200)
    assert.isAbove(seen.refused, 200)
  })

  it("parseList applies a list whole or not at all, each channel once in first-seen order", () => {
    // a few ids recur, so that lists repeat a channel
    const lists = fc.array(fc.oneof(nearValid, fc.constantFrom("a", "room.1", "é")), { minLength: 1, maxLength: 5 })
    fc.assert(
      fc.property(lists, (ids) => {
        const result = Channel.parseList(ids.join(" "))
        if (ids.every(followsTheRules)) {
          assert.isTrue(Result.isSuccess(result), JSON.stringify(ids))
          if (Result.isSuccess(result)) assert.deepStrictEqual<ReadonlyArray<string>>(result.success, [...new Set(ids)])
        } else {
          assert.isTrue(Result.isFailure(result) && result.failure.reason === "InvalidChannel", JSON.stringify(ids))
        }
      }),
      { numRuns: 500 }
    )
  })
})

// Mutation testing (docs/testing.md "Mutation testing"): what the survivors of `npm run mutate` showed untested
describe("Channel: what mutation testing found untested", () => {
  const message = (value: string, options?: Channel.Options) => {
    const result = Channel.validate(value, options)
    assert.isTrue(Result.isFailure(result), value)
    return Result.isFailure(result) ? result.failure.message : ""
  }

  it("a channel of exactly maxLength with a wildcard is refused for the wildcard, not for its length", () => {
    assert.strictEqual(
      message("ab*", { maxLength: 3 }),
      "channel \"ab*\" holds whitespace, a control character, \"*\" or \">\""
    )
    assert.strictEqual(message("abcd", { maxLength: 3 }), "channel \"abcd\" is longer than 3 characters")
    assert.isTrue(Result.isSuccess(Channel.validate("abc", { maxLength: 3 })))
  })

  it("the message shows an id of up to 64 characters whole, a longer one cut at 64 with an ellipsis", () => {
    const x64 = "x".repeat(63) + "*"
    assert.strictEqual(message(x64), `channel "${x64}" holds whitespace, a control character, "*" or ">"`)
    const x65 = "x".repeat(64) + "*"
    assert.strictEqual(message(x65), `channel "${"x".repeat(64)}"… holds whitespace, a control character, "*" or ">"`)
  })
})
