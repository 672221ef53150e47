/**
 * Reading a Server-Sent Events stream without `EventSource` (Node has none):
 * the event stream format of the HTML standard, fed with the bytes of a
 * streaming response in chunks of any size, and the LHTTP frame carried by
 * an event (docs/transports.md).
 */

/** One dispatched event. */
export interface Event {
  /** The last event id the stream gave (it carries over to the events after it, as in `EventSource`). */
  readonly id: string | undefined
  /** The event's type (`message` when it had none). */
  readonly event: string
  /** Its `data:` lines joined with `\n`. */
  readonly data: string
}

/**
 * The event stream parser. Lines end with CRLF, LF or CR, also when a chunk
 * ends between the CR and the LF of a CRLF; UTF-8 sequences may be cut
 * anywhere. A blank line dispatches the event; comments (`:`) and `retry:`
 * are skipped; an unfinished event at the end of the stream is dropped.
 */
export class Parser {
  readonly #decoder = new TextDecoder("utf-8")
  // the text of the line not ended yet
  #rest = ""
  // the last chunk ended with CR: an LF at the start of the next one ends no line
  #afterCr = false
  #id: string | undefined
  #event = ""
  #data: Array<string> = []

  /** The events completed by a chunk of the stream. */
  push(chunk: Uint8Array): Array<Event> {
    return this.#text(this.#decoder.decode(chunk, { stream: true }))
  }

  /** The stream ended: what the decoder still held (the unfinished event is dropped). */
  end(): Array<Event> {
    const events = this.#text(this.#decoder.decode())
    this.#rest = ""
    this.#event = ""
    this.#data = []
    return events
  }

  #text(text: string): Array<Event> {
    const events: Array<Event> = []
    let start = 0
    if (this.#afterCr && text.length > 0) {
      if (text.charCodeAt(0) === 10) start = 1
      this.#afterCr = false
    }
    const length = text.length
    let i = start
    while (i < length) {
      const code = text.charCodeAt(i)
      if (code !== 10 && code !== 13) {
        i++
        continue
      }
      const line = this.#rest + text.slice(start, i)
      this.#rest = ""
      const event = this.#line(line)
      if (event !== undefined) events.push(event)
      if (code === 13) {
        if (i + 1 < length) {
          if (text.charCodeAt(i + 1) === 10) i++
        } else {
          this.#afterCr = true
        }
      }
      start = ++i
    }
    this.#rest += text.slice(start)
    return events
  }

  #line(line: string): Event | undefined {
    if (line === "") {
      if (this.#data.length === 0) {
        this.#event = ""
        return undefined
      }
      const event: Event = { id: this.#id, event: this.#event === "" ? "message" : this.#event, data: this.#data.join("\n") }
      this.#event = ""
      this.#data = []
      return event
    }
    const colon = line.indexOf(":")
    if (colon === 0) return undefined // a comment
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? "" : line.slice(colon + 1)
    if (value.startsWith(" ")) value = value.slice(1)
    switch (field) {
      case "event":
        this.#event = value
        break
      case "data":
        this.#data.push(value)
        break
      case "id":
        if (!value.includes("\0")) this.#id = value
        break
    }
    return undefined
  }
}

const version = "LHTTP/1.0"

/**
 * The frame an event carries, or undefined for a control event (`connected`,
 * `gap`, `reset`, `close`: their data never starts with `LHTTP/1.0`). The
 * head's line breaks are CRLF again: everything up to the first empty line
 * is the head. In the body every line break arrives as LF (SSE cannot tell
 * CRLF, CR and LF apart).
 */
export const frameOf = (event: Event): string | undefined => {
  const data = event.data
  if (!data.startsWith(version)) return undefined
  const blank = data.indexOf("\n\n")
  if (blank === -1) return data.replaceAll("\n", "\r\n")
  return `${data.slice(0, blank).replaceAll("\n", "\r\n")}\r\n\r\n${data.slice(blank + 2)}`
}
