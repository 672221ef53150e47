/**
 * The published package, as a user gets it: `npm run build`, `npm pack`, then the tarball
 * installed into an empty folder with its one required peer, `effect` (none of the optional peers
 * @effect/platform-node and @nats-io/transport-node, and no `ws`). The root entry must import there
 * and parse, the private paths (`internal/*`, `main`, `demo/*`) must stay unreachable, every
 * exported entry must point at a shipped file, and a browser bundle of the root must build without
 * any `node:` module or missing package and run where there is no `process` or `require`.
 */
import { assert, describe, it } from "@effect/vitest"
import * as esbuild from "esbuild"
import { spawn } from "node:child_process"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Vm from "node:vm"
import { afterAll, beforeAll } from "vitest"

const root = Path.resolve(import.meta.dirname, "..")
const ours = JSON.parse(Fs.readFileSync(Path.join(root, "package.json"), "utf8")) as {
  readonly name: string
  readonly exports: Record<string, unknown>
}
// the peer installed beside the package: the very version this repository tests against
const effectVersion = (JSON.parse(Fs.readFileSync(Path.join(root, "node_modules/effect/package.json"), "utf8")) as {
  readonly version: string
}).version

const optionalPeers = ["@effect/platform-node", "@nats-io/transport-node", "ws"]
const frameText = "LHTTP/1.0 chat\r\npublish:room-1\r\n\r\nhello"

interface Ran {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

// npm and node of the Node running the tests, without the npm_* variables of an enclosing
// `npm test` (npm_config_local_prefix and friends would point npm back at this repository)
const env: NodeJS.ProcessEnv = {
  ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.toLowerCase().startsWith("npm_"))),
  PATH: `${Path.dirname(process.execPath)}${Path.delimiter}${process.env.PATH ?? ""}`,
  NO_COLOR: "1"
}

