/**
 * A frame on its way out: its text, rendered once, and its UTF-8 bytes,
 * encoded on first use and shared by every connection it goes to.
 */
const encoder = new TextEncoder()

// Node's Buffer when there is one: `ws` sends a Buffer as it is, while any other
// Uint8Array costs it a wrapping Buffer per send (per subscriber). Elsewhere, TextEncoder.
const encode: (text: string) => Uint8Array = typeof globalThis.Buffer === "function"
  ? (text) => globalThis.Buffer.from(text, "utf8")
  : (text) => encoder.encode(text)

/** Where a frame sits in a channel's history, when the hub rendered it for a subscription that asked. */
interface Position {
  readonly channel: string
  readonly epoch: string
  readonly offset: number
}

/** A frame on its way out, rendered once and encoded at most once (a `Transport.Outbound`). */
export class Outbound {
  readonly text: string
  readonly position: Position | undefined
  /**
   * What a transport made of the frame for its own writes, made by the first
   * connection that writes it and shared by the others (the Node WebSocket
   * transport: the whole WebSocket frame).
   */
  framed: Uint8Array | undefined = undefined
  #bytes: Uint8Array | undefined
  constructor(text: string, position?: Position) {
    this.text = text
    this.position = position
  }
  get bytes(): Uint8Array {
    return (this.#bytes ??= encode(this.text))
  }
}

/** The UTF-8 length of a string, counted without encoding it. */
export const utf8Length = (text: string): number => {
  let bytes = text.length
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code < 0x80) continue
    if (code < 0x800) bytes += 1
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1)
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 2
        i++
      } else bytes += 2
    } else bytes += 2
  }
  return bytes
}
