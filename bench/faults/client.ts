/**
 * A client process of the fault campaign: many clients of the project's own
 * Effect client (`LhttpClient`, WebSocket) in one process, each with a
 * session (the demo's `login`), subscribed to its channels with positions,
 * some publishing with acknowledgements (`publishAcknowledged`). Each
 * records what it published and how that ended, every message handed to it
 * per channel (offset, epoch, body), what its recoveries said, its
 * reconnects, its restored sessions and how long each reconnect took to
 * catch up. The campaign (campaign.ts) drives it over IPC (ipc.ts).
 */
import { NodeWS } from "@effect/platform-node"
import { Effect, Exit, Fiber, Scope, Stream } from "effect"
import * as LhttpClient from "../../src/LhttpClient.ts"
import type * as Message from "../../src/Message.ts"
import type { Checked, ClientSpec, Command, Published, Reply } from "./ipc.ts"

const reply = (message: Reply, sent?: () => void) => process.send!(message, undefined, {}, () => sent?.())

/** One client's records, as they grow. */
interface Recording {
  readonly spec: ClientSpec
  readonly published: Array<Published>
  readonly delivered: Record<string, Array<readonly [number, string, string]>>
  readonly told: Record<string, Array<string>>
  /** Per channel, each position frame (offset, recovered, reason) with its connection: a lost message's story. */
  readonly positions: Record<string, Array<string>>
  opens: number
  open: boolean
  restored: number
  readonly catchUps: Array<number>
  /** How long each reconnect took to be open again (the hinted wait, the upgrade and the session restore). */
  readonly reopens: Array<number>
  /** Since when the connection is down (the reconnect being timed), and the channels positioned since. */
  lostAt: number | undefined
  readonly positioned: Set<string>
}

const scope = Effect.runSync(Scope.make())
const recordings: Array<Recording> = []
const clients: Array<LhttpClient.LhttpClient["Service"]> = []
let publishers: Array<Fiber.Fiber<void>> = []

// what the client hands to the app: deliveries by channel, position frames (recovery outcome, catch-up)
const observe = (recording: Recording, message: Message.Message) => {
  if (message._tag === "Failure") return
  const channel = message.headers.get("channel")
  if (channel === undefined || !recording.spec.channels.includes(channel)) return
  if (message.command === "position") {
    ;(recording.positions[channel] ??= []).push(
      `#${recording.opens}:${message.headers.get("offset")}:${message.headers.get("recovered") ?? "-"}${
        message.headers.get("reason") === undefined ? "" : `:${message.headers.get("reason")}`
      }`
    )
    if (message.headers.get("recovered") === "no") {
      ;(recording.told[channel] ??= []).push(message.headers.get("reason") ?? "")
    }
    if (recording.lostAt !== undefined) {
      recording.positioned.add(channel)
      if (recording.positioned.size === recording.spec.channels.length) {
        recording.catchUps.push(Date.now() - recording.lostAt)
        recording.lostAt = undefined
      }
    }
    return
  }
  const offset = Number(message.headers.get("offset"))
  // the body's first line names the message (a burst's carries filler after it)
  const body = message.body.split("\n", 1)[0]!
  ;(recording.delivered[channel] ??= []).push([offset, message.headers.get("epoch") ?? "", body])
}

const connect = (url: string, spec: ClientSpec) =>
  Effect.gen(function*() {
    const recording: Recording = {
      spec,
      published: [],
      delivered: {},
      told: {},
      positions: {},
      opens: 0,
      open: false,
      restored: 0,
      catchUps: [],
      reopens: [],
      lostAt: undefined,
      positioned: new Set()
    }
    recordings.push(recording)
    const client = yield* LhttpClient.connect(url, { sendBuffer: 1_000, requestTimeout: "15 seconds" })
    const run = <A>(stream: Stream.Stream<A>, f: (a: A) => void) =>
      Effect.forkScoped(Stream.runForEach(stream, (a) => Effect.sync(() => f(a))), { startImmediately: true })
    yield* run(client.messages, (message) => observe(recording, message))
    yield* run(client.states, (state) => {
      recording.open = state === "open"
      if (state === "open") {
        recording.opens++
        if (recording.lostAt !== undefined) recording.reopens.push(Date.now() - recording.lostAt)
      } else if (state === "reconnecting" && recording.lostAt === undefined) {
        recording.lostAt = Date.now()
        recording.positioned.clear()
      }
    })
    yield* run(client.sessions, (event) => {
      if (event._tag === "Restored") recording.restored++
    })
    yield* client.request("login", JSON.stringify({ name: spec.name }))
    yield* client.subscribe(spec.channels)
    clients.push(client)
    return { client, recording }
  })

