/**
 * The WebSocket transport on Node: it owns its `ws` server and each
 * `WebSocket`. A message goes from the socket straight into its connection,
 * writes are corked batches of shared bytes, a heartbeat pings every
 * connection and closes those that do not answer, and an idle connection
 * holds no fiber, no Effect `Socket` and no HTTP request.
 */
import * as NodeWS from "@effect/platform-node/NodeWS"
import { Duration, Effect } from "effect"
import { Buffer } from "node:buffer"
import type * as Http from "node:http"
import type { Duplex } from "node:stream"
import type * as LhttpServer from "../../LhttpServer.ts"
import type * as Transport from "../../Transport.ts"
import { Outbound } from "../wire/outbound.ts"
import { CloseCode } from "../wire/protocol.ts"
import * as Admission from "./admission.ts"
import type { UpgradeHandler } from "./dispatcher.ts"

/** Options of the WebSocket transport. */
export interface Options {
  /** The paths of the WebSocket endpoint: exact, or a prefix ending in `/*` (default `["/*"]`: any path). */
  readonly paths?: ReadonlyArray<string> | undefined
  /** How long a peer gets to answer a close frame before its socket is destroyed (default 5 s). */
  readonly closeGrace?: Duration.Input | undefined
}

// how long a peer gets to answer a close frame before its socket is destroyed, unless `closeGrace` says otherwise
const defaultCloseGrace = Duration.seconds(5)

const OPEN = 1

// an outgoing frame as a WebSocket text frame (RFC 6455 §5.2: FIN, opcode 1, the length, no mask from a
// server), made on its first write and kept with the frame: a frame fanned out to a thousand connections
// is framed once, where ws.send framed it per connection (issue 23)
const framed = (frame: Transport.Outbound): Uint8Array => {
  if (frame instanceof Outbound) return (frame.framed ??= frameOf(frame.bytes))
  return frameOf(frame.bytes)
}

const frameOf = (payload: Uint8Array): Buffer => {
  const length = payload.length
  const head = length < 126 ? 2 : length < 65_536 ? 4 : 10
  const bytes = Buffer.allocUnsafe(head + length)
  bytes[0] = 0x81
  if (head === 2) bytes[1] = length
  else if (head === 4) {
    bytes[1] = 126
    bytes.writeUInt16BE(length, 2)
  } else {
    bytes[1] = 127
    bytes.writeBigUInt64BE(BigInt(length), 2)
  }
  bytes.set(payload, head)
  return bytes
}

/** One WebSocket as a transport of the core. */
class WebSocketTransport implements Transport.Transport {
  readonly kind = "websocket"
  readonly peer: Transport.Peer
  readonly ws: NodeWS.WebSocket
  readonly socket: Duplex
  /** Milliseconds the peer gets to answer a close frame. */
  readonly closeGrace: number
  /** A ping is waiting for its pong. */
  awaitingPong = false
  /** The core asked to stop reading: pongs are not read either, so the heartbeat waits. */
  paused = false

  constructor(ws: NodeWS.WebSocket, socket: Duplex, peer: Transport.Peer, closeGrace: number) {
    this.ws = ws
    this.socket = socket
    this.peer = peer
    this.closeGrace = closeGrace
  }

  write(frames: ReadonlyArray<Transport.Outbound>): void {
    if (this.ws.readyState !== OPEN) return
    // frames framed once and shared by every connection they go to, written in one socket write;
    // ws never holds a frame back here (no compression), so the socket's order is the sends' order
    if (frames.length === 1) {
      this.socket.write(framed(frames[0]!))
      return
    }
    const list: Array<Uint8Array> = new Array(frames.length)
    let size = 0
    for (let i = 0; i < frames.length; i++) size += (list[i] = framed(frames[i]!)).length
    this.socket.write(Buffer.concat(list, size))
  }

  bufferedBytes(): number {
    return this.ws.bufferedAmount
  }

  isOpen(): boolean {
    return this.ws.readyState === OPEN
  }

  close(code: number, reason: string): void {
    if (this.ws.readyState !== OPEN) return
    try {
      this.ws.close(code, reason)
    } catch {
      // the core gives valid codes and reasons; should ws refuse one anyway, the connection still ends
      return this.ws.terminate()
    }
    const ws = this.ws
    setTimeout(() => ws.terminate(), this.closeGrace).unref()
  }

  pause(): void {
    this.paused = true
    this.ws.pause()
  }

  resume(): void {
    this.paused = false
    this.ws.resume()
  }
}

