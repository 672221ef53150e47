/**
 * Fuzzing: 100,000 generated and mutated frames against the codec, 100,000
 * through the whole pipeline on the in-memory transport, and a twentieth of
 * that over a real WebSocket. The codec never throws; the server answers
 * every frame as the docs say (the statuses of protocol.md §5 and server.md
 * read from the docs, one refusal per frame that does not decode, in order,
 * with its id; one UnknownCommand per frame for no processor; one echo per
 * valid echo), stays alive, and goes on serving. `FUZZ_RUNS` sets the count
 * (`scripts/fuzz.sh` runs a longer one).
 */
import { assert, describe, it } from "@effect/vitest"
import { type Duration, Effect, Result } from "effect"
import * as fc from "fast-check"
import { readFileSync } from "node:fs"
import * as Echo from "../src/demo/Echo.ts"
import * as Frame from "../src/Frame.ts"
import * as Message from "../src/Message.ts"
import { connect as connectWs, frame, startServer } from "./utils/lhttp.ts"
import { startMemoryServer } from "./utils/memory.ts"

const runs = Number(process.env.FUZZ_RUNS ?? 100_000)

/** Pieces of the grammar, built into frames. */
const piece = fc.constantFrom(
  "LHTTP/1.0 ",
  "LHTTP/1.1 ",
  "chat",
  "echo",
  "\r\n",
  "\n",
  "\r",
  ":",
  " ",
  "a",
  "..",
  ">",
  "*",
  "$SYS",
  "publish:",
  "subscribe:",
  "unsubscribe:",
  "multipart:",
  "upstream:",
  "id:",
  "0",
  "5 1",
  "POST http://x/",
  "\r\n\r\n",
  "é",
  "\u0000",
  "\uD800",
  "room",
  "fuzz"
)
const built = fc.array(piece, { maxLength: 24 }).map((parts) => parts.join(""))

/** A valid frame with one mutation: a character replaced, inserted or removed. */
const valid = fc.record({
  command: fc.constantFrom("chat", "echo", "x"),
  headers: fc.array(
    fc.tuple(fc.constantFrom("publish", "subscribe", "id", "k", "multipart"), fc.string({ maxLength: 8 })),
    {
      maxLength: 4
    }
  ),
  body: fc.string({ maxLength: 32 })
}).map(({ body, command, headers }) =>
  `LHTTP/1.0 ${command}\r\n${headers.map(([name, value]) => `${name}:${value}\r\n`).join("")}\r\n${body}`
)
const mutated = fc.tuple(
  valid,
  fc.nat(),
  fc.constantFrom("replace", "insert", "remove"),
  fc.string({ minLength: 1, maxLength: 1 })
)
  .map(([text, at, how, char]) => {
    const i = at % (text.length + 1)
    return how === "insert"
      ? text.slice(0, i) + char + text.slice(i)
      : how === "replace"
      ? text.slice(0, i) + char + text.slice(i + 1)
      : text.slice(0, i) + text.slice(i + 1)
  })

const anything = fc.oneof(built, mutated, fc.string({ maxLength: 64 }))

/**
 * The documented status of each reason, read from the docs themselves (an oracle independent of the code):
 * the tables of protocol.md §5 and of server.md's "The server's reasons", and upstream.md's `NNN Reason`.
 */
const documentedStatus = (() => {
  const table = new Map<string, number>()
  for (const doc of ["docs/protocol.md", "docs/server.md", "docs/upstream.md"]) {
    const text = readFileSync(doc, "utf8")
    for (const row of text.matchAll(/^\| `([A-Za-z]+)` \| (\d{3}) \|/gm)) table.set(row[1]!, Number(row[2]))
    for (const quoted of text.matchAll(/`(\d{3}) ([A-Z][A-Za-z]+)`/g)) table.set(quoted[2]!, Number(quoted[1]))
  }
  return table
})()

/** The reasons of protocol.md §5: the codec's own refusals. */
const codecReasons = new Set(
  Array.from(
    readFileSync("docs/protocol.md", "utf8").split("## 5. The error frame")[1]!.split("## 6.")[0]!.matchAll(
      /^\| `([A-Za-z]+)` \|/gm
    ),
    (row) => row[1]!
  )
)

