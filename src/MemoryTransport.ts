/**
 * The in-memory transport: a client connected to the server in the same
 * process, without a socket or a port. The whole core runs as over any other
 * transport (pipeline, filters, processors, hub, outbox and its limits), so
 * tests of processors and filters are fast and need no network.
 *
 * ```ts
 * const client = yield* MemoryTransport.connect()
 * yield* client.send("LHTTP/1.0 echo\r\n\r\nhi")
 * const reply = yield* client.next // "LHTTP/1.0 echo\r\n\r\nhi"
 * ```
 *
 * @since 0.1.0
 */
import { Deferred, Effect, Exit, Option, Queue, type Scope } from "effect"
import { LhttpServer } from "./LhttpServer.ts"
import type { Rejection } from "./Rejection.ts"
import type * as Transport from "./Transport.ts"

/**
 * How a connection was closed.
 *
 * @since 0.1.0
 * @category models
 */
export interface CloseInfo {
  readonly code: number
  readonly reason: string
}

/**
 * A client on the in-memory transport.
 *
 * @since 0.1.0
 * @category models
 */
export interface Client {
  /** Sends one message to the server. */
  readonly send: (data: string | Uint8Array) => Effect.Effect<void>
  /** Sends messages that arrive together, as one read of a socket hands them over. */
  readonly sendAll: (batch: Iterable<string | Uint8Array>) => Effect.Effect<void>
  /** The next frame the server wrote, waiting for it. */
  readonly next: Effect.Effect<string>
  /** The next frame if one was written, without waiting. */
  readonly poll: Effect.Effect<Option.Option<string>>
  /** How the server closed the connection, waiting for it. */
  readonly closed: Effect.Effect<CloseInfo>
  /** Closes the connection from the client's side. */
  readonly close: Effect.Effect<void>
  /**
   * Stops or restarts reading: while stopped, the frames written and not yet
   * taken count as the transport's buffered bytes, as a socket's unsent bytes
   * do, so the outbox's bound and slow-consumer policy apply.
   */
  readonly setReading: (reading: boolean) => Effect.Effect<void>
}

/**
 * Options of an in-memory connection: who the peer claims to be.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly url?: string | undefined
  readonly requestHeaders?: Readonly<Record<string, string | undefined>> | undefined
  readonly remoteAddress?: string | undefined
}

interface Written {
  readonly text: string
  readonly size: number
}

/**
 * Connects a client to the `LhttpServer` in context until the scope closes.
 * The server's `authenticate` hook runs first: a refusal fails the connect
 * with its `Rejection`, as an HTTP transport answers its status.
 *
 * @since 0.1.0
 * @category constructors
 */
export const connect = (
  options?: Options
): Effect.Effect<Client, Rejection, LhttpServer | Scope.Scope> =>
  Effect.gen(function*() {
    const server = yield* LhttpServer
    const frames = yield* Queue.unbounded<Written>()
    const closedBy = Deferred.makeUnsafe<CloseInfo>()
    let open = true
    let reading = true
    let unread = 0
    // set once `accept` returns; the transport may be closed (and `end` run) before that
    let inbound: Transport.Inbound | undefined = undefined

    const end = (info: CloseInfo) => {
      if (!open) return
      open = false
      Deferred.doneUnsafe(closedBy, Exit.succeed(info))
      inbound?.closed()
    }

    const peer: Transport.Peer = {
      url: options?.url ?? "/",
      requestHeaders: options?.requestHeaders ?? {},
      remoteAddress: options?.remoteAddress ?? "127.0.0.1"
    }
    const admitted = yield* server.admit(peer)
    const transport: Transport.Transport = {
      kind: "memory",
      peer,
      write: (batch) => {
        if (!open) return
        for (const frame of batch) {
          unread += frame.bytes.byteLength
          Queue.offerUnsafe(frames, { text: frame.text, size: frame.bytes.byteLength })
        }
      },
      bufferedBytes: () => reading ? 0 : unread,
      close: (code, reason) => end({ code, reason }),
      isOpen: () => open
    }
    inbound = server.accept(transport, admitted)
    if (!open) inbound.closed()
    yield* Effect.addFinalizer(() => Effect.sync(() => end({ code: 1000, reason: "" })))

    const taken = (written: Written) => {
      unread -= written.size
      return written.text
    }
    return {
      send: (data) => Effect.sync(() => open && inbound!.receive(data)),
      sendAll: (batch) =>
        Effect.sync(() => {
          for (const data of batch) if (open) inbound!.receive(data)
        }),
      next: Effect.map(Queue.take(frames), taken),
      poll: Effect.map(Queue.poll(frames), Option.map(taken)),
      closed: Deferred.await(closedBy),
      close: Effect.sync(() => end({ code: 1000, reason: "" })),
      setReading: (value) =>
        Effect.sync(() => {
          reading = value
        })
    } satisfies Client
  })
