/**
 * The NATS KV session store against real nats-server processes: on a NATS
 * without JetStream it keeps sessions on this node and says so once; started
 * before NATS, it is not ready and its operations fail at once, then it
 * serves from the bucket when NATS comes; a lost connection makes it not
 * ready again; closing it drains its connection.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Logger, Option, Scope } from "effect"
import * as NatsSessionStore from "../src/NatsSessionStore.ts"
import * as SessionStore from "../src/SessionStore.ts"
import { natsServerLater, natsServerWith } from "./utils/nats.ts"
import { until } from "./utils/wait.ts"

/** The log lines of `effect`, with their level. */
const logged = <A, E, R>(effect: Effect.Effect<A, E, R>) => {
  const lines: Array<{ readonly level: string; readonly text: string }> = []
  const logger = Logger.make(({ logLevel, message }) => {
    lines.push({ level: logLevel, text: (Array.isArray(message) ? message : [message]).map(String).join(" ") })
  })
  return Effect.map(Effect.provide(effect, Logger.layer([logger])), (value) => ({ value, lines }))
}

const warnings = (lines: ReadonlyArray<{ readonly level: string; readonly text: string }>) =>
  lines.filter((line) => line.level === "Warn").map((line) => line.text)

const session = (data: unknown): SessionStore.StoredSession => ({ data, expiresAt: Date.now() + 60_000 })

/** The operation's failure: a SessionStoreError (reason and message), or a failed assertion. */
const failure = <A>(effect: Effect.Effect<A, SessionStore.SessionStoreError>) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(effect)
    assert.isTrue(Exit.isFailure(exit), "the operation succeeded")
    const error = yield* Effect.flip(effect)
    assert.instanceOf(error, SessionStore.SessionStoreError)
    return { reason: error.reason, message: error.message }
  })

/** The names of the clients connected to the nats-server with monitoring at `monitor`. */
const clientNames = (monitor: string) =>
  Effect.promise(async () => {
    const body = (await (await fetch(`${monitor}/connz`)).json()) as { connections?: Array<{ name?: string }> }
    return (body.connections ?? []).map((connection) => connection.name ?? "")
  })

const notReached = { reason: "Unavailable", message: "the session store has not reached NATS yet" }

describe("NatsSessionStore: NATS without JetStream", () => {
  it.live("the Layer builds; sessions are kept on this node; limitation says so; one warning line", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerWith()
      const { lines, value: store } = yield* logged(NatsSessionStore.make({ servers: nats.url }))
      // decided while the Layer was built: NATS answered at once
      assert.isTrue(yield* store.isReady!)
      assert.strictEqual(yield* store.limitation!, "sessions on this node only: NATS has no JetStream")
      assert.deepStrictEqual(warnings(lines), [
        `sessions: NATS at ${nats.url} has no JetStream; sessions are kept on this node only`
      ])
      yield* store.set("k", session({ name: "alice" }))
      assert.deepStrictEqual(Option.map(yield* store.get("k"), (s) => s.data), Option.some({ name: "alice" }))
      yield* store.delete("k")
      assert.isTrue(Option.isNone(yield* store.get("k")))
      // expired sessions are not served
      yield* store.set("old", { data: 1, expiresAt: Date.now() - 1 })
      assert.isTrue(Option.isNone(yield* store.get("old")))
    }))

  it.live("NATS comes up without JetStream after the store started: the store falls back to memory then, saying so once", () =>
    Effect.gen(function*() {
      const nats = yield* natsServerLater
      const { lines, value: store } = yield* logged(
        NatsSessionStore.make({ servers: nats.url, connectRetry: "50 millis" })
      )
      assert.isFalse(yield* store.isReady!)
      assert.strictEqual(yield* store.limitation!, undefined)
      assert.deepStrictEqual(yield* failure(store.set("k", session(1))), notReached)
      yield* Effect.promise(() => nats.restart())
      yield* until(store.isReady!, "10 seconds")
      assert.strictEqual(yield* store.limitation!, "sessions on this node only: NATS has no JetStream")
      yield* store.set("k", session(2))
      assert.deepStrictEqual(Option.map(yield* store.get("k"), (s) => s.data), Option.some(2))
      assert.deepStrictEqual(warnings(lines), [
        `sessions: NATS at ${nats.url} has no JetStream; sessions are kept on this node only`
      ])
    }))
})

