/**
 * Both clients keep the session's key when its restore fails otherwise than
 * `404 SessionNotFound`: a `503 SessionStoreUnavailable` (the store is down),
 * or no answer within the client's request timeout (the store hangs). The
 * connection opens anyway, and the next connection restores the same key
 * (docs/clients.md, docs/requests-and-sessions.md). Against a real server
 * whose session store the test can take down or make hang.
 */
import { NodeWS } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber, Layer, Option, Stream } from "effect"
import { Lhttp, type LhttpError } from "../src/browser/lhttp.js"
import * as Login from "../src/demo/Login.ts"
import * as LhttpClient from "../src/LhttpClient.ts"
import * as Processor from "../src/Processor.ts"
import * as Sessions from "../src/Sessions.ts"
import * as SessionStore from "../src/SessionStore.ts"
import { startServer } from "./utils/lhttp.ts"

const Kick = Processor.make("kick")
const KickLive = Kick.toLayer({ onMessage: (exchange) => exchange.connection.close(4100, "kicked") })

type Mode = "up" | "down" | "hang"

/**
 * A server with sessions in a memory store holding one session (`alice`), and the store's mode:
 * `down` fails every operation (the server answers 503 SessionStoreUnavailable), `hang` never
 * answers; `restores` counts the restores the store was asked for.
 */
const sessionServer = Effect.gen(function*() {
  const memory = yield* SessionStore.makeMemory()
  const key = "alice-session-key-000001"
  yield* memory.set(key, { data: { name: "alice" }, expiresAt: Date.now() + 3_600_000 })
  const state = { mode: "up" as Mode, restores: 0 }
  const guarded = <A>(effect: Effect.Effect<A, SessionStore.SessionStoreError>) =>
    Effect.suspend(() =>
      state.mode === "down"
        ? Effect.fail(new SessionStore.SessionStoreError({ reason: "Unavailable", message: "down" }))
        : state.mode === "hang"
        ? Effect.never
        : effect
    )
  const store = Layer.succeed(
    SessionStore.SessionStore,
    SessionStore.SessionStore.of({
      get: (k) => Effect.suspend(() => (state.restores++, guarded(memory.get(k)))),
      set: (k, session) => guarded(memory.set(k, session)),
      delete: (k) => guarded(memory.delete(k))
    })
  )
  const { url } = yield* startServer(
    { processors: [Sessions.SessionProcessor, Login.Login, Kick] },
    Layer.mergeAll(Login.layer, KickLive).pipe(Layer.provideMerge(Sessions.layer()), Layer.provide(store))
  )
  return { url, key, state }
})

const waitFor = (check: () => boolean, what: string, timeoutMs = 5_000) =>
  Effect.promise(async () => {
    const deadline = Date.now() + timeoutMs
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  })

describe("the Effect client (LhttpClient) keeps the session's key when its restore fails otherwise than 404", () => {
  for (const failure of ["down", "hang"] as const) {
    const what = failure === "down" ? "503 SessionStoreUnavailable" : "no answer within requestTimeout"
    it.live(`${what}: the connection opens, no Closed event, and the next connection restores the same key`, () =>
      Effect.gen(function*() {
        const { key, state, url } = yield* sessionServer
        state.mode = failure
        const c = yield* LhttpClient.connect(url, {
          session: key,
          requestTimeout: "300 millis",
          reconnect: { initialDelay: "50 millis", maxDelay: "200 millis" }
        }).pipe(Effect.provide(NodeWS.layerWebSocketConstructor))
        const events = yield* c.sessions.pipe(
          Stream.take(1),
          Stream.runCollect,
          Effect.forkChild({ startImmediately: true })
        )
        const answers = yield* c.messages.pipe(
          Stream.filter((m) => m._tag === "Failure"),
          Stream.take(1),
          Stream.runCollect,
          Effect.forkChild({ startImmediately: true })
        )
        yield* c.states.pipe(Stream.filter((s) => s === "open"), Stream.take(1), Stream.runDrain)
        assert.strictEqual(state.restores, 1)
        assert.isTrue(Option.isNone(yield* c.session))
        if (failure === "down") {
          const [answer] = Array.from(yield* Fiber.join(answers))
          assert.deepInclude(answer, { _tag: "Failure", status: 503, reason: "SessionStoreUnavailable" })
        }
        // the store is back; the server closes the connection: the new one restores the same key
        state.mode = "up"
        yield* c.command("kick")
        const [event] = Array.from(
          yield* Fiber.join(events).pipe(
            Effect.timeoutOrElse({ duration: "5 seconds", orElse: () => Effect.die(new Error("no session event")) })
          )
        )
        assert.deepStrictEqual(event, { _tag: "Restored", session: { key, data: { name: "alice" } } })
        assert.strictEqual(state.restores, 2)
        assert.deepStrictEqual(yield* c.session, Option.some({ key, data: { name: "alice" } }))
      }))
  }
})

describe("the browser SDK keeps the session's key when its restore fails otherwise than 404", () => {
  for (const failure of ["down", "hang"] as const) {
    const what = failure === "down" ? "503 SessionStoreUnavailable" : "no answer within requestTimeout"
    it.live(`${what}: on_error, the connection opens, the key is kept (no on_session), and the next connection restores it`, () =>
      Effect.gen(function*() {
        const { key, state, url } = yield* sessionServer
        state.mode = failure
        const lhttp = yield* Effect.acquireRelease(
          Effect.sync(() =>
            new Lhttp(url, { session: key, requestTimeout: 300, reconnect: { initialDelay: 50, maxDelay: 200 } })
          ),
          (lhttp) => Effect.sync(() => lhttp.close())
        )
        const changes: Array<[string | undefined, string | undefined, unknown]> = []
        lhttp.on_session = (ctx) => void changes.push([ctx.change, ctx.key, ctx.session?.data])
        const errors: Array<LhttpError> = []
        lhttp.on_error = (ctx) => void errors.push(ctx.event as LhttpError)
        yield* waitFor(() => lhttp.state === "open", "the connection to open")
        assert.strictEqual(state.restores, 1)
        assert.strictEqual(errors.length, 1)
        assert.deepInclude(
          { status: errors[0]?.status, reason: errors[0]?.reason },
          failure === "down" ? { status: 503, reason: "SessionStoreUnavailable" } : { status: 0, reason: "Timeout" }
        )
        assert.deepStrictEqual(changes, [])
        assert.strictEqual(lhttp.sessionKey, key)
        assert.strictEqual(lhttp.session, undefined)
        // the store is back; the server closes the connection: the new one restores the same key
        state.mode = "up"
        lhttp.send({ command: "kick" })
        yield* waitFor(() => changes.length > 0, "the session to be restored")
        assert.deepStrictEqual(changes, [["restored", key, { name: "alice" }]])
        assert.strictEqual(state.restores, 2)
        assert.deepStrictEqual(lhttp.session, { key, data: { name: "alice" } })
      }))
  }
})
