/**
 * Configuration mistakes (issue 20): every `LHTTP_*` variable the main job
 * reads is checked at start; a bad one, or a port in use, stops the main job
 * with exit code 1 and one line on stderr naming the variable (or the port)
 * and what is expected. `LHTTP_DEBUG=1` adds the full cause.
 */
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Cause, Config, ConfigProvider, Effect, Exit } from "effect"
import * as Net from "node:net"
import { fileURLToPath } from "node:url"
import { configErrorLine } from "../src/internal/server/config.ts"
import * as NatsBus from "../src/NatsBus.ts"
import * as NodeLhttpServer from "../src/NodeLhttpServer.ts"
import * as NodeUpstream from "../src/NodeUpstream.ts"
import { freePort, start } from "./utils/process.ts"

const main = fileURLToPath(new URL("../src/main.ts", import.meta.url))

interface Ended {
  readonly code: number | null
  readonly stderr: string
  readonly output: string
}

/**
 * Runs the main job with `env` (on 127.0.0.1 and a free port unless `env`
 * says otherwise) until it exits; one that does not exit within the deadline
 * (it took the bad value and runs) is killed, and its exit code is then null.
 */
const runMain = async (env: Record<string, string>): Promise<Ended> => {
  const port = await freePort()
  const program = start(main, { env: { LHTTP_HOST: "127.0.0.1", LHTTP_PORT: String(port), ...env } })
  let stderr = ""
  program.child.stderr!.on("data", (chunk: Buffer) => {
    stderr += chunk.toString("utf8")
  })
  // "close" comes after the exit and the end of stdout and stderr: the output is then complete
  const closed = new Promise<void>((resolve) => program.child.once("close", () => resolve()))
  const deadline = setTimeout(() => program.child.kill("SIGKILL"), 15_000)
  const exit = await program.exited
  await closed
  clearTimeout(deadline)
  return { code: exit.code, stderr, output: program.output() }
}

const expectOneLine = async (env: Record<string, string>, line: string) => {
  const ended = await runMain(env)
  assert.deepStrictEqual({ code: ended.code, stderr: ended.stderr }, { code: 1, stderr: `${line}\n` }, ended.output)
  // nothing on stdout either: no log line, no stack trace
  assert.strictEqual(ended.output, `${line}\n`)
}

describe("a bad LHTTP_* variable stops the main job with one line naming it", () => {
  const cases: ReadonlyArray<readonly [Record<string, string>, string]> = [
    [{ LHTTP_PORT: "abc" }, "LHTTP_PORT: expected a port number from 1 to 65535, got \"abc\""],
    [{ LHTTP_PORT: "70000" }, "LHTTP_PORT: expected a port number from 1 to 65535, got \"70000\""],
    [
      { LHTTP_MAX_MESSAGE_BYTES: "-5" },
      "LHTTP_MAX_MESSAGE_BYTES: expected a whole number from 1 to 16777216, got \"-5\""
    ],
    [{ LHTTP_MAX_CONNECTIONS: "0" }, "LHTTP_MAX_CONNECTIONS: expected a whole number from 1 to 10000000, got \"0\""],
    [{ LHTTP_MAX_URL_CHANNELS: "0" }, "LHTTP_MAX_URL_CHANNELS: expected a whole number from 1 to 10000, got \"0\""],
    [
      { LHTTP_MAX_CONNECTIONS_PER_ADDRESS: "many" },
      "LHTTP_MAX_CONNECTIONS_PER_ADDRESS: expected a whole number from 1 to 10000000, got \"many\""
    ],
    [
      { LHTTP_MESSAGES_PER_SECOND: "abc" },
      "LHTTP_MESSAGES_PER_SECOND: expected a number above 0 and at most 1000000 (a second), got \"abc\""
    ],
    [{ LHTTP_HISTORY: "::x" }, "LHTTP_HISTORY: a history policy is prefix[:size[:ttl]], not \"::x\""],
    [
      { LHTTP_NATS_URL: "not a url" },
      "LHTTP_NATS_URL: expected comma-separated NATS servers such as nats://127.0.0.1:4222, got \"not a url\" (not a URL)"
    ],
    [
      { LHTTP_UPSTREAM_ALLOW: "https://api.example.com/hooks/, ftp://files.example.com/" },
      "LHTTP_UPSTREAM_ALLOW: expected comma-separated http or https URL prefixes such as https://api.example.com/hooks/, got \"ftp://files.example.com/\" (not http or https)"
    ],
    [
      { LHTTP_UPSTREAM_TIMEOUT: "soon" },
      "LHTTP_UPSTREAM_TIMEOUT: expected a duration such as \"5 seconds\" or \"500 millis\", got \"soon\""
    ],
    [{ LHTTP_DEBUG: "maybe" }, "LHTTP_DEBUG: expected 1 or 0 (true or false), got \"maybe\""]
  ]
  for (const [env, line] of cases) {
    it(Object.entries(env).map(([name, value]) => `${name}=${value}`).join(" "), () => expectOneLine(env, line), 20_000)
  }

  it("LHTTP_DEBUG=1: the same line first, then the cause", async () => {
    const ended = await runMain({ LHTTP_MAX_MESSAGE_BYTES: "-5", LHTTP_DEBUG: "1" })
    assert.strictEqual(ended.code, 1, ended.output)
    const [first, ...rest] = ended.stderr.split("\n")
    assert.strictEqual(first, "LHTTP_MAX_MESSAGE_BYTES: expected a whole number from 1 to 16777216, got \"-5\"")
    const cause = rest.join("\n")
    assert.include(cause, "ConfigError")
    assert.include(cause, "at [\"LHTTP_MAX_MESSAGE_BYTES\"]")
  }, 20_000)
})

