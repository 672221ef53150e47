/**
 * A lean Server-Sent Events subscriber for the fan-out benchmark: a raw `net`
 * socket that sends `GET /sse?subscribe=<channel>` and counts the events that
 * carry a frame (each starts with an `id:` line) by scanning the bytes for
 * "\nid: ", without decoding them, as `client.ts` counts WebSocket frames
 * from their headers.
 */
import { Buffer } from "node:buffer"
import * as Net from "node:net"

// Reads are synchronous callbacks that keep nothing, so all sockets can share it.
const readBuffer = Buffer.allocUnsafe(256 * 1024)
const marker = Buffer.from("\nid: ", "latin1")

/** One SSE connection that counts the frames it receives. */
export class SseSubscriber {
  /** Frames received. */
  count = 0
  /** Whether the stream ended. */
  closed = false
  readonly socket: Net.Socket
  // the last bytes of the previous read, where a marker may have begun
  #tail = Buffer.alloc(0)
  #head: string | undefined = ""

  private constructor(
    port: number,
    channel: string,
    localAddress: string | undefined,
    opened: { resolve: () => void; reject: (error: Error) => void }
  ) {
    this.socket = Net.connect({
      host: "127.0.0.1",
      port,
      ...(localAddress === undefined ? {} : { localAddress }),
      noDelay: true,
      onread: {
        buffer: readBuffer,
        callback: (length) => {
          this.#read(readBuffer, length, opened)
          return true
        }
      }
    })
    this.socket.on("connect", () => {
      this.socket.write(`GET /sse?subscribe=${encodeURIComponent(channel)} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`)
    })
    this.socket.on("error", (error) => opened.reject(error))
    this.socket.on("close", () => {
      this.closed = true
      opened.reject(new Error("the connection closed before the stream opened"))
    })
  }

  /**
   * Opens a stream subscribed to `channel` (from `localAddress`, when given);
   * resolves once its `connected` event came.
   */
  static async connect(port: number, channel: string, localAddress?: string): Promise<SseSubscriber> {
    // a server past its admission rate answers 503 with Retry-After: 1: try again after about a second
    for (let attempt = 1;; attempt++) {
      try {
        return await new Promise<SseSubscriber>((resolve, reject) => {
          const client: SseSubscriber = new SseSubscriber(port, channel, localAddress, {
            resolve: () => resolve(client),
            reject
          })
        })
      } catch (error) {
        if (attempt >= 120 || !String(error).includes(" 503 ")) throw error
        await new Promise((resolve) => setTimeout(resolve, 500 + Math.random() * 1000))
      }
    }
  }

  #read(buffer: Buffer, length: number, opened: { resolve: () => void; reject: (error: Error) => void }): void {
    if (this.#head !== undefined) {
      // the response head and the connected event, read as text once
      this.#head += buffer.toString("latin1", 0, length)
      if (!this.#head.startsWith("HTTP/1.1 200")) {
        if (this.#head.includes("\r\n")) opened.reject(new Error(`refused: ${this.#head.split("\r\n")[0]}`))
        return
      }
      if (!this.#head.includes("event: connected")) return
      this.#head = undefined
      opened.resolve()
      return
    }
    // a marker split across reads: look in the tail and the start of this read together
    if (this.#tail.length > 0) {
      const joined = Buffer.concat([this.#tail, buffer.subarray(0, Math.min(length, marker.length - 1))])
      if (joined.indexOf(marker) !== -1) this.count++
    }
    const read = buffer.subarray(0, length)
    for (let at = read.indexOf(marker); at !== -1; at = read.indexOf(marker, at + marker.length)) this.count++
    const keep = Math.min(length, marker.length - 1)
    this.#tail = Buffer.from(buffer.subarray(length - keep, length))
  }
}
