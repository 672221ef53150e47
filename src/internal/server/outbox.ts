/**
 * The per-connection outbox: frames queued during a tick are written together
 * at the end of it (one corked write per connection, one timer for all of
 * them), and the bytes a connection holds, queued or in its transport's
 * buffer, are bounded. A burst that would pass the bound within one tick is
 * written out early, so the bound judges what the peer has not taken: a
 * connection that stops reading hits it and meets the slow-consumer policy
 * instead of growing the server's memory; one that reads does not.
 */
import type { Outbound, Transport } from "../../Transport.ts"
import { CloseCode } from "../wire/protocol.ts"
import type { Stats } from "./stats.ts"

/** What happens to a connection whose outbox is full. */
export type SlowConsumerPolicy = "close" | "drop"

/** Runs a function once, at the next turn of the event loop, after its I/O: setImmediate where there is one. */
export const schedule: (run: () => void) => void = typeof setImmediate === "function"
  ? (run) => setImmediate(run)
  : (run) => setTimeout(run, 0)

/**
 * A close code a peer may receive: 1000-1003, 1007-1014 or 3000-4999 (RFC 6455
 * and the registry); any other becomes 1000, so a wrong code from user code
 * still closes the connection.
 */
export const closeCode = (code: number): number =>
  Number.isInteger(code) && ((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
      (code >= 3000 && code <= 4999))
    ? code
    : CloseCode.normal

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** A close reason cut to the 123 UTF-8 bytes a close frame holds, at a character boundary. */
export const closeReason = (reason: string): string => {
  if (reason.length <= 41) return reason
  const bytes = encoder.encode(reason)
  if (bytes.length <= 123) return reason
  let end = 123
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--
  return decoder.decode(bytes.subarray(0, end))
}

// The outboxes with frames to write this tick, and whether the flush is scheduled. Module state, shared by
// every server of the process on purpose: one timer a tick for all of them, however many servers there are.
const dirty: Array<Outbox> = []
let flushScheduled = false

const flushAll = (): void => {
  flushScheduled = false
  const outboxes = dirty.splice(0, dirty.length)
  for (let i = 0; i < outboxes.length; i++) outboxes[i]!.flush()
}

/** A bounded queue of outbound frames for one connection, flushed once per tick. */
export class Outbox {
  readonly #transport: Transport
  readonly #maxBytes: number
  readonly #policy: SlowConsumerPolicy
  // undefined when empty: most flushes carry one frame, and a one-element array is the least garbage
  // a frame can cost (a GC trace of the latency run: docs/benchmarks.md)
  #queue: Array<Outbound> | undefined = undefined
  #queuedBytes = 0
  #scheduled = false
  #closed = false

  readonly #stats: Stats | undefined

  constructor(transport: Transport, maxBytes: number, policy: SlowConsumerPolicy, stats?: Stats) {
    this.#transport = transport
    this.#maxBytes = maxBytes
    this.#policy = policy
    this.#stats = stats
  }

  /** Queues a frame; returns false when the connection is closed or the frame was refused. */
  offer(frame: Outbound): boolean {
    if (this.#closed) return false
    const size = frame.bytes.length
    if (this.#queuedBytes + size + this.#transport.bufferedBytes() > this.#maxBytes) {
      // what is queued has not had its chance to be written (a burst within one tick): write it now,
      // and judge the connection by what its peer has not taken
      this.flush()
      if (size + this.#transport.bufferedBytes() > this.#maxBytes) {
        if (this.#policy === "drop") return false
        if (this.#stats !== undefined) this.#stats.slowConsumerCloses++
        this.close(CloseCode.slowConsumer, "slow consumer")
        return false
      }
    }
    if (this.#queue === undefined) this.#queue = [frame]
    else this.#queue.push(frame)
    this.#queuedBytes += size
    if (!this.#scheduled) {
      this.#scheduled = true
      dirty.push(this)
      if (!flushScheduled) {
        flushScheduled = true
        schedule(flushAll)
      }
    }
    return true
  }

  /** Writes everything queued now. */
  flush(): void {
    this.#scheduled = false
    const frames = this.#queue
    if (frames === undefined) return
    const bytes = this.#queuedBytes
    this.#queue = undefined
    this.#queuedBytes = 0
    if (!this.#closed && this.#transport.isOpen()) {
      this.#transport.write(frames)
      if (this.#stats !== undefined) {
        this.#stats.framesOut += frames.length
        this.#stats.bytesOut += bytes
      }
    }
  }

  /** Flushes what is queued, then closes the transport; later offers are refused. */
  close(code: number, reason: string): void {
    if (this.#closed) return
    this.flush()
    this.#closed = true
    this.#transport.close(closeCode(code), closeReason(reason))
  }

  get isClosed(): boolean {
    return this.#closed
  }
}
