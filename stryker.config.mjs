// Mutation testing (StrykerJS with its vitest runner): `npm run mutate`, or one group of modules with
// `MUTATE=codec npm run mutate` (groups below; several: MUTATE=outbox,rate). Not part of `npm test`:
// docs/testing.md "Mutation testing" says what it covers, how long it takes and the scores.
// Its sandbox (.stryker-tmp/) and reports (reports/mutation/) are ignored by git.

import { readFileSync } from "node:fs"

// `file:from-to`, the lines from the one that holds `first` to the one before that holding `last` (the part of
// a file that matters, found by its text so that edits above it do not move the range)
const part = (file, first, last) => {
  const lines = readFileSync(new URL(file, import.meta.url), "utf8").split("\n")
  const from = lines.findIndex((line) => line.includes(first))
  const to = lines.findIndex((line, i) => i > from && line.includes(last))
  if (from === -1 || to === -1) throw new Error(`stryker.config.mjs: ${file} no longer holds ${first} … ${last}`)
  return `${file}:${from + 1}-${to}`
}

// each group: the source it mutates (a range for the part of a file that matters), and the test
// files that run against it (the rest of the suite is not run)
export const groups = {
  codec: {
    mutate: [
      "src/Frame.ts",
      "src/internal/wire/grammar.ts",
      "src/Message.ts",
      "src/Channel.ts",
      "src/Multipart.ts"
    ],
    testFiles: [
      "test/Frame.test.ts",
      "test/Message.test.ts",
      "test/Channel.test.ts",
      "test/Multipart.test.ts",
      "test/ErrorFrame.test.ts"
    ]
  },
  outbox: {
    mutate: ["src/internal/server/outbox.ts"],
    testFiles: ["test/Outbox.test.ts", "test/LhttpServer.test.ts"]
  },
  // the built-in after filter: since checks, authorization, subscribe / publish / unsubscribe
  pipeline: {
    mutate: [part("src/internal/server/builtins.ts", "const pubSub = (", "const callUpstream = ")],
    testFiles: ["test/LhttpServer.test.ts", "test/History.test.ts", "test/Hub.test.ts"]
  },
  rate: {
    mutate: ["src/internal/server/rate.ts"],
    testFiles: ["test/Rate.test.ts", "test/LhttpServer.test.ts"]
  },
  // the hub's positions, gates and recovery (the fan-out, the recovery module, the hub's subscribe), and the
  // History module
  history: {
    mutate: [
      "src/internal/hub/fanOut.ts",
      "src/internal/hub/recovery.ts",
      part("src/Hub.ts", "const subscribe = (", "function unsubscribe("),
      "src/History.ts"
    ],
    testFiles: ["test/Hub.test.ts", "test/History.test.ts"]
  }
}

// the groups named by MUTATE (all by default)
export const chosen = (process.env.MUTATE ?? Object.keys(groups).join(",")).split(",").map((name) => name.trim())
for (const name of chosen) {
  if (!(name in groups)) throw new Error(`MUTATE: no group ${name} (groups: ${Object.keys(groups).join(", ")})`)
}
const unique = (list) => Array.from(new Set(list))
/** The test files of the chosen groups: stryker.vitest.config.mjs runs these only. */
export const testFiles = unique(chosen.flatMap((name) => groups[name].testFiles))

/** @type {import("@stryker-mutator/api/core").PartialStrykerOptions} */
export default {
  testRunner: "vitest",
  // the test files are narrowed by the vitest config's `include`, not by Stryker's `testFiles`: with
  // `testFiles`, Stryker 10.1 activates a static mutant (a module-level value) only after the module
  // was loaded, and every static mutant survives (stryker-js issues 6144, 6209)
  vitest: { configFile: "stryker.vitest.config.mjs", related: false },
  mutate: unique(chosen.flatMap((name) => groups[name].mutate)),
  // each mutant runs only the tests that reached it
  coverageAnalysis: "perTest",
  // a 2-core machine shared with other engineers' test runs
  concurrency: 2,
  // a busy machine: a mutant is a timeout only well past the normal time of its tests
  timeoutMS: 10_000,
  timeoutFactor: 2,
  dryRunTimeoutMinutes: 5,
  // no type check of mutants: a mutant that does not compile still runs (vitest strips types)
  checkers: [],
  reporters: ["clear-text", "progress", "html", "json"],
  htmlReporter: { fileName: `reports/mutation/${chosen.join("-")}.html` },
  jsonReporter: { fileName: `reports/mutation/${chosen.join("-")}.json` },
  clearTextReporter: { allowColor: false, logTests: false, reportScoreTable: true },
  tempDirName: ".stryker-tmp",
  cleanTempDir: true,
  // the sandbox is a copy of what the tests need, not of the reports, bench results or dist
  ignorePatterns: ["dist", "bench/results", "reports", ".scratch", ".cache", "*.log"],
  thresholds: { high: 90, low: 80, break: null }
}