const run = (command: string, args: ReadonlyArray<string>, cwd: string, timeoutMs = 60_000): Promise<Ran> =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")))
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")))
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
    child.once("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.once("close", (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })

const succeed = async (command: string, args: ReadonlyArray<string>, cwd: string): Promise<string> => {
  const ran = await run(command, args, cwd)
  if (ran.code !== 0) {
    throw new Error(`\`${command} ${args.join(" ")}\` in ${cwd} exited with ${ran.code}:\n${ran.stdout}\n${ran.stderr}`)
  }
  return ran.stdout
}

/** Runs an ES module snippet with node in the consumer folder; its last stdout line is JSON, of type `A`. */
const esm = async <A = unknown>(code: string): Promise<A> => {
  const ran = await run(process.execPath, ["--input-type=module", "-e", code], consumer)
  const last = ran.stdout.trim().split("\n").at(-1)
  if (ran.code !== 0 || last === undefined || last === "") {
    throw new Error(`node exited with ${ran.code}:\n${ran.stdout}\n${ran.stderr}`)
  }
  return JSON.parse(last)
}

let work = ""
let consumer = ""
let packed: ReadonlyArray<string> = []

beforeAll(async () => {
  work = Fs.mkdtempSync(Path.join(Os.tmpdir(), "effect-lhttp-package-"))
  consumer = Path.join(work, "consumer")
  Fs.mkdirSync(consumer)
  await succeed("npm", ["run", "build", "--silent"], root)
  const pack = JSON.parse(
    await succeed("npm", ["pack", "--json", "--loglevel=error", "--pack-destination", work], root)
  ) as ReadonlyArray<{ readonly filename: string; readonly files: ReadonlyArray<{ readonly path: string }> }>
  packed = pack[0]!.files.map((file) => file.path)
  Fs.writeFileSync(
    Path.join(consumer, "package.json"),
    JSON.stringify({ name: "consumer", version: "0.0.0", private: true, type: "module" })
  )
  // npm 7+ installs required peers by itself but never optional ones: effect is named anyway to
  // pin our version, the optional peers are left out (and checked absent below)
  await succeed("npm", [
    "install",
    "--no-audit",
    "--no-fund",
    "--prefer-offline",
    "--ignore-scripts",
    "--loglevel=error",
    Path.join(work, pack[0]!.filename),
    `effect@${effectVersion}`
  ], consumer)
}, 180_000)

afterAll(() => {
  if (work !== "") Fs.rmSync(work, { recursive: true, force: true })
})

describe("the packed package", () => {
  it("ships the compiled entries, the browser SDK and the demo page where dist/main.js reads them", () => {
    for (
      const file of [
        "dist/index.js",
        "dist/index.d.ts",
        "dist/main.js",
        "dist/browser/lhttp.js",
        "dist/browser/lhttp.d.ts",
        "dist/demo/chat.html"
      ]
    ) {
      assert.include(packed, file, `${file} is not in the tarball`)
    }
    assert.isFalse(
      packed.some((file) => file.startsWith("test/") || file.startsWith("bench/") || file.startsWith("scripts/"))
    )
  })

  it("ships the browser SDK the build made from its TypeScript sources: the file servers serve at /lhttp.js", () => {
    for (const name of ["lhttp.js", "lhttp.d.ts"]) {
      const shipped = Fs.readFileSync(Path.join(root, "dist", "browser", name), "utf8")
      assert.isTrue(
        shipped === Fs.readFileSync(Path.join(root, "src", "browser", name), "utf8"),
        `dist/browser/${name}`
      )
      assert.match(shipped, /GENERATED by scripts\/build-browser\.mjs/)
    }
  })

  it("installs with effect alone: no optional peer, no ws", () => {
    const modules = Path.join(consumer, "node_modules")
    assert.isTrue(Fs.existsSync(Path.join(modules, ours.name, "package.json")))
    assert.strictEqual(
      (JSON.parse(Fs.readFileSync(Path.join(modules, "effect/package.json"), "utf8")) as { version: string }).version,
      effectVersion
    )
    for (const peer of optionalPeers) {
      assert.isFalse(
        Fs.existsSync(Path.join(modules, peer)),
        `npm installed ${peer}: the import checks would prove nothing`
      )
    }
  })

  it("the root imports in Node as an ES module and parses frames and messages", async () => {
    const result = await esm<{ readonly names: ReadonlyArray<string> }>(`
      const lhttp = await import("effect-lhttp")
      const { Result, Schema } = await import("effect")
      const frame = lhttp.Frame.parse(${JSON.stringify(frameText)})
      const message = Schema.decodeSync(lhttp.Message.FromString)(${JSON.stringify(frameText)})
      console.log(JSON.stringify({
        names: Object.keys(lhttp).sort(),
        parsed: Result.isSuccess(frame),
        command: frame.success?.command,
        publish: frame.success?.headers.get("publish"),
        body: frame.success?.body,
        rendered: lhttp.Frame.render(frame.success) === ${JSON.stringify(frameText)},
        tag: message._tag,
        channels: message.publish,
        channel: Result.isSuccess(lhttp.Channel.validate("room-1")),
        badChannel: Result.isFailure(lhttp.Channel.validate("")),
        connect: typeof lhttp.LhttpClient.connect
      }))
    `)
    for (const name of ["Frame", "Message", "Channel", "LhttpClient"]) assert.include(result.names, name)
    assert.deepStrictEqual(
      { ...result, names: undefined },
      {
        names: undefined,
        parsed: true,
        command: "chat",
        publish: "room-1",
        body: "hello",
        rendered: true,
        tag: "Notify",
        channels: ["room-1"],
        channel: true,
        badChannel: true,
        connect: "function"
      }
    )
  })

  it("keeps internal/*, main and demo/* private", async () => {
    const specifiers = [
      "effect-lhttp/internal/wire/grammar",
      "effect-lhttp/internal/wire/grammar.js",
      "effect-lhttp/internal/client/websocket.js",
      "effect-lhttp/main",
      "effect-lhttp/main.js",
      "effect-lhttp/demo/Chat",
      "effect-lhttp/demo/Chat.js",
      "effect-lhttp/dist/main.js"
    ]
    const codes = await esm(`
      const codes = {}
      for (const specifier of ${JSON.stringify(specifiers)}) {
        codes[specifier] = await import(specifier).then(() => "imported", (error) => error.code ?? String(error))
      }
      console.log(JSON.stringify(codes))
    `)
    assert.deepStrictEqual(codes, Object.fromEntries(specifiers.map((s) => [s, "ERR_PACKAGE_PATH_NOT_EXPORTED"])))
  })

  it("every exported entry points at a shipped module and its types", async () => {
    const entries = Object.entries(ours.exports).filter(
      (entry): entry is [string, { types: string; default: string }] =>
        typeof entry[1] === "object" && entry[1] !== null
    )
    assert.includeMembers(
      entries.map(([subpath]) => subpath),
      [".", "./NodeLhttpServer", "./NodeUpstream", "./NatsBus", "./NatsSessionStore", "./NatsHistory", "./lhttp.js"]
    )
    const installed = Path.join(consumer, "node_modules", ours.name)
    const missing = entries.flatMap(([subpath, target]) =>
      [target.types, target.default]
        .filter((file) => !Fs.existsSync(Path.join(installed, file)))
        .map((file) => `${subpath} -> ${file}`)
    )
    assert.deepStrictEqual(missing, [], "exported files missing from the tarball")
    // Node resolves each exported subpath to that file (resolution only: the Node entries need
    // the optional peers, which are not installed here)
    const resolved = await esm<Record<string, string>>(`
      const names = ${JSON.stringify(entries.map(([subpath]) => Path.posix.join(ours.name, subpath)))}
      console.log(JSON.stringify(Object.fromEntries(names.map((name) => [name, import.meta.resolve(name)]))))
    `)
    for (const [subpath, target] of entries) {
      assert.strictEqual(
        Fs.realpathSync(new URL(resolved[Path.posix.join(ours.name, subpath)]!)),
        Fs.realpathSync(Path.join(installed, target.default))
      )
    }
  })

  it("the browser SDK entry, effect-lhttp/lhttp.js, imports without dependencies and decodes", async () => {
    const result = await esm(`
      const { Lhttp, decode, PROTOCOL } = await import("effect-lhttp/lhttp.js")
      const message = decode(${JSON.stringify(frameText)})
      console.log(JSON.stringify({ lhttp: typeof Lhttp, protocol: PROTOCOL, command: message.command, body: message.body }))
    `)
    assert.deepStrictEqual(result, { lhttp: "function", protocol: "LHTTP/1.0", command: "chat", body: "hello" })
  })

  it("the root bundles for browsers, with no node: module or missing package, and runs without process or require", async () => {
    const built = await esbuild
      .build({
        stdin: {
          resolveDir: consumer,
          sourcefile: "entry.js",
          contents: `
            import { Frame, Message, Channel, LhttpClient } from "effect-lhttp"
            import { Result, Schema } from "effect"
            export const check = () => {
              const frame = Frame.parse(${JSON.stringify(frameText)})
              const message = Schema.decodeSync(Message.FromString)(${JSON.stringify(frameText)})
              return JSON.stringify({
                parsed: Result.isSuccess(frame),
                command: frame.success?.command,
                publish: frame.success?.headers.get("publish"),
                body: frame.success?.body,
                tag: message._tag,
                channels: message.publish,
                channel: Result.isSuccess(Channel.validate("room-1")),
                connect: typeof LhttpClient.connect
              })
            }
          `
        },
        bundle: true,
        platform: "browser",
        format: "iife",
        globalName: "bundle",
        target: "es2022",
        write: false,
        metafile: true,
        logLevel: "silent"
      })
      .catch((error: esbuild.BuildFailure) => error)
    if ("errors" in built && built.errors.length > 0) {
      assert.fail(
        `the browser bundle of effect-lhttp failed:\n${
          built.errors.map((e) => `${e.location?.file ?? ""}:${e.location?.line ?? ""}: ${e.text}`).join("\n")
        }`
      )
    }
    const bundle = built as esbuild.BuildResult<{ write: false; metafile: true }>
    const inputs = Object.keys(bundle.metafile.inputs)
    assert.deepStrictEqual(inputs.filter((input) => /^node:|\/(ws|@effect\/platform-node|@nats-io)\//.test(input)), [])
    // a browser-like realm: the language, timers, text codecs and URL, nothing of Node
    const context = Vm.createContext({
      console,
      setTimeout,
      clearTimeout,
      setInterval,
      clearInterval,
      queueMicrotask,
      TextEncoder,
      TextDecoder,
      URL,
      AbortController
    })
    const code = bundle.outputFiles[0]!.text
    const checked = Vm.runInContext(`${code}\n;bundle.check()`, context, { filename: "bundle.js", timeout: 10_000 })
    // asked from outside: esbuild rewrites `typeof require` inside the bundle
    assert.strictEqual(
      Vm.runInContext("[typeof process, typeof require, typeof Buffer].join()", context),
      "undefined,undefined,undefined"
    )
    assert.deepStrictEqual(JSON.parse(checked), {
      parsed: true,
      command: "chat",
      publish: "room-1",
      body: "hello",
      tag: "Notify",
      channels: ["room-1"],
      channel: true,
      connect: "function"
    })
  })
})