/**
 * The `id` header of a text whose header section parses, read line by line (the last value counts, an empty one is
 * no id), or undefined.
 */
const idOf = (text: string): string | undefined => {
  const end = text.indexOf("\r\n\r\n")
  const head = end === -1 ? text : text.slice(0, end)
  let id: string | undefined
  for (const line of head.split("\r\n").slice(1)) if (line.startsWith("id:")) id = line.slice(3)
  return id === "" ? undefined : id
}

/** The answers until the marker `echo` with id `end`. */
const until = (next: (timeout?: Duration.Input) => Effect.Effect<string, Error>, timeout: Duration.Input) =>
  Effect.gen(function*() {
    const answers: Array<string> = []
    while (true) {
      const text = yield* next(timeout)
      if (text === frame("echo", { id: "end" }, "end")) return answers
      answers.push(text)
    }
  })

const counts = (items: ReadonlyArray<string>) => {
  const map = new Map<string, number>()
  for (const item of items) map.set(item, (map.get(item) ?? 0) + 1)
  return [...map].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
}

/**
 * Checks the answers to `inputs` (sent in order on one connection, then the marker):
 * - every error frame's status is the documented one for its reason, and its reason is documented;
 * - the codec's refusals (protocol.md §5) are exactly one per input that does not decode, in the inputs' order,
 *   each with the input's `id` when its header section parsed (none when it did not);
 * - `404 UnknownCommand`: exactly one per valid input of a command without a processor and without a built-in header,
 *   with its `id`; `UpstreamNotConfigured` one per valid input with an `upstream` header (this server calls none);
 * - every valid `echo` is answered exactly once, with its body and its `id`;
 * - every other valid input with an `id` that publishes (and calls no upstream) is acknowledged once, with
 *   its command and `id`, unless a `429 TooManySubscriptions` refused it;
 * - nothing else but deliveries of what the fuzzer itself published (frames with a `publish` header) and
 *   `429 TooManySubscriptions`.
 */
