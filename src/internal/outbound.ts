/**
 * What the server writes to connections: a frame's text, rendered once, and
 * its UTF-8 bytes, encoded once and shared by every connection it goes to.
 */
import { Buffer } from "node:buffer"

/** A frame on its way out, rendered once and encoded at most once. */
export class Outbound {
  readonly text: string
  #bytes: Buffer | undefined
  constructor(text: string) {
    this.text = text
  }
  /** The UTF-8 bytes of the frame, encoded on first use and shared afterwards. */
  get bytes(): Buffer {
    return (this.#bytes ??= Buffer.from(this.text, "utf8"))
  }
}

/**
 * Where a connection's frames go: a WebSocket today, SSE or long-poll later.
 * Every method is synchronous and must not throw.
 */
export interface Transport {
  /** Writes frames in order, as one batch (one syscall where the transport can). */
  readonly write: (frames: ReadonlyArray<Outbound>) => void
  /** Bytes written but not yet taken by the peer. */
  readonly bufferedBytes: () => number
  /** Closes with a code and a reason; idempotent. */
  readonly close: (code: number, reason: string) => void
  /** Whether frames can still be written. */
  readonly isOpen: () => boolean
}
