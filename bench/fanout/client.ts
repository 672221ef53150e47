/**
 * A lean WebSocket client for the fan-out benchmark's load processes: a raw
 * `net` socket, the upgrade handshake written by hand, and a reader that
 * counts the server's data messages from frame headers alone. Payloads are
 * skipped unread, and every socket of a process reads into one shared buffer
 * (Node's `onread`), so a delivery costs the client almost nothing but the
 * syscall that brought it.
 */
import { Buffer } from "node:buffer"
import { randomBytes } from "node:crypto"
import * as Net from "node:net"

// Reads are synchronous callbacks that keep nothing, so all sockets can share it.
const readBuffer = Buffer.allocUnsafe(256 * 1024)

// Socket.IO's connect packet for the default namespace: "40", masked with key 0.
const connect = Buffer.from([0x81, 0x82, 0, 0, 0, 0, 0x34, 0x30])

// An empty pong: ws pings carry no payload, and a client frame is masked (key 0).
const pong = Buffer.from([0x8a, 0x80, 0, 0, 0, 0])

/** Encodes a client text frame: FIN, opcode 1, masked with a random key. */
export const textFrame = (text: string): Buffer => {
  const payload = Buffer.from(text, "utf8")
  const length = payload.length
  const extended = length < 126 ? 0 : length < 65536 ? 2 : 8
  const frame = Buffer.alloc(2 + extended + 4 + length)
  frame[0] = 0x81
  if (extended === 0) frame[1] = 0x80 | length
  else if (extended === 2) {
    frame[1] = 0x80 | 126
    frame.writeUInt16BE(length, 2)
  } else {
    frame[1] = 0x80 | 127
    frame.writeBigUInt64BE(BigInt(length), 2)
  }
  const maskAt = 2 + extended
  randomBytes(4).copy(frame, maskAt)
  for (let i = 0; i < length; i++) frame[maskAt + 4 + i] = payload[i]! ^ frame[maskAt + (i & 3)]!
  return frame
}

// How many header bytes a server frame has, from its second byte (server frames are unmasked).
const headerLength = (second: number): number => {
  const length = second & 127
  return length === 126 ? 4 : length === 127 ? 10 : 2
}

interface Handshake {
  readonly resolve: () => void
  readonly reject: (error: Error) => void
}

/**
 * What the load speaks over the WebSocket: LHTTP frames (effect-lhttp and the
 * raw `ws` servers), or Socket.IO's packets (`40`, `42[...]`). Socket.IO's
 * pings (every 25 s) are not answered: a measurement is over well before.
 */
export type Protocol = "lhttp" | "socketio"

/** One WebSocket connection that counts the data messages it receives. */
export class RawClient {
  /** Complete data messages received. */
  count = 0
  /**
   * Data messages still to come that are not deliveries, so not counted: a
   * subscription with `since:now` is answered with one `position` frame before
   * any message of the channel (see {@link RawClient.subscribe}).
   */
  uncounted = 0
  /** Whether the server sent a close frame or the socket ended. */
  closed = false
  /** Pings received (the server's heartbeats), each answered with a pong. */
  pings = 0
  /** Called after each read that brought frames in (the publisher paces itself with it). */
  onRead: (() => void) | undefined
  readonly socket: Net.Socket
  // the HTTP response while the handshake is in progress, then undefined
  #response: string | undefined = ""
  readonly #upgraded: Handshake
  // a frame header split across reads, and the payload bytes left to skip
  readonly #head = Buffer.alloc(10)
  #headLength = 0
  #skip = 0
  // Socket.IO: frames sent before the namespace is connected
  #waiting: Array<Buffer> | undefined