// pings written per turn of the event loop: a heartbeat of many connections goes out in slices, so that
// it never holds the loop for long (19,000 connections pinged in one loop held it about half a second:
// docs/benchmarks.md, issue 23)
const pingsPerTurn = 256

/**
 * Pings every open connection each `interval` ms (none when not finite), a
 * slice of them per turn of the event loop, and closes with 4000 those whose
 * pong has not come within `timeout` ms (at most the interval) of the last
 * slice. Returns the way to stop it.
 */
const heartbeat = (open: ReadonlySet<WebSocketTransport>, interval: number, timeout: number): () => void => {
  let stopped = false
  const ping = () => {
    const due = Array.from(open)
    let next = 0
    const check = () => {
      for (const transport of due) {
        if (transport.awaitingPong && !transport.paused && open.has(transport)) {
          transport.close(CloseCode.heartbeatTimeout, "heartbeat timeout")
        }
      }
    }
    const slice = () => {
      if (stopped) return
      const end = Math.min(due.length, next + pingsPerTurn)
      for (; next < end; next++) {
        const transport = due[next]!
        // a connection the core paused is not read, so its pong would not be seen: it waits
        if (transport.paused || !open.has(transport)) continue
        transport.awaitingPong = true
        transport.ws.ping()
      }
      if (next < due.length) setImmediate(slice)
      else setTimeout(check, Math.min(timeout, interval)).unref()
    }
    slice()
  }
  // an infinite interval turns the heartbeat off
  const timer = Number.isFinite(interval) && interval > 0 ? setInterval(ping, interval).unref() : undefined
  return () => {
    stopped = true
    if (timer !== undefined) clearInterval(timer)
  }
}

/**
 * The WebSocket endpoint over the server in context: the handler of the
 * upgrades at its paths, which admits each peer first (a refusal is an HTTP
 * answer, and no WebSocket), then hands the socket to the core. Stopped
 * with the scope: what is still open then (a drain past its timeout) is cut.
 */
export const make = Effect.fnUntraced(function*(options: Options | undefined) {
  const admission = yield* Admission.make()
  const server: LhttpServer.LhttpServer["Service"] = admission.server
  const closeGrace = Duration.toMillis(Duration.fromInputUnsafe(options?.closeGrace ?? defaultCloseGrace))
  const context = yield* Effect.context<never>()
  const settings = server.settings
  const wss = new NodeWS.WebSocketServer({
    noServer: true,
    clientTracking: false,
    maxPayload: settings.maxMessageBytes,
    perMessageDeflate: false
  })
  const open = new Set<WebSocketTransport>()
  const stop = heartbeat(
    open,
    Duration.toMillis(settings.heartbeatInterval),
    Duration.toMillis(settings.heartbeatTimeout)
  )
  // after the server's drain: what is still open is cut, so the process can exit
  yield* Effect.addFinalizer(() =>
    Effect.sync(() => {
      stop()
      for (const transport of open) transport.ws.terminate()
    })
  )

  const connect = (ws: NodeWS.WebSocket, socket: Duplex, peer: Transport.Peer, admitted: LhttpServer.Admitted) => {
    const transport = new WebSocketTransport(ws, socket, peer, closeGrace)
    open.add(transport)
    const inbound = server.accept(transport, admitted)
    ws.on("message", (data: Buffer, isBinary: boolean) => inbound.receive(isBinary ? data : data.toString()))
    ws.on("pong", () => {
      transport.awaitingPong = false
    })
    // a protocol error (1002), an oversized message (1009) or invalid UTF-8 (1007): the peer's fault,
    // ws closes the connection with that code; logged at debug level
    ws.on("error", (error) => {
      Effect.runForkWith(context)(Effect.logDebug(`WebSocket closed by the server: ${error.message}`))
    })
    ws.on("close", () => {
      open.delete(transport)
      inbound.closed()
    })
  }

  const upgrade: UpgradeHandler = (request: Http.IncomingMessage, socket: Duplex, head: Buffer) => {
    if (request.headers.upgrade?.toLowerCase() !== "websocket") return false
    const refused = admission.closed() ?? admission.origin(request)
    if (refused !== undefined) {
      Admission.refuseUpgrade(socket, refused)
      return true
    }
    const peer = Admission.peerOf(request)
    // admitted first (the cap, the rate, the authenticate hook): a refusal is an HTTP answer, and no WebSocket
    admission.admit(peer, (result) => {
      if (socket.destroyed) return
      if (result._tag === "Failure") return Admission.refuseUpgrade(socket, result.failure)
      wss.handleUpgrade(request, socket, head, (ws) => connect(ws, socket, peer, result.success))
    })
    return true
  }
  return upgrade
})