describe("a port in use stops the main job with one line naming the port", () => {
  let holder: Net.Server | undefined
  let port = 0
  beforeAll(async () => {
    port = await freePort()
    holder = Net.createServer()
    await new Promise<void>((resolve, reject) => {
      holder!.once("error", reject)
      holder!.listen(port, "127.0.0.1", () => resolve())
    })
  })
  afterAll(async () => {
    await new Promise<void>((resolve) => holder === undefined ? resolve() : holder.close(() => resolve()))
  })

  it(
    "the port, the address and LHTTP_PORT; nothing else",
    () => expectOneLine({ LHTTP_PORT: String(port) }, `port ${port} on 127.0.0.1 is in use (LHTTP_PORT)`),
    20_000
  )

  it("LHTTP_DEBUG=1: the same line first, then the full cause", async () => {
    const ended = await runMain({ LHTTP_PORT: String(port), LHTTP_DEBUG: "1" })
    assert.strictEqual(ended.code, 1, ended.output)
    const [first, ...rest] = ended.stderr.split("\n")
    assert.strictEqual(first, `port ${port} on 127.0.0.1 is in use (LHTTP_PORT)`)
    // Node's listen error, with its stack
    const cause = rest.join("\n")
    assert.include(cause, `EADDRINUSE: address already in use 127.0.0.1:${port}`)
    assert.match(cause, /^\s+at /m)
  }, 20_000)
})