  private constructor(port: number, upgraded: Handshake, protocol: Protocol, localAddress: string | undefined) {
    this.#upgraded = upgraded
    // Socket.IO: its open packet and its connect acknowledgement are not deliveries; the namespace
    // connect goes after the open packet, and what is sent waits for the acknowledgement
    if (protocol === "socketio") {
      this.count = -2
      this.#waiting = []
    }
    this.socket = Net.connect({
      host: "127.0.0.1",
      port,
      ...(localAddress === undefined ? {} : { localAddress }),
      noDelay: true,
      onread: {
        buffer: readBuffer,
        callback: (length) => {
          this.#read(readBuffer, length)
          return true
        }
      }
    })
    this.socket.on("connect", () => {
      const key = randomBytes(16).toString("base64")
      const path = protocol === "socketio" ? "/socket.io/?EIO=4&transport=websocket" : "/fanout"
      this.socket.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`
      )
    })
    this.socket.on("error", (error) => this.#upgraded.reject(error))
    this.socket.on("close", () => {
      this.closed = true
      this.#upgraded.reject(new Error("the connection closed during the handshake"))
    })
  }

  /**
   * Connects to 127.0.0.1:port and completes the WebSocket handshake; with
   * `socketio`, at Socket.IO's path, connecting its default namespace. A
   * `localAddress` (another loopback address, 127.0.0.2...) gives the load
   * more source ports than one address has.
   */
  static async connect(port: number, protocol: Protocol = "lhttp", localAddress?: string): Promise<RawClient> {
    // a server past its admission rate answers 503 with Retry-After: 1: try again after about a second, as a
    // client's backoff would (the main job admits 2,000 new connections a second, 4,000 at once)
    for (let attempt = 1;; attempt++) {
      try {
        return await new Promise<RawClient>((resolve, reject) => {
          const client: RawClient = new RawClient(
            port,
            { resolve: () => resolve(client), reject },
            protocol,
            localAddress
          )
        })
      } catch (error) {
        if (attempt >= 120 || !String(error).includes("HTTP/1.1 503")) throw error
        await new Promise((resolve) => setTimeout(resolve, 500 + Math.random() * 1000))
      }
    }
  }

  /**
   * Writes an encoded subscribe frame; with `positioned` (the frame has
   * `since:now`), the `position` frame that answers it is not counted.
   */
  subscribe(frame: Buffer, positioned = false): void {
    if (positioned) this.uncounted++
    this.send(frame)
  }

  /** Writes an encoded client frame (over Socket.IO, once its namespace is connected). */
  send(frame: Buffer): void {
    if (this.#waiting !== undefined) this.#waiting.push(frame)
    else this.socket.write(frame)
  }

  // Socket.IO's handshake, by the count of frames: the open packet, then the connect acknowledgement
  #socketIo(): void {
    if (this.count === -1) this.socket.write(connect)
    else if (this.count === 0 && this.#waiting !== undefined) {
      const waiting = this.#waiting
      this.#waiting = undefined
      for (const frame of waiting) this.socket.write(frame)
    }
  }

  #read(buffer: Buffer, length: number): void {
    let start = 0
    if (this.#response !== undefined) {
      const response = this.#response + buffer.toString("latin1", 0, length)
      const end = response.indexOf("\r\n\r\n")
      if (end === -1) {
        this.#response = response
        return
      }
      if (!response.startsWith("HTTP/1.1 101")) {
        this.#upgraded.reject(new Error(`the server refused the upgrade: ${response.split("\r\n")[0]}`))
        this.socket.destroy()
        return
      }
      start = end + 4 - this.#response.length
      this.#response = undefined
      this.#upgraded.resolve()
    }
    this.#frames(buffer, start, length)
    this.onRead?.()
  }

  // Walks the frame headers in buffer[start, end), skipping payloads.
  #frames(buffer: Buffer, start: number, end: number): void {
    let i = start
    while (i < end) {
      if (this.#skip > 0) {
        const take = Math.min(this.#skip, end - i)
        this.#skip -= take
        i += take
        continue
      }
      if (this.#headLength === 0 && end - i >= 2 && end - i >= headerLength(buffer[i + 1]!)) {
        this.#frame(buffer, i)
        i += headerLength(buffer[i + 1]!)
        continue
      }
      // a header split across reads: gather it byte by byte
      this.#head[this.#headLength++] = buffer[i++]!
      if (this.#headLength < 2 || this.#headLength < headerLength(this.#head[1]!)) continue
      this.#headLength = 0
      this.#frame(this.#head, 0)
    }
  }

  // Reads one complete frame header at buffer[at].
  #frame(buffer: Buffer, at: number): void {
    const first = buffer[at]!
    const length = buffer[at + 1]! & 127
    this.#skip = length === 126
      ? buffer.readUInt16BE(at + 2)
      : length === 127
      ? buffer.readUIntBE(at + 4, 6)
      : length
    const opcode = first & 15
    if (opcode < 8) {
      if (first & 0x80) {
        if (this.uncounted > 0) this.uncounted--
        else this.count++
      }
      if (this.count <= 0) this.#socketIo()
    } else if (opcode === 9) {
      this.pings++
      this.socket.write(pong)
    } else if (opcode === 8) this.closed = true
  }
}
