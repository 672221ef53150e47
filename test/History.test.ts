import { assert, describe, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Layer, Result } from "effect"
import { TestClock } from "effect/testing"
import * as Bus from "../src/Bus.ts"
import * as Channel from "../src/Channel.ts"
import * as Frame from "../src/Frame.ts"
import * as History from "../src/History.ts"
import { type MemoryClient, pending, startMemoryServer } from "./utils/memory.ts"

const channel = (name: string) => Result.getOrThrow(Channel.validate(name))
const policy: History.Policy = { prefix: "h-", size: 5, ttl: Duration.minutes(1) }

/** The headers of a frame's text, as a record. */
const headersOf = (text: string): Record<string, string | undefined> =>
  Object.fromEntries(Result.getOrThrow(Frame.parse(text)).headers)

const publish = (client: MemoryClient, name: string, body: string) =>
  client.send(`LHTTP/1.0 chat\r\npublish:${name}\r\n\r\n${body}`)

/** The next `n` frames of a client. */
const take = (client: MemoryClient, n: number) =>
  Effect.gen(function*() {
    const frames: Array<string> = []
    for (let i = 0; i < n; i++) frames.push(yield* client.next())
    return frames
  })

const bodyOf = (text: string) => Result.getOrThrow(Frame.parse(text)).body
const textBodyOf = (message: History.Stored) => bodyOf(message.text)

const server = (history = History.layerMemory({ policies: [policy] })) =>
  startMemoryServer({ maxConnections: 100 }, undefined, { history })