describe("valid values still start", () => {
  it("edge values of each kind, and an unreachable NATS (not an error: the node waits for it)", async () => {
    const port = await freePort()
    const nats = await freePort()
    const program = start(main, {
      env: {
        LHTTP_HOST: "127.0.0.1",
        LHTTP_PORT: String(port),
        LHTTP_MAX_MESSAGE_BYTES: "16777216",
        LHTTP_MAX_CONNECTIONS: "1",
        LHTTP_MESSAGES_PER_SECOND: "0.5",
        LHTTP_CONNECTIONS_PER_SECOND: "1000000",
        LHTTP_ALLOWED_ORIGINS: "https://a.example, http://127.0.0.1:8080",
        LHTTP_HISTORY: "chat-:500:1h,*",
        LHTTP_PRESENCE_EVENTS: "*,chat-,room.",
        LHTTP_UPSTREAM_ALLOW: "http://127.0.0.1:1/hooks/",
        LHTTP_UPSTREAM_TIMEOUT: "500 millis",
        LHTTP_NATS_URL: `nats://127.0.0.1:${nats}, 127.0.0.1:${nats}`,
        LHTTP_NATS_PREFIX: "app.lhttp.",
        LHTTP_HISTORY_STREAM: "APP_HISTORY",
        LHTTP_SESSION_BUCKET: "app-sessions",
        LHTTP_DEBUG: "0"
      }
    })
    try {
      const line = await program.waitFor(/listening on/, 15_000)
      assert.include(line, `listening on http://127.0.0.1:${port}`)
    } finally {
      await program.stop("SIGTERM", 3_000)
    }
  }, 20_000)

  it(
    "the per-address and per-URL limits are read: LHTTP_MAX_URL_CHANNELS=2 refuses a URL with three channels",
    async () => {
      const port = await freePort()
      const program = start(main, {
        env: {
          LHTTP_HOST: "127.0.0.1",
          LHTTP_PORT: String(port),
          LHTTP_MAX_URL_CHANNELS: "2",
          LHTTP_MAX_CONNECTIONS_PER_ADDRESS: "5",
          LHTTP_MAX_DETACHED_PER_ADDRESS: "3",
          LHTTP_URL_RECOVERY_BYTES: "0"
        }
      })
      try {
        await program.waitFor(/listening on/, 15_000)
        const three = await fetch(`http://127.0.0.1:${port}/poll?subscribe=a,b,c`)
        assert.strictEqual(three.status, 400)
        assert.include(await three.text(), "TooManyChannels")
        // three polls nobody holds, then the fourth from this address is refused
        for (let i = 0; i < 3; i++) {
          assert.strictEqual(
            (await fetch(`http://127.0.0.1:${port}/poll?subscribe=a,b`)).status,
            200
          )
        }
        assert.strictEqual((await fetch(`http://127.0.0.1:${port}/poll`)).status, 503)
      } finally {
        await program.stop("SIGTERM", 3_000)
      }
    },
    20_000
  )
})

