/**
 * The connections of the HTTP transports: a Server-Sent Events stream, or
 * long-polls, with `POST /send` for what the peer sends. A session is one
 * connection of the core (a `Transport`) that outlives the HTTP requests
 * carrying it: each frame written gets the next sequence number and is kept
 * in a bounded buffer, so that a stream that reconnects (`Last-Event-ID`) or
 * the next poll (its cursor) gets what it has not had yet.
 *
 * Platform-neutral: the requests and responses are the caller's (see
 * `internal/httpTransports.ts` for Node).
 */
import type { Inbound, Outbound, Peer, Transport } from "../Transport.ts"

/** Which HTTP transport a session serves. */
export type Kind = "sse" | "poll"

/** Where an SSE session writes its events: a streaming response. */
export interface Sink {
  readonly write: (chunk: string) => void
  readonly end: () => void
  /** Bytes written to the response and not yet taken by the peer. */
  readonly bufferedBytes: () => number
}

/** How a poll is answered: a status and a JSON body. */
export type Reply = (status: number, body: string) => void

/** How a session ended. */
export interface Ended {
  readonly code: number
  readonly reason: string
}

/** An unguessable session key: 128 random bits, base64url. */
export const makeKey = (): string => {
  const bytes = crypto.getRandomValues(new Uint8Array(16))
  let binary = ""
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]!)
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")
}

/** The command of a frame's text: its start line after `LHTTP/1.0 `. */
const commandOf = (text: string): string => {
  const end = text.indexOf("\r\n")
  return text.slice(10, end === -1 ? text.length : end).replace(/[\r\n]/g, " ")
}

const lineBreak = /\r\n|\r|\n/

// a frame's event without its id, made once per frame and shared by every SSE session it goes to
const events = new WeakMap<Outbound, string>()

/**
 * A frame as the lines of an SSE event after its `id:`: `event:` the
 * command, and one `data:` line per line of the frame (CRLF, CR or LF).
 */
export const eventOf = (frame: Outbound): string => {
  let event = events.get(frame)
  if (event === undefined) {
    event = `event: ${commandOf(frame.text)}\ndata: ${frame.text.split(lineBreak).join("\ndata: ")}\n\n`
    events.set(frame, event)
  }
  return event
}

/** A control event of the SSE stream (`connected`, `gap`, `reset`, `close`). */
export const controlEvent = (name: string, data: string): string => `event: ${name}\ndata: ${data}\n\n`

/** What a poll answers: the frames after the cursor and the next cursor. */
export const pollBody = (key: string, cursor: number, frames: ReadonlyArray<string>): string =>
  `{"connection":${JSON.stringify(key)},"cursor":${cursor},"frames":${JSON.stringify(frames)}}`

/** What a poll of a closed session answers (410). */
export const closedBody = (key: string, ended: Ended): string =>
  JSON.stringify({ connection: key, code: ended.code, reason: ended.reason })

/** Frames with consecutive sequence numbers, the oldest dropped first, in amortised constant time. */
class Kept {
  #frames: Array<Outbound | undefined> = []
  #start = 0
  /** The sequence number of the oldest frame kept (of the next one, when none is). */
  oldest = 1
  /** The bytes of the frames kept. */
  bytes = 0

  get size(): number {
    return this.#frames.length - this.#start
  }

  push(frame: Outbound): void {
    this.#frames.push(frame)
    this.bytes += frame.bytes.length
  }

  /** The frame with sequence number `seq`, which must be kept. */
  at(seq: number): Outbound {
    return this.#frames[this.#start + seq - this.oldest]!
  }

  /** Drops the oldest frame; its size. */
  dropOldest(): number {
    const size = this.#frames[this.#start]!.bytes.length
    this.#frames[this.#start++] = undefined
    this.oldest++
    this.bytes -= size
    if (this.#start >= 1024 && this.#start * 2 >= this.#frames.length) {
      this.#frames = this.#frames.slice(this.#start)
      this.#start = 0
    }
    return size
  }
}

interface Waiter {
  readonly reply: Reply
  readonly timer: ReturnType<typeof setTimeout>
}