// one publisher: a message every `interval` ms (jittered), each acknowledged before the next
const publishing = (client: LhttpClient.LhttpClient["Service"], recording: Recording, interval: number) =>
  Effect.gen(function*() {
    let n = 0
    while (!stopping) {
      yield* Effect.sleep(interval * (0.5 + Math.random()))
      const channel = recording.spec.channels[n % recording.spec.channels.length]!
      const body = `${recording.spec.name}:${n++}`
      const outcome = yield* client.publishAcknowledged([channel], "m", {}, body).pipe(
        Effect.match({
          onSuccess: (ack): Published => ({ channel, body, offset: ack.positions.get(channel)?.offset }),
          onFailure: (error): Published => ({
            channel,
            body,
            error: [error.reason, error.status, error.serverReason].filter((part) => part !== undefined).join(" ")
          })
        })
      )
      recording.published.push(outcome)
    }
  })

/**
 * Checks what this process's clients were handed against every acknowledged message: for each
 * subscriber and channel, each acknowledged message is there (else lost, or told when a recovery
 * said `recovered:no`), none twice, the offsets growing and each the acknowledgement's.
 */
const check = (acked: Readonly<Record<string, ReadonlyArray<readonly [string, number | null]>>>): Checked => {
  let delivered = 0
  let lost = 0
  let told = 0
  let duplicated = 0
  let reordered = 0
  const lostSample: Array<string> = []
  for (const recording of recordings) {
    for (const channel of recording.spec.channels) {
      const got = recording.delivered[channel] ?? []
      delivered += got.length
      const offsets = new Map<string, number>()
      let last = -1
      for (const [index, [offset, , body]] of got.entries()) {
        if (offsets.has(body)) {
          duplicated++
          if (lostSample.length < 8) {
            lostSample.push(
              `duplicate: ${recording.spec.name} ${channel} ${body} @${offsets.get(body)} and @${offset} (around it ${
                got.slice(Math.max(0, index - 3), index + 2).map(([at]) => at).join(",")
              }; reconnects ${recording.opens - 1}; positions ${(recording.positions[channel] ?? []).join(" ")})`
            )
          }
        }
        offsets.set(body, offset)
        if (offset <= last) reordered++
        last = offset
      }
      const wasTold = (recording.told[channel] ?? []).length > 0
      for (const [body, offset] of acked[channel] ?? []) {
        const at = offsets.get(body)
        if (at !== undefined) {
          if (offset !== null && at !== offset) reordered++
          continue
        }
        if (wasTold) {
          told++
          continue
        }
        lost++
        if (lostSample.length < 8) {
          const before = got.filter(([at]) => offset !== null && at < offset).at(-1)?.[0]
          const after = got.find(([at]) => offset !== null && at > offset)?.[0]
          lostSample.push(
            `${recording.spec.name} ${channel} ${body} @${offset} (had ${before} before it, ${after} after it, ` +
              `last ${got.at(-1)?.[0]}; reconnects ${recording.opens - 1}; positions ${
                (recording.positions[channel] ?? []).join(" ")
              })`
          )
        }
      }
    }
  }
  return {
    clients: recordings.length,
    delivered,
    lost,
    told,
    duplicated,
    reordered,
    reconnects: recordings.reduce((sum, recording) => sum + Math.max(0, recording.opens - 1), 0),
    restored: recordings.reduce((sum, recording) => sum + recording.restored, 0),
    catchUps: recordings.flatMap((recording) => recording.catchUps),
    reopens: recordings.flatMap((recording) => recording.reopens),
    lostSample
  }
}

let interval = 100
let stopping = false

process.on("message", (command: Command) => {
  switch (command.type) {
    case "start": {
      interval = command.interval
      const started = Effect.forEach(command.clients, (spec) => connect(command.url, spec), { concurrency: 50 })
      Effect.runPromise(Effect.provide(Scope.provide(started, scope), NodeWS.layerWebSocketConstructor)).then(
        (connected) => {
          for (const { recording } of connected) recording.opens = Math.max(recording.opens, 1)
          reply({ type: "ready" })
        },
        (error) => {
          console.error("the clients did not connect:", error)
          process.exit(1)
        }
      )
      return
    }
    case "publish": {
      publishers = clients.flatMap((client, i) =>
        recordings[i]!.spec.publishes
          ? [Effect.runFork(publishing(client, recordings[i]!, interval))]
          : []
      )
      reply({ type: "publishing" })
      return
    }
    case "stop": {
      // a publish in flight is let finish: its outcome is known
      stopping = true
      Effect.runPromise(Effect.forEach(publishers, Fiber.join, { discard: true })).then(() =>
        reply({ type: "stopped" })
      )
      return
    }
    case "progress": {
      let delivered = 0
      for (const recording of recordings) {
        for (const got of Object.values(recording.delivered)) delivered += got.length
      }
      // open and caught up: every channel's position known again since the last reconnect
      const settled = recordings.every((recording) => recording.open && recording.lostAt === undefined)
      reply({ type: "progress", delivered, open: settled })
      return
    }
    case "published": {
      reply({ type: "published", published: recordings.flatMap((recording) => recording.published) })
      return
    }
    case "check": {
      // exits once the answer is sent
      reply({ type: "checked", checked: check(command.acked) }, () => {
        Effect.runPromise(Scope.close(scope, Exit.void)).finally(() => process.exit(0))
      })
      return
    }
  }
})

process.on("disconnect", () => process.exit(0))