describe("NatsSessionStore: NATS not up yet", () => {
  it.live("the Layer builds; not ready, operations fail at once; once NATS is up the store is ready and writes to the bucket", () =>
    Effect.gen(function*() {
      // a JetStream server on a port reserved now, down until the test starts it again
      const nats = yield* natsServerWith({ jetstream: true })
      yield* Effect.promise(() => nats.kill())
      const store = yield* NatsSessionStore.make({ servers: nats.url, connectRetry: "50 millis" })
      assert.isFalse(yield* store.isReady!)
      assert.strictEqual(yield* store.limitation!, undefined)
      // every operation fails with the typed error, without waiting for NATS
      assert.deepStrictEqual(yield* failure(store.get("k")), notReached)
      assert.deepStrictEqual(yield* failure(store.set("k", session(1))), notReached)
      assert.deepStrictEqual(yield* failure(store.delete("k")), notReached)
      yield* Effect.promise(() => nats.restart())
      yield* until(store.isReady!, "10 seconds")
      assert.strictEqual(yield* store.limitation!, undefined)
      yield* store.set("k", session({ name: "late" }))
      // in the bucket: another store on the same NATS reads it
      const other = yield* NatsSessionStore.make({ servers: nats.url })
      assert.isTrue(yield* other.isReady!)
      assert.deepStrictEqual(Option.map(yield* other.get("k"), (s) => s.data), Option.some({ name: "late" }))
    }))

  it.live(
    "a lost connection: not ready and operations fail at once; after the reconnect the sessions are there",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith({ jetstream: true })
        const store = yield* NatsSessionStore.make({ servers: nats.url })
        assert.isTrue(yield* store.isReady!)
        yield* store.set("k", session("kept"))
        yield* Effect.promise(() => nats.kill())
        yield* until(Effect.map(store.isReady!, (ready) => !ready), "10 seconds")
        assert.deepStrictEqual(yield* failure(store.get("k")), {
          reason: "Unavailable",
          message: "the session store lost its NATS connection and is reconnecting"
        })
        yield* Effect.promise(() => nats.restart())
        yield* until(store.isReady!, "15 seconds")
        assert.deepStrictEqual(Option.map(yield* store.get("k"), (s) => s.data), Option.some("kept"))
      }),
    30_000
  )
})

describe("NatsSessionStore: shutdown", () => {
  it.live(
    "closing the store's scope drains its connection; closing it while NATS is down ends at once and it never connects",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith({ jetstream: true, monitor: true })
        const monitor = nats.monitor!
        const scope = yield* Scope.make()
        const store = yield* NatsSessionStore.make({ servers: nats.url, name: "sessions-closed" }).pipe(
          Scope.provide(scope)
        )
        assert.isTrue(yield* store.isReady!)
        assert.include(yield* clientNames(monitor), "sessions-closed")
        yield* Scope.close(scope, Exit.void)
        yield* until(Effect.map(clientNames(monitor), (names) => !names.includes("sessions-closed")))
        assert.deepStrictEqual(yield* failure(store.get("k")), {
          reason: "Unavailable",
          message: "the session store is closed"
        })
        // closed while NATS is down: the retries stop
        yield* Effect.promise(() => nats.kill())
        const waiting = yield* Scope.make()
        const early = yield* NatsSessionStore.make({
          servers: nats.url,
          name: "sessions-early",
          connectRetry: "20 millis"
        })
          .pipe(Scope.provide(waiting))
        assert.isFalse(yield* early.isReady!)
        // the marker: a store retrying as the closed one did, still open
        const marker = yield* NatsSessionStore.make({
          servers: nats.url,
          name: "sessions-marker",
          connectRetry: "20 millis"
        })
        yield* Scope.close(waiting, Exit.void)
        yield* Effect.promise(() => nats.restart())
        // the marker connects; the closed one, had it kept retrying on the same schedule, would have too
        yield* until(marker.isReady!, "10 seconds")
        yield* marker.set("m", session(1))
        const names = yield* clientNames(monitor)
        assert.include(names, "sessions-marker")
        assert.notInclude(names, "sessions-early")
        assert.isFalse(yield* early.isReady!)
      }),
    30_000
  )
})