describe("History", () => {
  it("parses policies from prefix[:size[:ttl]] items, with defaults", () => {
    const policies = History.parsePolicies("chat-, news-:500:1h ,x:7:30s,y::250ms")
    assert.deepStrictEqual(policies.map((p) => [p.prefix, p.size, Duration.toMillis(p.ttl)]), [
      ["chat-", 100, 600_000],
      ["news-", 500, 3_600_000],
      ["x", 7, 30_000],
      ["y", 100, 250]
    ])
    for (const bad of ["a:0", "a:-1", "a:1:10d", "a:1:2:3", ":5", "a:x"]) {
      assert.throws(() => History.parsePolicies(bad), undefined, bad)
    }
  })

  it("reads since as now or <epoch>:<offset>, and nothing else", () => {
    assert.deepStrictEqual(History.parseSince("k3j2x:41"), { epoch: "k3j2x", offset: 41 })
    assert.deepStrictEqual(History.parseSince("e:0"), { epoch: "e", offset: 0 })
    assert.strictEqual(History.parseSince("now"), "now")
    for (const bad of ["", "e", ":1", "e:", "e:-1", "e:01", "e:1.5", "e f:1", "e:99999999999999999", "NOW", " now"]) {
      assert.isUndefined(History.parseSince(bad), bad)
    }
    assert.isUndefined(History.parsePosition("now"))
  })

  it("unpositioned drops the position headers a publisher wrote, and leaves other texts alone", () => {
    const forged = "LHTTP/1.0 chat\r\noffset:5\r\npublish:h-1\r\nepoch:e\r\nchannel:h-1\r\n\r\nhi offset:1"
    assert.strictEqual(History.unpositioned(forged), "LHTTP/1.0 chat\r\npublish:h-1\r\n\r\nhi offset:1")
    const clean = "LHTTP/1.0 chat\r\npublish:h-1\r\n\r\nhi"
    assert.strictEqual(History.unpositioned(clean), clean)
  })

  it("positions a frame after its command line, dropping positions the publisher wrote", () => {
    const text = Frame.render(
      Frame.make("chat", { offset: "999", epoch: "forged", publish: "h-1", channel: "x" }, "hi")
    )
    const out = History.positioned(text, channel("h-1"), { epoch: "e1", offset: 7 })
    const frame = Result.getOrThrow(Frame.parse(out))
    assert.deepStrictEqual([...frame.headers], [["channel", "h-1"], ["offset", "7"], ["epoch", "e1"], [
      "publish",
      "h-1"
    ]])
    assert.strictEqual(frame.body, "hi")
    assert.strictEqual(History.offsetOf(out), 7)
    const bare = History.positioned("LHTTP/1.0 ping\r\n\r\n", channel("h-1"), { epoch: "e", offset: 1 })
    assert.strictEqual(bare, "LHTTP/1.0 ping\r\nchannel:h-1\r\noffset:1\r\nepoch:e\r\n\r\n")
    // an offset in the body is not the frame's
    assert.isNaN(History.offsetOf("LHTTP/1.0 chat\r\npublish:c\r\n\r\n\r\noffset:3"))
  })

  it.effect("the memory store keeps the last `size` messages and says Trimmed past them", () =>
    Effect.gen(function*() {
      const store = History.makeMemory({ policies: [policy] })
      const c = channel("h-1")
      const first = yield* store.recover(c, policy, undefined)
      assert.strictEqual(first.position.offset, 0)
      for (let i = 1; i <= 8; i++) {
        const position = yield* store.append(c, policy, `LHTTP/1.0 m\r\n\r\nm${i}`)
        assert.deepStrictEqual(position, { epoch: first.position.epoch, offset: i })
      }
      // kept: 4..8
      const all = yield* store.recover(c, policy, { epoch: first.position.epoch, offset: 3 })
      assert.deepStrictEqual(all.messages.map(textBodyOf), ["m4", "m5", "m6", "m7", "m8"])
      assert.deepStrictEqual(all.messages.map((message) => message.position.offset), [4, 5, 6, 7, 8])
      assert.isUndefined(all.reason)
      const some = yield* store.recover(c, policy, { epoch: first.position.epoch, offset: 6 })
      assert.deepStrictEqual(some.messages.map(textBodyOf), ["m7", "m8"])
      assert.isUndefined(some.reason)
      const trimmed = yield* store.recover(c, policy, { epoch: first.position.epoch, offset: 2 })
      assert.strictEqual(trimmed.reason, "Trimmed")
      assert.deepStrictEqual(trimmed.messages.map(textBodyOf), ["m4", "m5", "m6", "m7", "m8"])
      assert.strictEqual((yield* store.recover(c, policy, { epoch: "other", offset: 3 })).reason, "EpochChanged")
      assert.strictEqual(
        (yield* store.recover(c, policy, { epoch: first.position.epoch, offset: 9 })).reason,
        "UnknownPosition"
      )
      // another channel has its own offsets and epoch
      const other = yield* store.append(channel("h-2"), policy, "LHTTP/1.0 m\r\n\r\nx")
      assert.strictEqual(other.offset, 1)
      assert.notStrictEqual(other.epoch, first.position.epoch)
    }))

  it.effect("the memory store keeps at most maxChannels logs: the one used longest ago goes, its epoch with it", () =>
    Effect.gen(function*() {
      const store = History.makeMemory({ policies: [policy], maxChannels: 2 })
      const [a, b, c] = [channel("h-a"), channel("h-b"), channel("h-c")]
      const first = yield* store.append(a, policy, "LHTTP/1.0 m\r\n\r\na1")
      yield* store.append(b, policy, "LHTTP/1.0 m\r\n\r\nb1")
      // a recovery counts as a use: a stays, b is now the oldest
      yield* store.recover(a, policy, undefined)
      yield* store.append(c, policy, "LHTTP/1.0 m\r\n\r\nc1")
      const kept = yield* store.recover(a, policy, { ...first, offset: 0 })
      assert.deepStrictEqual([kept.messages.map(textBodyOf), kept.reason], [["a1"], undefined])
      const dropped = yield* store.recover(b, policy, { epoch: "any", offset: 0 })
      assert.deepStrictEqual([dropped.position.offset, dropped.reason], [0, "EpochChanged"])
    }))

  it.effect("the memory store drops messages older than the ttl (TestClock)", () =>
    Effect.gen(function*() {
      const store = History.makeMemory({ policies: [policy] })
      const c = channel("h-1")
      yield* store.append(c, policy, "LHTTP/1.0 m\r\n\r\nold")
      yield* TestClock.adjust("40 seconds")
      const position = yield* store.append(c, policy, "LHTTP/1.0 m\r\n\r\nnew")
      yield* TestClock.adjust("30 seconds")
      const after = yield* store.recover(c, policy, { epoch: position.epoch, offset: 0 })
      assert.deepStrictEqual(after.messages.map(textBodyOf), ["new"])
      assert.strictEqual(after.reason, "Trimmed")
      assert.isUndefined((yield* store.recover(c, policy, { epoch: position.epoch, offset: 1 })).reason)
      yield* TestClock.adjust("31 seconds")
      const empty = yield* store.recover(c, policy, { epoch: position.epoch, offset: 2 })
      assert.deepStrictEqual([empty.messages, empty.reason, empty.position.offset], [[], undefined, 2])
    }))

  it.effect("a plain subscription to a history channel gets the published text byte for byte, and no position frame", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const subscriber = yield* connect()
      yield* subscriber.send("LHTTP/1.0 chat\r\nsubscribe:h-room\r\n\r\n")
      const publisher = yield* connect()
      // a publisher's own position headers too: they are its text
      const sent = "LHTTP/1.0 chat\r\nx-order:2\r\npublish:h-room\r\noffset:5\r\nepoch:e\r\n\r\nhello"
      yield* publisher.send(sent)
      yield* publish(publisher, "h-room", "two")
      assert.deepStrictEqual(yield* take(subscriber, 2), [sent, "LHTTP/1.0 chat\r\npublish:h-room\r\n\r\ntwo"])
      yield* subscriber.nothing()
    }))

  it.effect("since:now: a position frame per channel, then positioned frames (forged positions replaced); a plain channel untouched", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const subscriber = yield* connect()
      yield* subscriber.send("LHTTP/1.0 chat\r\nsubscribe:h-room plain\r\nsince:now\r\n\r\n")
      const answers = (yield* take(subscriber, 2)).map(headersOf)
      const position = answers.find((headers) => headers.channel === "h-room")!
      assert.deepStrictEqual([position.offset, position.recovered, position.reason], ["0", undefined, undefined])
      assert.isString(position.epoch)
      assert.deepStrictEqual(answers.find((headers) => headers.channel === "plain"), {
        channel: "plain",
        reason: "NoHistory"
      })
      const publisher = yield* connect()
      yield* publisher.send("LHTTP/1.0 chat\r\npublish:h-room\r\noffset:99\r\nepoch:forged\r\nchannel:x\r\n\r\none")
      yield* publish(publisher, "plain", "two")
      const [one, two] = yield* take(subscriber, 2)
      assert.deepStrictEqual(headersOf(one!), {
        channel: "h-room",
        offset: "1",
        epoch: position.epoch,
        publish: "h-room"
      })
      assert.strictEqual(two, "LHTTP/1.0 chat\r\npublish:plain\r\n\r\ntwo")
    }))

  it.effect("half the subscribers positioned: each gets its own rendering of the same message", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const positioned = yield* connect()
      const plain = yield* connect()
      yield* positioned.send("LHTTP/1.0 chat\r\nsubscribe:h-room\r\nsince:now\r\n\r\n")
      const { epoch } = headersOf(yield* positioned.next())
      yield* plain.send("LHTTP/1.0 chat\r\nsubscribe:h-room\r\n\r\n")
      const publisher = yield* connect()
      yield* publish(publisher, "h-room", "x")
      assert.strictEqual(yield* plain.next(), "LHTTP/1.0 chat\r\npublish:h-room\r\n\r\nx")
      assert.strictEqual(
        yield* positioned.next(),
        `LHTTP/1.0 chat\r\nchannel:h-room\r\noffset:1\r\nepoch:${epoch}\r\npublish:h-room\r\n\r\nx`
      )
    }))

  it.effect("since on a channel already held is answered: positions from then on, or the messages since the position", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const publisher = yield* connect()
      const client = yield* connect()
      yield* client.send("LHTTP/1.0 chat\r\nsubscribe:h-room\r\n\r\n")
      yield* publish(publisher, "h-room", "a")
      assert.strictEqual(bodyOf(yield* client.next()), "a")
      yield* client.send("LHTTP/1.0 chat\r\nsubscribe:h-room\r\nsince:now\r\nid:1\r\n\r\n")
      const now = headersOf(yield* client.next())
      assert.deepStrictEqual([now.channel, now.offset], ["h-room", "1"])
      yield* publish(publisher, "h-room", "b")
      assert.strictEqual(headersOf(yield* client.next()).offset, "2")
      // held and positioned already: since a position recovers what came after it
      yield* client.send(`LHTTP/1.0 chat\r\nsubscribe:h-room\r\nsince:${now.epoch}:0\r\n\r\n`)
      const [first, second, position] = yield* take(client, 3)
      assert.deepStrictEqual([bodyOf(first!), bodyOf(second!)], ["a", "b"])
      assert.deepStrictEqual(headersOf(position!), {
        channel: "h-room",
        epoch: now.epoch,
        offset: "2",
        recovered: "yes"
      })
      yield* client.nothing()
    }))

  it.effect("a subscriber back with since:<epoch>:<offset> gets exactly what it missed, in order, then live ones", () =>
    Effect.gen(function*() {
      const { connect } = yield* server(History.layerMemory({ policies: [{ ...policy, size: 100 }] }))
      const publisher = yield* connect()
      const first = yield* connect()
      yield* first.send("LHTTP/1.0 chat\r\nsubscribe:h-room\r\nsince:now\r\n\r\n")
      yield* first.next()
      yield* publish(publisher, "h-room", "before")
      const seen = headersOf(yield* first.next())
      // away: 20 messages go by
      for (let i = 0; i < 20; i++) yield* publish(publisher, "h-room", `missed-${i}`)
      yield* publisher.nothing()
      const back = yield* connect()
      yield* back.send(`LHTTP/1.0 chat\r\nsubscribe:h-room\r\nsince:${seen.epoch}:${seen.offset}\r\n\r\n`)
      const recovered = yield* take(back, 21)
      assert.deepStrictEqual(recovered.slice(0, 20).map(bodyOf), Array.from({ length: 20 }, (_, i) => `missed-${i}`))
      assert.deepStrictEqual(
        recovered.slice(0, 20).map((f) => History.offsetOf(f)),
        Array.from({ length: 20 }, (_, i) => i + 2)
      )
      assert.deepStrictEqual(headersOf(recovered[20]!), {
        channel: "h-room",
        epoch: seen.epoch,
        offset: "21",
        recovered: "yes"
      })
      yield* publish(publisher, "h-room", "live")
      const live = yield* back.next()
      assert.deepStrictEqual([bodyOf(live), History.offsetOf(live)], ["live", 22])
      yield* back.nothing()
    }))

  it.effect("says recovered:no with the reason and the current position when the history cannot cover the gap", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const publisher = yield* connect()
      const client = yield* connect()
      yield* client.send("LHTTP/1.0 chat\r\nsubscribe:h-room\r\nsince:now\r\n\r\n")
      const { epoch } = headersOf(yield* client.next())
      for (let i = 1; i <= 9; i++) yield* publish(publisher, "h-room", `m${i}`)
      yield* publisher.nothing()
      const cases: Array<[string, string, number]> = [
        [`${epoch}:1`, "Trimmed", 5],
        ["gone:3", "EpochChanged", 0],
        [`${epoch}:50`, "UnknownPosition", 0]
      ]
      for (const [since, reason, frames] of cases) {
        const back = yield* connect()
        yield* back.send(`LHTTP/1.0 chat\r\nsubscribe:h-room\r\nsince:${since}\r\n\r\n`)
        const got = yield* take(back, frames + 1)
        assert.deepStrictEqual(got.slice(0, frames).map(bodyOf), ["m5", "m6", "m7", "m8", "m9"].slice(0, frames))
        assert.deepStrictEqual(headersOf(got[frames]!), {
          channel: "h-room",
          epoch,
          offset: "9",
          recovered: "no",
          reason
        })
        yield* back.nothing()
      }
      const plain = yield* connect()
      yield* plain.send("LHTTP/1.0 chat\r\nsubscribe:plain\r\nsince:e:1\r\n\r\n")
      assert.deepStrictEqual(headersOf(yield* plain.next()), { channel: "plain", recovered: "no", reason: "NoHistory" })
    }))

  it.effect("refuses a malformed since, or one beside several channels, before subscribing anything", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const client = yield* connect()
      for (
        const frame of [
          "subscribe:h-a\r\nsince:bad",
          "subscribe:h-a h-b\r\nsince:e:1",
          "subscribe:h-a\r\nsince:e:-2",
          "publish:h-a\r\nsince:now"
        ]
      ) {
        yield* client.send(`LHTTP/1.0 chat\r\n${frame}\r\nid:r\r\n\r\n`)
        const error = headersOf(yield* client.next())
        assert.deepStrictEqual([error.status, error.reason, error.id], ["400", "InvalidSince", "r"])
      }
      // nothing was subscribed: a publish reaches no one
      const publisher = yield* connect()
      yield* publish(publisher, "h-a", "x")
      yield* publisher.nothing()
      yield* client.nothing()
    }))

  it.effect("a publisher racing a recovering subscriber: every offset once, in order, across the switch", () =>
    Effect.gen(function*() {
      // the recovery's read is held at two gates: before it reads the store, and before it answers
      const started = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const read = yield* Deferred.make<void>()
      const answer = yield* Deferred.make<void>()
      const gated = Layer.sync(History.History, () => {
        const store = History.makeMemory({ policies: [{ ...policy, size: 10_000 }] })
        return History.History.of({
          ...store,
          recover: (channel, policy, since) =>
            since === undefined ? store.recover(channel, policy, since) : Deferred.succeed(started, undefined).pipe(
              Effect.andThen(Deferred.await(release)),
              Effect.andThen(store.recover(channel, policy, since)),
              Effect.tap(() => Deferred.succeed(read, undefined)),
              Effect.tap(() => Deferred.await(answer))
            )
        })
      })
      const { connect } = yield* server(gated)
      const publisher = yield* connect()
      const watcher = yield* connect()
      yield* watcher.send("LHTTP/1.0 chat\r\nsubscribe:h-race\r\nsince:now\r\n\r\n")
      const { epoch } = headersOf(yield* watcher.next())
      const batch = (from: number) =>
        Effect.gen(function*() {
          for (let i = from; i < from + 10; i++) yield* publish(publisher, "h-race", `${i}`)
          // once the publisher's next message is answered, these are published
          yield* publisher.nothing()
        })
      // before the recovery; while it waits to read (subscribed, not read yet); after the read, before the answer;
      // after the answer
      yield* batch(0)
      const back = yield* connect()
      yield* back.send(`LHTTP/1.0 chat\r\nsubscribe:h-race\r\nsince:${epoch}:0\r\n\r\n`)
      yield* Deferred.await(started)
      yield* batch(10)
      yield* Deferred.succeed(release, undefined)
      yield* Deferred.await(read)
      yield* batch(20)
      yield* Deferred.succeed(answer, undefined)
      yield* batch(30)
      const total = 40
      const offsets: Array<number> = []
      let positionAt = -1
      while (offsets.length < total) {
        const frame = yield* back.next()
        if (frame.startsWith("LHTTP/1.0 position")) {
          assert.strictEqual(positionAt, -1, "one position frame")
          positionAt = offsets.length
          assert.deepStrictEqual(headersOf(frame), { channel: "h-race", epoch, offset: "20", recovered: "yes" })
        } else offsets.push(History.offsetOf(frame))
      }
      assert.deepStrictEqual(offsets, Array.from({ length: total }, (_, i) => i + 1))
      // the switch fell mid-stream: what the read saw (published before it and while it waited) came before the
      // position frame, what was published after the read came after it, once
      assert.strictEqual(positionAt, 20)
      yield* back.nothing()
    }))

  it.effect("a store whose position lags its messages (read before them): each offset once, the position frame at the last one sent", () =>
    Effect.gen(function*() {
      // as NatsHistory's two reads can answer: the channel's position, then the messages after the one asked for,
      // some of them stored between the two reads (and, live, waiting at the subscriber's gate meanwhile)
      const started = yield* Deferred.make<void>()
      const release = yield* Deferred.make<void>()
      const lagging = Layer.sync(History.History, () => {
        const store = History.makeMemory({ policies: [{ ...policy, size: 10_000 }] })
        return History.History.of({
          ...store,
          recover: (channel, policy, since) =>
            since === undefined ? store.recover(channel, policy, since) : Deferred.succeed(started, undefined).pipe(
              Effect.andThen(Deferred.await(release)),
              Effect.andThen(store.recover(channel, policy, since)),
              Effect.map((recovery) => ({
                ...recovery,
                position: { ...recovery.position, offset: recovery.position.offset - 3 }
              }))
            )
        })
      })
      const { connect } = yield* server(lagging)
      const publisher = yield* connect()
      const watcher = yield* connect()
      yield* watcher.send("LHTTP/1.0 chat\r\nsubscribe:h-lag\r\nsince:now\r\n\r\n")
      const { epoch } = headersOf(yield* watcher.next())
      for (let i = 0; i < 5; i++) yield* publish(publisher, "h-lag", `${i}`)
      yield* publisher.nothing()
      const back = yield* connect()
      yield* back.send(`LHTTP/1.0 chat\r\nsubscribe:h-lag\r\nsince:${epoch}:0\r\n\r\n`)
      yield* Deferred.await(started)
      // published while the recovery waits: at the gate, and in the store's answer too
      for (let i = 5; i < 8; i++) yield* publish(publisher, "h-lag", `${i}`)
      yield* publisher.nothing()
      yield* Deferred.succeed(release, undefined)
      const frames = yield* take(back, 9)
      const offsets = frames.filter((frame) => !frame.startsWith("LHTTP/1.0 position")).map(History.offsetOf)
      assert.deepStrictEqual(offsets, [1, 2, 3, 4, 5, 6, 7, 8])
      assert.deepStrictEqual(headersOf(frames[8]!), { channel: "h-lag", epoch, offset: "8", recovered: "yes" })
      yield* back.nothing()
    }))

  it.effect("a recovery runs beside the connection's next messages; one that fails is answered and undoes the subscription", () =>
    Effect.gen(function*() {
      // h-slow's recovery waits until released, h-broken's fails (each time it is asked)
      const release = yield* Deferred.make<void>()
      let brokenReads = 0
      const slow = Layer.sync(History.History, () => {
        const store = History.makeMemory({ policies: [policy] })
        return History.History.of({
          ...store,
          recover: (channel, policy, since, maxBytes) =>
            since === undefined
              ? store.recover(channel, policy, since, maxBytes)
              : channel === "h-broken"
              ? Effect.suspend(() => {
                brokenReads++
                return Effect.fail(new History.HistoryError({ reason: "ReadFailed", message: "the disk is gone" }))
              })
              : Effect.andThen(Deferred.await(release), store.recover(channel, policy, since, maxBytes))
        })
      })
      const { connect } = yield* server(slow)
      const publisher = yield* connect()
      const watcher = yield* connect()
      yield* watcher.send("LHTTP/1.0 chat\r\nsubscribe:h-slow\r\nsince:now\r\n\r\n")
      const { epoch } = headersOf(yield* watcher.next())
      yield* publish(publisher, "h-slow", "missed")
      yield* publisher.nothing()
      const back = yield* connect()
      yield* back.send(`LHTTP/1.0 chat\r\nsubscribe:h-slow\r\nsince:${epoch}:0\r\n\r\n`)
      // while h-slow is read, the connection's next message is answered, and h-slow's live messages wait
      yield* back.send("LHTTP/1.0 chat\r\nsubscribe:h-other\r\nsince:now\r\nid:o\r\n\r\n")
      const other = headersOf(yield* back.next())
      assert.deepStrictEqual([other.channel, other.offset, other.recovered], ["h-other", "0", undefined])
      yield* publish(publisher, "h-slow", "live")
      yield* back.nothing()
      yield* Deferred.succeed(release, undefined)
      // (the read comes after the live one was stored: it recovers both, and the live one that waited goes)
      const [missed, live, position] = yield* take(back, 3)
      assert.deepStrictEqual([bodyOf(missed!), bodyOf(live!)], ["missed", "live"])
      assert.deepStrictEqual([headersOf(position!).recovered, headersOf(position!).offset], ["yes", "2"])
      // a recovery that fails, asked again three times: its error answers the subscription (with its id), which
      // is undone; what waited meanwhile is not delivered
      yield* back.send(`LHTTP/1.0 chat\r\nsubscribe:h-broken\r\nsince:${epoch}:0\r\nid:b\r\n\r\n`)
      yield* back.nothing()
      yield* publish(publisher, "h-broken", "waited")
      yield* publisher.nothing()
      yield* TestClock.adjust("2 seconds")
      const error = headersOf(yield* back.next())
      assert.strictEqual(brokenReads, 4)
      assert.deepStrictEqual([error.status, error.reason, error.id], ["503", "HistoryUnavailable", "b"])
      yield* publish(publisher, "h-broken", "nobody")
      yield* publisher.nothing()
      yield* back.nothing()
    }))

  it.live("a gap in live delivery that the store cannot fill closes the subscriber's connection 1012, nothing after it delivered", () =>
    Effect.gen(function*() {
      // a bus that numbers what it carries, whose deliveries the test makes (with the previous offset, as NATS does)
      const deliver = new Map<
        string,
        (payload: string, position: History.Position | undefined, previous?: number) => void
      >()
      const bus = Layer.succeed(
        Bus.Bus,
        Bus.Bus.of({
          publish: () => Effect.void,
          subscribe: (channel, onMessage) =>
            Effect.acquireRelease(
              Effect.sync(() => deliver.set(channel, onMessage)),
              () => Effect.sync(() => deliver.delete(channel))
            ),
          isReady: Effect.succeed(true),
          numbering: "bus"
        })
      )
      let reads = 0
      const failing = Layer.sync(History.History, () => {
        const store = History.makeMemory({ policies: [policy] })
        return History.History.of({
          ...store,
          numbering: "bus",
          recover: (_channel, _policy, since) =>
            since === undefined
              ? Effect.succeed({ messages: [], position: { epoch: "e1", offset: 1 } })
              : Effect.suspend(() => {
                reads++
                return Effect.fail(new History.HistoryError({ reason: "ReadFailed", message: "the disk is gone" }))
              })
        })
      })
      const { connect } = yield* startMemoryServer({}, undefined, { bus, history: failing })
      const client = yield* connect()
      yield* client.send("LHTTP/1.0 chat\r\nsubscribe:h-gap\r\nsince:now\r\n\r\n")
      assert.strictEqual(headersOf(yield* client.next()).offset, "1")
      const text = (body: string) => `LHTTP/1.0 chat\r\npublish:h-gap\r\n\r\n${body}`
      deliver.get("h-gap")!(text("two"), { epoch: "e1", offset: 2 }, 1)
      assert.strictEqual(History.offsetOf(yield* client.next()), 2)
      // offset 3 never came: the next one shows the gap, and the store fails to fill it (asked four times)
      deliver.get("h-gap")!(text("four"), { epoch: "e1", offset: 4 }, 3)
      assert.deepStrictEqual(yield* client.closed, { code: 1012, reason: "history unavailable" })
      assert.strictEqual(reads, 4)
      assert.deepStrictEqual(yield* pending(client), [])
    }))

  it.effect("recoveries of a channel from one position share the store's reads: those that come during one wait for the next", () =>
    Effect.gen(function*() {
      // the first read waits until released; every read is counted
      const release = yield* Deferred.make<void>()
      let reads = 0
      const counted = Layer.sync(History.History, () => {
        const store = History.makeMemory({ policies: [policy] })
        return History.History.of({
          ...store,
          recover: (channel, policy, since, maxBytes) =>
            since === undefined ? store.recover(channel, policy, since, maxBytes) : Effect.suspend(() => {
              reads++
              const read = store.recover(channel, policy, since, maxBytes)
              return reads === 1 ? Effect.andThen(Deferred.await(release), read) : read
            })
        })
      })
      const { connect } = yield* server(counted)
      const publisher = yield* connect()
      const watcher = yield* connect()
      yield* watcher.send("LHTTP/1.0 chat\r\nsubscribe:h-herd\r\nsince:now\r\n\r\n")
      const { epoch } = headersOf(yield* watcher.next())
      yield* publish(publisher, "h-herd", "missed")
      yield* publisher.nothing()
      const herd = [yield* connect(), yield* connect(), yield* connect(), yield* connect()]
      const subscribe = (client: MemoryClient) =>
        client.send(`LHTTP/1.0 chat\r\nsubscribe:h-herd\r\nsince:${epoch}:0\r\n\r\n`)
      // the first one's read is in flight; the others come meanwhile
      yield* subscribe(herd[0]!)
      yield* Effect.forEach(herd.slice(1), subscribe, { discard: true })
      // each one's subscription handled (its next message answered): every recovery asked for
      for (const client of herd) {
        yield* client.send("LHTTP/1.0 chat\r\npublish:plain\r\nid:1\r\n\r\n")
        assert.strictEqual(yield* client.next(), "LHTTP/1.0 chat\r\nid:1\r\n\r\n")
      }
      assert.strictEqual(reads, 1)
      yield* Deferred.succeed(release, undefined)
      for (const client of herd) {
        const [missed, position] = yield* take(client, 2)
        assert.deepStrictEqual([bodyOf(missed!), headersOf(position!).recovered], ["missed", "yes"])
      }
      // one read for the first, one for the three that came during it
      assert.strictEqual(reads, 2)
    }))

  it.effect("a frame published to several history channels is delivered on each with that channel's position", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const subscriber = yield* connect()
      yield* subscriber.send("LHTTP/1.0 chat\r\nsubscribe:h-a h-b\r\nsince:now\r\n\r\n")
      const positions = (yield* take(subscriber, 2)).map(headersOf)
      const epochOf = (name: string) => positions.find((headers) => headers.channel === name)!.epoch!
      assert.notStrictEqual(epochOf("h-a"), epochOf("h-b"))
      const publisher = yield* connect()
      // h-a is one message ahead of h-b
      yield* publish(publisher, "h-a", "only a")
      assert.strictEqual(
        yield* subscriber.next(),
        `LHTTP/1.0 chat\r\nchannel:h-a\r\noffset:1\r\nepoch:${epochOf("h-a")}\r\npublish:h-a\r\n\r\nonly a`
      )
      yield* publish(publisher, "h-a h-b", "both")
      const both = yield* take(subscriber, 2)
      assert.sameMembers(both, [
        `LHTTP/1.0 chat\r\nchannel:h-a\r\noffset:2\r\nepoch:${epochOf("h-a")}\r\npublish:h-a h-b\r\n\r\nboth`,
        `LHTTP/1.0 chat\r\nchannel:h-b\r\noffset:1\r\nepoch:${epochOf("h-b")}\r\npublish:h-a h-b\r\n\r\nboth`
      ])
      yield* subscriber.nothing()
    }))

  it.effect("the first policy whose prefix matches counts, not a longer one after it", () =>
    Effect.gen(function*() {
      const { connect } = yield* server(History.layerMemory({
        policies: [{ prefix: "h-", size: 2, ttl: Duration.minutes(1) }, {
          prefix: "h-long-",
          size: 50,
          ttl: Duration.minutes(1)
        }]
      }))
      const client = yield* connect()
      yield* client.send("LHTTP/1.0 chat\r\nsubscribe:h-long-x\r\nsince:now\r\n\r\n")
      const { epoch } = headersOf(yield* client.next())
      const publisher = yield* connect()
      for (let i = 1; i <= 5; i++) yield* publish(publisher, "h-long-x", `m${i}`)
      yield* publisher.nothing()
      const back = yield* connect()
      yield* back.send(`LHTTP/1.0 chat\r\nsubscribe:h-long-x\r\nsince:${epoch}:0\r\n\r\n`)
      const got = yield* take(back, 3)
      // size 2 (the first policy), not 50 (the second)
      assert.deepStrictEqual(got.slice(0, 2).map(bodyOf), ["m4", "m5"])
      assert.deepStrictEqual(headersOf(got[2]!), {
        channel: "h-long-x",
        epoch,
        offset: "5",
        recovered: "no",
        reason: "Trimmed"
      })
    }))

  it("the server's internal channels ($...) never keep history, even under a policy for every channel", () => {
    const every: History.Policy = { prefix: "", size: 100, ttl: Duration.minutes(1) }
    // clients cannot name a $ channel (Channel.validate refuses it): the server's own are made inside
    const internal = "$presence.room" as Channel.ChannelId
    assert.isUndefined(History.policyLookup([every])(internal))
    assert.isUndefined(History.makeMemory({ policies: [every] }).policyOf(internal))
    assert.strictEqual(History.makeMemory({ policies: [every] }).policyOf(channel("room")), every)
    assert.isTrue(Result.isFailure(Channel.validate("$presence.room")))
  })

  it.live("a recovery past maxRecoveryBytes hands none of its messages: recovered:no, RecoveryLimit, the channel's position", () =>
    Effect.gen(function*() {
      const { connect } = yield* startMemoryServer({ maxConnections: 100 }, undefined, {
        history: History.layerMemory({ policies: [{ ...policy, size: 100 }] }),
        hub: { maxRecoveryBytes: 1_000 }
      })
      const reader = yield* connect()
      yield* reader.send("LHTTP/1.0 chat\r\nsubscribe:h-big\r\nsince:now\r\n\r\n")
      const { epoch } = headersOf(yield* reader.next())
      const writer = yield* connect()
      // 20 messages of about 100 bytes: 2,000 bytes since offset 0, 1,000 since offset 10
      for (let i = 0; i < 20; i++) yield* publish(writer, "h-big", `${i}`.padEnd(60, "."))
      yield* take(reader, 20)
      const late = yield* connect()
      yield* late.send(`LHTTP/1.0 chat\r\nsubscribe:h-big\r\nsince:${epoch}:0\r\n\r\n`)
      assert.strictEqual(
        yield* late.next(),
        `LHTTP/1.0 position\r\nchannel:h-big\r\nepoch:${epoch}\r\noffset:20\r\nrecovered:no\r\nreason:RecoveryLimit\r\n\r\n`
      )
      // within the budget: every message, then recovered:yes
      const near = yield* connect()
      yield* near.send(`LHTTP/1.0 chat\r\nsubscribe:h-big\r\nsince:${epoch}:15\r\n\r\n`)
      const frames = yield* take(near, 6)
      assert.deepStrictEqual(frames.slice(0, 5).map((text) => headersOf(text).offset), ["16", "17", "18", "19", "20"])
      assert.strictEqual(headersOf(frames[5]!).recovered, "yes")
    }))

  it.live("a publish with an id is acknowledged with the position of each of its history channels", () =>
    Effect.gen(function*() {
      const { connect } = yield* server()
      const reader = yield* connect()
      yield* reader.send("LHTTP/1.0 chat\r\nsubscribe:h-a\r\nsince:now\r\n\r\n")
      const epoch = headersOf(yield* reader.next()).epoch!
      const writer = yield* connect()
      yield* writer.send("LHTTP/1.0 chat\r\npublish:h-a plain h-b\r\nid:w1\r\n\r\none")
      // (the memory store gives each channel an epoch of its own)
      assert.match(
        yield* writer.next(),
        new RegExp(`^LHTTP/1\\.0 chat\r\nid:w1\r\npositions:h-a:${epoch}:1 h-b:[\\w-]+:1\r\n\r\n$`)
      )
      yield* publish(writer, "h-a", "two")
      yield* writer.send("LHTTP/1.0 chat\r\npublish:h-a\r\nid:w2\r\n\r\nthree")
      assert.strictEqual(yield* writer.next(), `LHTTP/1.0 chat\r\nid:w2\r\npositions:h-a:${epoch}:3\r\n\r\n`)
      // the positions the subscriber saw are the acknowledged ones
      const seen = (yield* take(reader, 3)).map((text) => headersOf(text).offset)
      assert.deepStrictEqual(seen, ["1", "2", "3"])
      // a channel without history: no positions header
      yield* writer.send("LHTTP/1.0 chat\r\npublish:plain\r\nid:w3\r\n\r\nfour")
      assert.strictEqual(yield* writer.next(), "LHTTP/1.0 chat\r\nid:w3\r\n\r\n")
    }))

  it.effect("the memory store's epoch is new after a restart: a position from before is EpochChanged", () =>
    Effect.gen(function*() {
      const before = History.makeMemory({ policies: [policy] })
      const c = channel("h-1")
      const position = yield* before.append(c, policy, "LHTTP/1.0 m\r\n\r\nm1")
      // the same process started again: a new store
      const after = History.makeMemory({ policies: [policy] })
      yield* after.append(c, policy, "LHTTP/1.0 m\r\n\r\nm1")
      const recovery = yield* after.recover(c, policy, { ...position, offset: 0 })
      assert.notStrictEqual(recovery.position.epoch, position.epoch)
      assert.deepStrictEqual([recovery.messages, recovery.reason], [[], "EpochChanged"])
    }))

  it.effect("the memory store keeps 10,000 channels by default: the 10,001st makes the one used longest ago go", () =>
    Effect.gen(function*() {
      const store = History.makeMemory({ policies: [policy] })
      const first = yield* store.append(channel("h-0"), policy, "LHTTP/1.0 m\r\n\r\nx")
      const second = yield* store.append(channel("h-1"), policy, "LHTTP/1.0 m\r\n\r\nx")
      for (let i = 2; i < 10_000; i++) yield* store.append(channel(`h-${i}`), policy, "LHTTP/1.0 m\r\n\r\nx")
      // 10,000 channels: all kept, h-0 too (a recovery is a use: h-1 is now the one used longest ago)
      const kept = yield* store.recover(channel("h-0"), policy, { ...first, offset: 0 })
      assert.deepStrictEqual([kept.messages.length, kept.reason], [1, undefined])
      // the 10,001st: h-1 goes, its epoch with it
      yield* store.append(channel("h-10000"), policy, "LHTTP/1.0 m\r\n\r\nx")
      assert.strictEqual(
        (yield* store.recover(channel("h-1"), policy, { ...second, offset: 0 })).reason,
        "EpochChanged"
      )
    }))
})