/** One connection of an HTTP transport. */
export class Session implements Transport {
  readonly key = makeKey()
  readonly kind: Kind
  readonly peer: Peer
  /** The core's side, set once the server accepted the session. */
  inbound: Inbound | undefined
  /** The last time a request of the peer ended or started (ms): an idle session expires. */
  lastActive = Date.now()
  /** When the session ended (ms), kept a while so that its peer learns how. */
  endedAt = 0
  /** Whether the core asked to stop reading: `POST /send` answers 429 meanwhile. */
  paused = false
  readonly #retain: number
  #seq = 0
  // the frames kept: SSE, written ones for a reconnect and those not written yet; poll, those not acknowledged
  readonly #kept = new Kept()
  // SSE: the last sequence number written to a sink; poll: the last one the peer acknowledged
  #delivered = 0
  #pendingBytes = 0
  #sink: Sink | undefined
  #waiter: Waiter | undefined
  #ended: Ended | undefined

  /**
   * @param retain bytes of written frames an SSE session keeps for a
   * reconnect; a poll session keeps what is not acknowledged, bounded by the
   * outbox
   */
  constructor(kind: Kind, peer: Peer, retain: number) {
    this.kind = kind
    this.peer = peer
    this.#retain = retain
  }

  /** The last sequence number given to a frame. */
  get sequence(): number {
    return this.#seq
  }

