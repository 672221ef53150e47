/**
 * Reading the SSE transport's stream without `EventSource` (Node has none,
 * and it could not say when a connection is new): the event stream format of
 * the HTML standard, fed with the bytes of a streaming response in chunks of
 * any size, and what each event is to an LHTTP client (docs/transports.md).
 * Both clients read their streams with it.
 */
import { StreamEvent, version } from "./protocol.ts"

/** One dispatched event, named as `EventSource`'s `MessageEvent` names them. */
export interface Event {
  /** The event's type (`message` when it had none). */
  readonly type: string
  /** Its `data:` lines joined with `\n`. */
  readonly data: string
  /** The last event id the stream gave (it carries over to the events after it); `""` before any. */
  readonly lastEventId: string
}

const LF = 10
const CR = 13
const COLON = 58
const SPACE = 32

/**
 * The event stream parser. Lines end with CRLF, LF or CR, also when a chunk
 * ends between the CR and the LF of a CRLF; UTF-8 sequences may be cut
 * anywhere. A blank line dispatches the event (none when it has no `data`);
 * comments (`:`), `retry:` and unknown fields are skipped; an `id` holding
 * NUL is ignored; an unfinished event at the end of the stream is dropped.
 */
export class Parser {
  readonly #decoder = new TextDecoder("utf-8")
  // the text of the line not ended yet
  #rest = ""
  // the last chunk ended with CR: an LF at the start of the next one ends no line
  #afterCr = false
  #lastEventId = ""
  #type = ""
  #data: Array<string> = []

  /** The events completed by a chunk of the stream. */
  push(chunk: Uint8Array): Array<Event> {
    return this.#text(this.#decoder.decode(chunk, { stream: true }))
  }

  /** The stream ended: what the decoder still held (the unfinished event is dropped). */
  end(): Array<Event> {
    const events = this.#text(this.#decoder.decode())
    this.#rest = ""
    this.#type = ""
    this.#data = []
    return events
  }

  #text(text: string): Array<Event> {
    const events: Array<Event> = []
    const length = text.length
    let start = 0
    if (this.#afterCr && length > 0) {
      if (text.charCodeAt(0) === LF) start = 1
      this.#afterCr = false
    }
    let i = start
    while (i < length) {
      const code = text.charCodeAt(i)
      if (code !== LF && code !== CR) {
        i++
        continue
      }
      const event = this.#line(this.#rest + text.slice(start, i))
      this.#rest = ""
      if (event !== undefined) events.push(event)
      if (code === CR) {
        if (i + 1 === length) this.#afterCr = true
        else if (text.charCodeAt(i + 1) === LF) i++
      }
      start = ++i
    }
    this.#rest += text.slice(start)
    return events
  }

  #line(line: string): Event | undefined {
    if (line === "") {
      const data = this.#data
      const type = this.#type
      this.#type = ""
      this.#data = []
      if (data.length === 0) return undefined
      return { type: type === "" ? "message" : type, data: data.join("\n"), lastEventId: this.#lastEventId }
    }
    if (line.charCodeAt(0) === COLON) return undefined // a comment
    const colon = line.indexOf(":")
    const field = colon === -1 ? line : line.slice(0, colon)
    let value = colon === -1 ? "" : line.slice(colon + 1)
    if (value.charCodeAt(0) === SPACE) value = value.slice(1)
    if (field === "event") this.#type = value
    else if (field === "data") this.#data.push(value)
    else if (field === "id" && !value.includes("\0")) this.#lastEventId = value
    return undefined
  }
}

/**
 * A frame's text from the data of an event (its `data:` lines joined with
 * `\n`): the head, up to the first empty line, gets its CRLF line breaks
 * back; the body is kept as it is (SSE cannot tell CRLF, CR and LF apart: each
 * line break of the body arrives as LF).
 */
export const frameTextOf = (data: string): string => {
  const blank = data.indexOf("\n\n")
  if (blank === -1) return data.replaceAll("\n", "\r\n")
  return `${data.slice(0, blank).replaceAll("\n", "\r\n")}\r\n\r\n${data.slice(blank + 2)}`
}

/** The id of the SSE event of a connection's frame `n` (its number on that connection): `<key>:<n>`. */
export const eventId = (key: string, n: number): string => `${key}:${n}`

/** An event id read back (`Last-Event-ID`): its connection's key and frame number; undefined when it is not one. */
export const eventIdOf = (value: string): { readonly key: string; readonly n: number } | undefined => {
  const colon = value.lastIndexOf(":")
  if (colon <= 0) return undefined
  const n = Number(value.slice(colon + 1))
  return Number.isSafeInteger(n) && n >= 0 ? { key: value.slice(0, colon), n } : undefined
}

/** How a connection ended, as a `410` or an `event: close` says it. */
export interface Ended {
  readonly code: number
  readonly reason: string
}

/**
 * `{"code":…,"reason":…}` read leniently (a code that is no number is 1006), or undefined when it
 * is no JSON object.
 */
export const endedOf = (text: string): Ended | undefined => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof json !== "object" || json === null) return undefined
  const { code, reason } = json as { readonly code?: unknown; readonly reason?: unknown }
  return { code: Number(code) || 1006, reason: reason === undefined || reason === null ? "" : String(reason) }
}

/**
 * What an event is to a client: a frame (its data starts with the version,
 * whatever the event's type: a frame whose command is `close` is a frame), or
 * one of the transport's control events, or nothing it knows.
 */
export type Item =
  | { readonly _tag: "Frame"; readonly text: string }
  | { readonly _tag: "Connected"; readonly connection: string }
  | { readonly _tag: "Reset" }
  | { readonly _tag: "Close"; readonly ended: Ended }
  | { readonly _tag: "Gap"; readonly from: number; readonly to: number }
  | { readonly _tag: "Unknown" }

const unknown: Item = { _tag: "Unknown" }

/** Reads an event: `frameTextOf` for a frame; `close` without a readable body ends with 1006. */
export const itemOf = (event: Event): Item => {
  const data = event.data
  if (data.startsWith(version)) return { _tag: "Frame", text: frameTextOf(data) }
  switch (event.type) {
    case StreamEvent.connected:
      return { _tag: "Connected", connection: data }
    case StreamEvent.reset:
      return { _tag: "Reset" }
    case StreamEvent.close:
      return { _tag: "Close", ended: endedOf(data) ?? { code: 1006, reason: "" } }
    case StreamEvent.gap: {
      const gap = gapOf(data)
      return gap === undefined ? unknown : { _tag: "Gap", ...gap }
    }
    default:
      return unknown
  }
}

const gapOf = (data: string): { readonly from: number; readonly to: number } | undefined => {
  try {
    const { from, to } = JSON.parse(data) as { readonly from?: unknown; readonly to?: unknown }
    return typeof from === "number" && typeof to === "number" ? { from, to } : undefined
  } catch {
    return undefined
  }
}
