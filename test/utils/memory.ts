/**
 * Test harness on the in-memory transport: the server's core (pipeline,
 * filters, processors, hub, outbox, limits) with clients in the same process,
 * no port and no socket. The client has the shape of the socket harness's
 * (test/utils/lhttp.ts), so a test reads the same over either.
 */
import type { Duration } from "effect"
import { Context, Effect, Layer, Option, Scope } from "effect"
import * as Bus from "../../src/Bus.ts"
import type * as Filter from "../../src/Filter.ts"
import type * as History from "../../src/History.ts"
import * as Hub from "../../src/Hub.ts"
import * as LhttpServer from "../../src/LhttpServer.ts"
import * as MemoryTransport from "../../src/MemoryTransport.ts"
import type * as Processor from "../../src/Processor.ts"
import type { Rejection } from "../../src/Rejection.ts"
import * as ServerApi from "../../src/ServerApi.ts"

/** A client on the in-memory transport. */
export interface MemoryClient {
  readonly transport: MemoryTransport.Client
  readonly send: (data: string | Uint8Array) => Effect.Effect<void>
  /** The next frame, failing after `timeout` (default 2 s). */
  readonly next: (timeout?: Duration.Input) => Effect.Effect<string, Error>
  /**
   * Succeeds when nothing is waiting for this client once the server has
   * processed everything sent before (a probe message's answer comes back
   * first); fails with the frame that arrived instead.
   */
  readonly nothing: () => Effect.Effect<void, Error>
  /** The close code and reason, once closed. */
  readonly closed: Effect.Effect<MemoryTransport.CloseInfo, Error>
}

/**
 * Any Layer: what a test passes as `implementations` (the processors' and filters' Layers, whatever they need
 * and fail with). A Layer's output is contravariant, so every Layer is one of these.
 */
type AnyLayer = Layer.Layer<never, unknown, unknown>

/** A running in-memory server. */
export interface MemoryServer {
  readonly server: LhttpServer.LhttpServer["Service"]
  readonly hub: Hub.Hub["Service"]
  /** The server API, when asked for. */
  readonly api: ServerApi.ServerApi["Service"] | undefined
  /** Connects a client until the test's scope closes; `url` and headers as a transport would give them. */
  readonly connect: (
    url?: string,
    options?: Omit<MemoryTransport.Options, "url">
  ) => Effect.Effect<MemoryClient, Rejection>
}

let probes = 0

/**
 * Starts the server's core with the in-memory bus until the test's scope
 * closes. `implementations` provides the processors' and filters' Layers.
 */
export const startMemoryServer = <const P extends Processor.Any = never, const F extends Filter.Any = never>(
  options: LhttpServer.Options<P, F>,
  implementations?: AnyLayer,
  more?: {
    readonly hub?: Hub.Options
    readonly bus?: Layer.Layer<Bus.Bus, unknown>
    readonly history?: Layer.Layer<History.History, unknown>
    /** With the server API (`ServerApi.layer`) over the server. */
    readonly api?: boolean
  }
) =>
  Effect.gen(function*() {
    let app: AnyLayer = LhttpServer.layer(options)
    if (implementations !== undefined) app = app.pipe(Layer.provide(implementations))
    if (more?.api === true) app = ServerApi.layer().pipe(Layer.provideMerge(app))
    const context = yield* Layer.build(
      app.pipe(
        Layer.provideMerge(
          more?.history === undefined ? Hub.layer(more?.hub) : Hub.layer(more.hub).pipe(Layer.provide(more.history))
        ),
        Layer.provide(more?.bus ?? Bus.layerMemory())
      )
    ) as Effect.Effect<Context.Context<LhttpServer.LhttpServer | Hub.Hub>, unknown, Scope.Scope>
    const scope = yield* Effect.scope
    const connect = (url = "/", connectOptions?: Omit<MemoryTransport.Options, "url">) =>
      MemoryTransport.connect({ url, ...connectOptions }).pipe(
        Effect.provideContext(context),
        Effect.provideService(Scope.Scope, scope),
        Effect.map(toClient)
      )
    return {
      server: Context.get(context, LhttpServer.LhttpServer),
      hub: Context.get(context, Hub.Hub),
      api: more?.api === true
        ? Context.get(context as unknown as Context.Context<ServerApi.ServerApi>, ServerApi.ServerApi)
        : undefined,
      connect
    } satisfies MemoryServer
  })

const timeoutError = (what: string) => () => Effect.fail(new Error(what))

const toClient = (transport: MemoryTransport.Client): MemoryClient => {
  const next = (timeout: Duration.Input = "2 seconds") =>
    transport.next.pipe(Effect.timeoutOrElse({ duration: timeout, orElse: timeoutError("no frame arrived in time") }))
  return {
    transport,
    send: transport.send,
    next,
    nothing: () =>
      Effect.gen(function*() {
        const id = `probe-${++probes}`
        yield* transport.send(`LHTTP/1.0 test-probe\r\nid:${id}\r\n\r\n`)
        const frame = yield* next()
        if (!frame.includes(`\r\nid:${id}\r\n`)) {
          return yield* Effect.fail(new Error(`unexpected frame: ${JSON.stringify(frame)}`))
        }
      }),
    closed: transport.closed.pipe(
      Effect.timeoutOrElse({ duration: "5 seconds", orElse: timeoutError("the connection did not close in time") })
    )
  }
}

/** The frames waiting for a client, without waiting for more. */
export const pending = (client: MemoryClient) =>
  Effect.gen(function*() {
    const frames: Array<string> = []
    let frame: Option.Option<string>
    while (Option.isSome(frame = yield* client.transport.poll)) frames.push(frame.value)
    return frames
  })