  /**
   * The last position of each history channel among the frames kept up to
   * sequence number `upTo` (the last one the peer had), as `<epoch>:<offset>`:
   * what a stream whose connection expired is subscribed again since.
   */
  positionsUpTo(upTo: number): Map<string, string> {
    const positions = new Map<string, string>()
    for (let seq = Math.min(upTo, this.#seq); seq >= this.#kept.oldest; seq--) {
      // the position the hub gave the frame, never one read from its text (which a publisher wrote)
      const found = this.#kept.at(seq).position
      if (found !== undefined && !positions.has(found.channel)) {
        positions.set(found.channel, `${found.epoch}:${found.offset}`)
      }
    }
    return positions
  }

  /** How the session ended, once it has. */
  get ended(): Ended | undefined {
    return this.#ended
  }

  /** Whether a stream or a poll is attached: an attached session does not expire. */
  get attached(): boolean {
    return this.#sink !== undefined || this.#waiter !== undefined
  }

  // ---- Transport ----

  write(frames: ReadonlyArray<Outbound>): void {
    if (this.#ended !== undefined) return
    for (let i = 0; i < frames.length; i++) {
      const frame = frames[i]!
      this.#kept.push(frame)
      this.#seq++
      this.#pendingBytes += frame.bytes.length
    }
    if (this.#sink !== undefined) this.#stream(this.#sink)
    else if (this.#waiter !== undefined) this.#answer()
  }

  bufferedBytes(): number {
    return this.#pendingBytes + (this.#sink === undefined ? 0 : this.#sink.bufferedBytes())
  }

  close(code: number, reason: string): void {
    if (this.#ended !== undefined) return
    this.#ended = { code, reason }
    this.endedAt = Date.now()
    const sink = this.#sink
    if (sink !== undefined) {
      this.#sink = undefined
      sink.write(controlEvent("close", JSON.stringify(this.#ended)))
      sink.end()
    }
    // a waiting poll gets what is left, or the end
    if (this.#waiter !== undefined) this.#answer()
    const inbound = this.inbound
    if (inbound !== undefined) queueMicrotask(() => inbound.closed())
  }

  isOpen(): boolean {
    return this.#ended === undefined
  }

  pause(): void {
    this.paused = true
  }

  resume(): void {
    this.paused = false
  }

  // ---- SSE ----

  /**
   * Attaches a stream after the frames up to `after` (a reconnect's
   * `Last-Event-ID`), ending the one attached before. What the buffer no
   * longer holds is reported as a `gap` event, not hidden.
   */
  attach(sink: Sink, after: number): void {
    const previous = this.#sink
    this.#sink = undefined
    if (previous !== undefined) previous.end()
    this.lastActive = Date.now()
    after = Math.min(after, this.#seq)
    if (after < this.#delivered) {
      // the frames after `after` were written to the previous stream: write them again from the buffer
      const oldest = this.#kept.oldest
      if (oldest > after + 1) sink.write(controlEvent("gap", `{"from":${after + 1},"to":${oldest - 1}}`))
      this.#delivered = Math.max(after, oldest - 1)
      this.#pendingBytes = 0
      for (let seq = this.#delivered + 1; seq <= this.#seq; seq++) this.#pendingBytes += this.#kept.at(seq).bytes.length
    }
    this.#sink = sink
    this.#stream(sink)
  }

  /** The stream went away (the peer left): the session waits for a reconnect until it expires. */
  detach(sink: Sink): void {
    if (this.#sink !== sink) return
    this.#sink = undefined
    this.lastActive = Date.now()
  }

  /** Writes a comment to the attached stream, which keeps proxies from timing it out. */
  heartbeat(): void {
    if (this.#sink !== undefined) this.#sink.write(":\n\n")
  }

  #stream(sink: Sink): void {
    if (this.#delivered === this.#seq) return
    let chunk = ""
    for (let seq = this.#delivered + 1; seq <= this.#seq; seq++) {
      chunk += `id: ${this.key}:${seq}\n${eventOf(this.#kept.at(seq))}`
    }
    this.#delivered = this.#seq
    this.#pendingBytes = 0
    sink.write(chunk)
    // what was written is kept for a reconnect, up to the bound, oldest dropped first
    while (this.#kept.bytes > this.#retain && this.#kept.size > 0) this.#kept.dropOldest()
  }

  // ---- long-poll ----

  /**
   * A poll with the cursor of the last frame the peer has: the frames up to
   * it are acknowledged (dropped); those after it are answered now, or as
   * soon as there are any, or an empty list after `timeout` ms. A poll that
   * comes while another waits answers the earlier one at once.
   */
  poll(cursor: number, reply: Reply, timeout: number): void {
    this.lastActive = Date.now()
    while (this.#kept.size > 0 && this.#kept.oldest <= cursor) this.#pendingBytes -= this.#kept.dropOldest()
    if (cursor > this.#delivered) this.#delivered = cursor
    const previous = this.#waiter
    if (previous !== undefined) {
      this.#waiter = undefined
      clearTimeout(previous.timer)
      previous.reply(200, pollBody(this.key, cursor, []))
    }
    const timer = setTimeout(() => {
      if (this.#waiter?.timer !== timer) return
      this.#waiter = undefined
      this.lastActive = Date.now()
      reply(200, pollBody(this.key, cursor, []))
    }, timeout)
    this.#waiter = { reply, timer }
    if (this.#kept.size > 0 || this.#ended !== undefined) this.#answer()
  }

  /** The waiting poll's request went away. */
  abandon(reply: Reply): void {
    if (this.#waiter?.reply !== reply) return
    clearTimeout(this.#waiter.timer)
    this.#waiter = undefined
    this.lastActive = Date.now()
  }

  #answer(): void {
    const waiter = this.#waiter!
    this.#waiter = undefined
    clearTimeout(waiter.timer)
    this.lastActive = Date.now()
    if (this.#kept.size === 0) {
      // nothing left to give: how the session ended
      waiter.reply(410, closedBody(this.key, this.#ended!))
      return
    }
    const texts: Array<string> = []
    for (let seq = this.#kept.oldest; seq <= this.#seq; seq++) texts.push(this.#kept.at(seq).text)
    waiter.reply(200, pollBody(this.key, this.#seq, texts))
  }

  /** Ends whatever is attached, without a word: the server is gone. */
  detachAll(): void {
    const sink = this.#sink
    this.#sink = undefined
    if (sink !== undefined) sink.end()
    const waiter = this.#waiter
    this.#waiter = undefined
    if (waiter !== undefined) {
      clearTimeout(waiter.timer)
      waiter.reply(503, JSON.stringify({ connection: this.key, reason: "server shutting down" }))
    }
  }
}
