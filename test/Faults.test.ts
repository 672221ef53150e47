/**
 * The fault campaign's quick form (`npm run faults -- --quick`, bench/faults/):
 * three nats-servers with JetStream, three main-job nodes, 150 clients of the
 * Effect client with sessions and positions publishing with acknowledgements,
 * one seed of each scenario. Every scenario must keep the delivery
 * guarantees docs/reliability.md states: no acknowledged message lost (or the
 * subscriber told it cannot have it), no duplicate handed to an application,
 * one order per channel, sessions restored on every reconnect, no node past
 * its admission rate.
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import type { Result } from "../bench/faults/campaign.ts"
import { scenarioNames } from "../bench/faults/ipc.ts"
import * as LhttpServer from "../src/LhttpServer.ts"

const campaign = fileURLToPath(new URL("../bench/faults/campaign.ts", import.meta.url))

const runQuick = () =>
  new Promise<{ readonly code: number | null; readonly results: ReadonlyArray<Result>; readonly output: string }>(
    (resolve) => {
      const child = spawn(process.execPath, [campaign, "--quick", "--json"], { stdio: ["ignore", "pipe", "pipe"] })
      let stdout = ""
      let stderr = ""
      child.stdout.on("data", (chunk: Buffer) => stdout += chunk.toString())
      child.stderr.on("data", (chunk: Buffer) => stderr += chunk.toString())
      child.on("exit", (code) => {
        const last = stdout.trim().split("\n").at(-1) ?? "[]"
        let results: ReadonlyArray<Result> = []
        try {
          results = JSON.parse(last) as ReadonlyArray<Result>
        } catch {
          // the campaign failed before its results: the output says why
        }
        resolve({ code, results, output: `${stdout}\n${stderr}`.slice(-4_000) })
      })
    }
  )

describe("the fault campaign, quick (bench/faults/, docs/reliability.md)", () => {
  it("every scenario keeps the delivery guarantees", { timeout: 300_000 }, async () => {
    const { code, output, results } = await runQuick()
    assert.deepStrictEqual(results.map((result) => result.scenario), [...scenarioNames], output)
    for (const result of results) {
      const what = `${result.scenario}: ${JSON.stringify(result)}`
      assert.deepStrictEqual(result.failures, [], what)
      assert.deepStrictEqual([result.lost, result.duplicated, result.reordered], [0, 0, 0], what)
      assert.isAbove(result.acknowledged, 0, what)
      assert.isAbove(result.delivered, result.acknowledged, what)
      assert.isAtLeast(result.restored, result.reconnects * 0.999, what)
      assert.isAtMost(result.peakAcceptsPerNode, LhttpServer.defaults.admissionRate.burst, what)
    }
    // the restarts and the kill move clients between nodes, each back with its session
    const byName = new Map(results.map((result) => [result.scenario, result]))
    for (const moved of ["rolling-restart", "node-kill"]) {
      const result = byName.get(moved)!
      assert.isAbove(result.reconnects, 0, moved)
      assert.strictEqual(result.restored, result.reconnects, moved)
    }
    assert.strictEqual(code, 0, output)
  })
})