describe("the checks, read from a given environment", () => {
  const lineOf = <A>(config: Config.Config<A>, env: Record<string, string>) =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(config.parse(ConfigProvider.fromEnv({ env })))
      if (Exit.isSuccess(exit)) return "accepted"
      const error = exit.cause.reasons.filter(Cause.isFailReason).map((reason) => reason.error)[0]
      if (!(error instanceof Config.ConfigError)) return assert.fail(`not a ConfigError: ${String(error)}`)
      return configErrorLine(error)
    })

  it.effect("numbers: whole, in range, no exponents or hex", () =>
    Effect.gen(function*() {
      const checks: ReadonlyArray<readonly [string, string]> = [
        ["1.5", "LHTTP_MAX_MESSAGE_BYTES: expected a whole number from 1 to 16777216, got \"1.5\""],
        ["1e3", "LHTTP_MAX_MESSAGE_BYTES: expected a whole number from 1 to 16777216, got \"1e3\""],
        ["0x10", "LHTTP_MAX_MESSAGE_BYTES: expected a whole number from 1 to 16777216, got \"0x10\""],
        ["16777217", "LHTTP_MAX_MESSAGE_BYTES: expected a whole number from 1 to 16777216, got \"16777217\""],
        ["1", "accepted"],
        ["16777216", "accepted"]
      ]
      for (const [value, line] of checks) {
        assert.strictEqual(yield* lineOf(NodeLhttpServer.config, { LHTTP_MAX_MESSAGE_BYTES: value }), line, value)
      }
      assert.strictEqual(
        yield* lineOf(NodeLhttpServer.config, { LHTTP_PORT: "0" }),
        "LHTTP_PORT: expected a port number from 1 to 65535, got \"0\""
      )
      for (const value of ["0", "-1", "Infinity", "NaN", "1000001"]) {
        assert.strictEqual(
          yield* lineOf(NodeLhttpServer.config, { LHTTP_CONNECTIONS_PER_SECOND: value }),
          `LHTTP_CONNECTIONS_PER_SECOND: expected a number above 0 and at most 1000000 (a second), got ${
            JSON.stringify(value)
          }`
        )
      }
    }))

  it.effect("lists: each entry checked, the bad one named", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        yield* lineOf(NodeLhttpServer.config, { LHTTP_ALLOWED_ORIGINS: "https://a.example,https://b.example/path" }),
        "LHTTP_ALLOWED_ORIGINS: expected comma-separated origins such as https://chat.example.com (scheme, host, optional port; no path), got \"https://b.example/path\" (an origin is written https://b.example)"
      )
      assert.strictEqual(
        yield* lineOf(NodeUpstream.config, { LHTTP_UPSTREAM_ALLOW: "http://user:pw@api.example/" }),
        "LHTTP_UPSTREAM_ALLOW: expected comma-separated http or https URL prefixes such as https://api.example.com/hooks/, got \"http://user:pw@api.example/\" (has user:password@)"
      )
      assert.strictEqual(
        yield* lineOf(NatsBus.config, { LHTTP_NATS_URL: "nats://127.0.0.1:4222,http://127.0.0.1:4222" }),
        "LHTTP_NATS_URL: expected comma-separated NATS servers such as nats://127.0.0.1:4222, got \"http://127.0.0.1:4222\" (the scheme is http)"
      )
      assert.strictEqual(
        yield* lineOf(NatsBus.config, { LHTTP_NATS_URL: "nats://127.0.0.1:4222", LHTTP_NATS_PREFIX: "app" }),
        "LHTTP_NATS_PREFIX: expected empty or channel name tokens ending with \".\", such as \"lhttp.\", got \"app\""
      )
      assert.strictEqual(
        yield* lineOf(NatsBus.config, { LHTTP_NATS_URL: "tls://nats.example:4222, localhost" }),
        "accepted"
      )
    }))

  it.effect("the token variables: a short secret, one without a key, a public key beside a JWKS URL: one line each", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        yield* lineOf(NodeLhttpServer.config, { LHTTP_JWT_SECRET: "sixteen-bytes-xx" }),
        "LHTTP_JWT_SECRET: expected a secret of at least 32 bytes (the value is not shown)"
      )
      assert.strictEqual(
        yield* lineOf(NodeLhttpServer.config, { LHTTP_JWT_AUDIENCE: "chat" }),
        "LHTTP_JWT_AUDIENCE: takes tokens: set LHTTP_JWT_SECRET, LHTTP_JWT_PUBLIC_KEY or LHTTP_JWT_JWKS_URL too"
      )
      assert.strictEqual(
        yield* lineOf(NodeLhttpServer.config, {
          LHTTP_JWT_PUBLIC_KEY: "-----BEGIN PUBLIC KEY-----\\nMCowBQYDK2VwAyEA\\n-----END PUBLIC KEY-----",
          LHTTP_JWT_JWKS_URL: "https://id.example/jwks"
        }),
        "LHTTP_JWT_JWKS_URL: expected it or LHTTP_JWT_PUBLIC_KEY, not both"
      )
    }))

  it.effect("a secret's value is never shown", () =>
    Effect.gen(function*() {
      const line = yield* lineOf(NodeLhttpServer.config, { LHTTP_PUBLISH_TOKEN: "top secret" })
      assert.strictEqual(
        line,
        "LHTTP_PUBLISH_TOKEN: expected visible ASCII characters without spaces (the value is not shown)"
      )
      const api = yield* lineOf(NodeLhttpServer.config, { LHTTP_API_KEY: "top secret" })
      assert.strictEqual(
        api,
        "LHTTP_API_KEY: expected visible ASCII characters without spaces (the value is not shown)"
      )
      const admin = yield* lineOf(NodeLhttpServer.config, { LHTTP_ADMIN_PASSWORD: "short one" })
      assert.strictEqual(
        admin,
        "LHTTP_ADMIN_PASSWORD: expected at least 12 visible characters (the value is not shown)"
      )
      const jwt = yield* lineOf(NodeLhttpServer.config, { LHTTP_JWT_SECRET: "top secret" })
      assert.strictEqual(
        jwt,
        "LHTTP_JWT_SECRET: expected visible ASCII characters without spaces (the value is not shown)"
      )
      const pem = yield* lineOf(NodeLhttpServer.config, { LHTTP_JWT_PUBLIC_KEY: "-----BEGIN PRIVATE KEY----- secret" })
      assert.strictEqual(
        pem,
        "LHTTP_JWT_PUBLIC_KEY: expected a public key in PEM: -----BEGIN PUBLIC KEY----- ... (the value is not shown)"
      )
    }))
})