const checkAnswers = (inputs: ReadonlyArray<string>, answers: ReadonlyArray<string>, seed: number) => {
  const refusals: Array<string> = []
  const unknown: Array<string> = []
  const echoes: Array<string> = []
  const acks: Array<string> = []
  // a valid `upstream` header on this server, which calls no upstream: `UpstreamNotConfigured`, with the id
  const upstreams: Array<string> = []
  for (const input of inputs) {
    const parsed = Frame.parse(input, { maxHeaders: 64 })
    const message = Message.decode(input, { maxHeaders: 64 })
    if (Result.isFailure(message)) {
      const id = Result.isSuccess(parsed) ? idOf(input) : undefined
      refusals.push(`${message.failure.reason} ${id ?? "-"}`)
      continue
    }
    // (a valid frame parses: its command, headers and body as the grammar reads them)
    const { body, command, headers } = Result.getOrThrow(parsed)
    const id = idOf(input)
    const decoded = message.success
    if (command === "echo") {
      echoes.push(frame("echo", id === undefined ? {} : { id }, body))
    } else if (decoded._tag !== "Failure" && decoded.upstream !== undefined) {
      upstreams.push(id ?? "-")
    } else if (id !== undefined && decoded._tag !== "Failure" && decoded.publish.length > 0 && !decoded.upstream) {
      acks.push(frame(command, { id }))
    } else if (!["subscribe", "publish", "unsubscribe", "upstream"].some((name) => headers.has(name))) {
      unknown.push(id ?? "-")
    }
  }
  const seen = {
    refusals: [] as Array<string>,
    unknown: [] as Array<string>,
    echoes: [] as Array<string>,
    acks: [] as Array<string>,
    upstreams: [] as Array<string>,
    tooMany: 0
  }
  for (const text of answers) {
    const error = /^LHTTP\/1\.0 error\r\nstatus:(\d{3})\r\nreason:([A-Za-z]+)\r\n(?:id:([^\r\n]*)\r\n)?\r\n/.exec(text)
    if (error !== null) {
      const [, status, reason, id] = error
      assert.strictEqual(
        Number(status),
        documentedStatus.get(reason!),
        `the documented status of ${reason} (FUZZ_SEED=${seed})`
      )
      if (codecReasons.has(reason!)) seen.refusals.push(`${reason} ${id ?? "-"}`)
      else if (reason === "UnknownCommand") seen.unknown.push(id ?? "-")
      else if (reason === "UpstreamNotConfigured") seen.upstreams.push(id ?? "-")
      else {
        assert.strictEqual(reason, "TooManySubscriptions", `${JSON.stringify(text)} (FUZZ_SEED=${seed})`)
        seen.tooMany++
      }
      continue
    }
    const parsed = Frame.parse(text)
    assert.isTrue(Result.isSuccess(parsed), JSON.stringify(text))
    // a delivery of the fuzzer's own publish carries its publish header; an echo reply carries only its id
    if (Result.isSuccess(parsed) && parsed.success.headers.has("publish")) continue
    if (text.startsWith("LHTTP/1.0 echo\r\n")) seen.echoes.push(text)
    else seen.acks.push(text)
  }
  assert.deepStrictEqual(seen.refusals, refusals, `the codec's refusals, in order, with ids (FUZZ_SEED=${seed})`)
  assert.deepStrictEqual(counts(seen.unknown), counts(unknown), `UnknownCommand, with ids (FUZZ_SEED=${seed})`)
  assert.deepStrictEqual(counts(seen.echoes), counts(echoes), `every valid echo answered once (FUZZ_SEED=${seed})`)
  assert.deepStrictEqual(
    counts(seen.upstreams),
    counts(upstreams),
    `UpstreamNotConfigured, with ids (FUZZ_SEED=${seed})`
  )
  // each acknowledgement is one expected; the ones missing were refused (TooManySubscriptions)
  const expectedAcks = new Map(counts(acks))
  for (const [ack, count] of counts(seen.acks)) {
    assert.isAtMost(
      count,
      expectedAcks.get(ack) ?? 0,
      `an acknowledgement not asked for: ${JSON.stringify(ack)} (FUZZ_SEED=${seed})`
    )
  }
  assert.isAtMost(
    acks.length - seen.acks.length,
    seen.tooMany,
    `every publish with an id acknowledged (FUZZ_SEED=${seed})`
  )
  assert.isAbove(acks.length, 0)
  assert.isAbove(refusals.length, inputs.length / 10)
  assert.isAbove(echoes.length, 0)
}

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

  it.live(
    "the pipeline: every answer as the docs say (statuses, reasons, ids, echoes); the server stays alive",
    () =>
      Effect.gen(function*() {
        const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000)
        const inputs = fc.sample(anything, { numRuns: runs, seed })
        const { connect } = yield* startMemoryServer({ processors: [Echo.Echo] }, Echo.layer)
        const fuzzer = yield* connect()
        for (let i = 0; i < inputs.length; i += 1000) yield* fuzzer.transport.sendAll(inputs.slice(i, i + 1000))
        yield* fuzzer.send(frame("echo", { id: "end" }, "end"))
        const answers = yield* until(fuzzer.next, "30 seconds")
        checkAnswers(inputs, answers, seed)
        // another connection is served
        const other = yield* connect()
        yield* other.send(frame("echo", {}, "still here"))
        assert.strictEqual(yield* other.next(), frame("echo", {}, "still here"))
      }),
    120_000
  )

  it.live("over a real WebSocket: a share of the inputs, the same answers", () =>
    Effect.gen(function*() {
      const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000) + 1
      // what a WebSocket text frame carries of a JavaScript string: its UTF-8 (a lone surrogate becomes U+FFFD)
      const inputs = fc.sample(anything, { numRuns: Math.max(1, Math.floor(runs / 20)), seed }).map((input) =>
        Buffer.from(input, "utf8").toString("utf8")
      )
      const server = yield* startServer({ processors: [Echo.Echo] }, Echo.layer)
      const fuzzer = yield* connectWs(server.url)
      for (const input of inputs) fuzzer.ws.send(input)
      yield* fuzzer.send(frame("echo", { id: "end" }, "end"))
      const answers = yield* until(fuzzer.next, "30 seconds")
      checkAnswers(inputs, answers, seed)
      yield* fuzzer.send(frame("echo", {}, "still here"))
      assert.strictEqual(yield* fuzzer.next(), frame("echo", {}, "still here"))
    }), 120_000)
})
