/**
 * Codec benchmark: frames per second to parse and to render typical frames
 * (50 B, 500 B and 5 KB bodies), beside JSON.parse / JSON.stringify of the
 * equivalent `{ command, headers, body }` object, measured in the same run
 * and reported as ratios.
 *
 *   npm run bench:codec      (or: node bench/codec.ts; npm run bench runs every benchmark)
 */
import { Schema } from "effect"
import * as Frame from "../src/Frame.ts"
import * as Message from "../src/Message.ts"
import { writeResult } from "./result.ts"

const sizes = [50, 500, 5000]
const budgetMs = Number(process.env.BENCH_MS ?? 700)

const rounds = 7

// Runs every case for `rounds` short rounds, interleaved so that the machine's
// drift touches them alike; returns each case's best rate in operations per second.
const measure = (cases: ReadonlyArray<(i: number) => unknown>): Array<number> => {
  for (const fn of cases) for (let i = 0; i < 20_000; i++) fn(i)
  const best = cases.map(() => 0)
  for (let round = 0; round < rounds; round++) {
    cases.forEach((fn, index) => {
      let ops = 0
      const start = performance.now()
      let elapsed = 0
      while (elapsed < budgetMs / rounds) {
        for (let i = 0; i < 1000; i++) fn(i)
        ops += 1000
        elapsed = performance.now() - start
      }
      best[index] = Math.max(best[index]!, (ops / elapsed) * 1000)
    })
  }
  return best
}

let sink = 0
const keep = (value: unknown) => {
  if (value === undefined) sink++
}

const decodeMessage = Schema.decodeSync(Message.FromString)
const rows: Array<Record<string, string>> = []
const results: Array<Record<string, number>> = []
const fmt = (n: number) => `${(n / 1e6).toFixed(2)}M/s`
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`

for (const size of sizes) {
  const body = "x".repeat(size)
  const frame = Frame.make("chat", { "content-type": "text/plain", publish: "room-1" }, body)
  const text = Frame.render(frame)
  const object = { command: frame.command, headers: Object.fromEntries(frame.headers), body }
  const json = JSON.stringify(object)

  const [jsonParse, fastParse, typedDecode, schemaDecode, jsonStringify, render] = measure([
    () => keep(JSON.parse(json)),
    () => keep(Frame.parse(text)),
    () => keep(Message.decode(text)),
    () => keep(decodeMessage(text)),
    () => keep(JSON.stringify(object)),
    () => keep(Frame.render(frame))
  ]) as [number, number, number, number, number, number]

  results.push({
    bodyBytes: size,
    jsonParse,
    frameParse: fastParse,
    messageDecode: typedDecode,
    schemaDecode,
    jsonStringify,
    render
  })
  rows.push({
    body: `${size} B`,
    "JSON.parse": fmt(jsonParse),
    "Frame.parse": `${fmt(fastParse)} (${ratio(fastParse, jsonParse)})`,
    "Message.decode": `${fmt(typedDecode)} (${ratio(typedDecode, jsonParse)})`,
    "Schema Message": `${fmt(schemaDecode)} (${ratio(schemaDecode, jsonParse)})`,
    "JSON.stringify": fmt(jsonStringify),
    "Frame.render": `${fmt(render)} (${ratio(render, jsonStringify)})`
  })
}

console.log(`codec benchmark, node ${process.version}, ${budgetMs} ms per case (best of ${rounds} interleaved rounds)`)
console.log("ratios: parse and decode against JSON.parse, render against JSON.stringify\n")
console.table(rows)
writeResult({ unit: "operations/s", budgetMs, rounds, sizes: results })
if (sink < 0) console.log(sink)