// ---------------------------------------------------------------------------
// Forged positions end to end (docs/security.md "Forged positions", history-and-presence.md): a
// publisher's own channel, offset and epoch headers never reach a subscription that asked for
// positions, whatever carried the message: a WebSocket, POST /publish, a program on NATS. (The
// imports of this part are here, with it: imports are hoisted.)
// ---------------------------------------------------------------------------

import { connect as natsConnect } from "@nats-io/transport-node"
import * as NatsHistory from "../src/NatsHistory.ts"
import { connect as wsConnect, frame, request, startServer } from "./utils/lhttp.ts"
import { natsServerWith } from "./utils/nats.ts"
import { until } from "./utils/wait.ts"

const forgedHead = "offset:99\r\nepoch:forged\r\nchannel:h-elsewhere\r\n"

describe("History: forged positions never reach a positioned subscription, end to end", () => {
  it.live("over WebSocket and POST /publish: the positioned subscriber gets the server's position and none of the publisher's; a plain one the text as sent", () =>
    Effect.gen(function*() {
      const { url, http } = yield* startServer({}, undefined, { history: History.layerMemory({ policies: [policy] }) })
      const positioned = yield* wsConnect(url)
      yield* positioned.send(frame("chat", { subscribe: "h-room", since: "now" }))
      const { epoch } = headersOf(yield* positioned.next())
      const plain = yield* wsConnect(url)
      yield* plain.send(frame("chat", { subscribe: "h-room" }))
      yield* plain.nothing()
      const publisher = yield* wsConnect(url)
      const overWs = `LHTTP/1.0 chat\r\nx-order:1\r\n${forgedHead}publish:h-room\r\n\r\nover ws`
      yield* publisher.send(overWs)
      const overHttp = `LHTTP/1.0 chat\r\n${forgedHead}publish:h-room\r\nx-order:2\r\n\r\nover POST /publish`
      assert.strictEqual((yield* request(`${http}/publish`, { method: "POST", body: overHttp })).status, 204)
      assert.strictEqual(
        yield* positioned.next(),
        `LHTTP/1.0 chat\r\nchannel:h-room\r\noffset:1\r\nepoch:${epoch}\r\nx-order:1\r\npublish:h-room\r\n\r\nover ws`
      )
      assert.strictEqual(
        yield* positioned.next(),
        `LHTTP/1.0 chat\r\nchannel:h-room\r\noffset:2\r\nepoch:${epoch}\r\npublish:h-room\r\nx-order:2\r\n\r\nover POST /publish`
      )
      assert.deepStrictEqual([yield* plain.next(), yield* plain.next()], [overWs, overHttp])
      // a recovery gives the same renderings, the forged headers removed
      const back = yield* wsConnect(url)
      yield* back.send(frame("chat", { subscribe: "h-room", since: `${epoch}:0` }))
      assert.deepStrictEqual(
        [headersOf(yield* back.next()), headersOf(yield* back.next())].map((
          headers
        ) => [headers.channel, headers.offset, headers.epoch]),
        [
          ["h-room", "1", epoch],
          ["h-room", "2", epoch]
        ]
      )
    }))

  it.live(
    "a program on NATS publishing forged headers: the positioned subscriber gets the stream's position, none of the forged ones",
    () =>
      Effect.gen(function*() {
        const nats = yield* natsServerWith({ jetstream: true })
        const { connect } = yield* startMemoryServer({}, undefined, {
          bus: NatsHistory.layer({ servers: nats.url, connectRetry: "100 millis", policies: [policy] })
        })
        const positioned = yield* connect()
        // ready once the subscription answers (the node connected, its stream set up)
        yield* until(
          Effect.gen(function*() {
            yield* positioned.send("LHTTP/1.0 chat\r\nsubscribe:h-bus\r\nsince:now\r\n\r\n")
            const answer = headersOf(yield* positioned.next("10 seconds"))
            return answer.epoch !== undefined
          }),
          "20 seconds"
        )
        const nc = yield* Effect.acquireRelease(Effect.promise(() => natsConnect({ servers: nats.url })), (nc) =>
          Effect.promise(() => nc.close()))
        nc.publish("lhttp.h-bus", `LHTTP/1.0 chat\r\n${forgedHead}publish:h-bus\r\n\r\nfrom the bus`)
        const received = yield* positioned.next("10 seconds")
        const headers = headersOf(received)
        assert.deepStrictEqual(Object.keys(headers), ["channel", "offset", "epoch", "publish"])
        assert.strictEqual(headers.channel, "h-bus")
        assert.notStrictEqual(headers.epoch, "forged")
        assert.strictEqual(History.offsetOf(received), 1)
        assert.strictEqual(bodyOf(received), "from the bus")
      }),
    { timeout: 40_000 }
  )
})
