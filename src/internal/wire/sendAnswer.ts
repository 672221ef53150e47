/**
 * What a client does with the answer to a `POST /send` (the HTTP transports'
 * way up, docs/transports.md), decided once for both clients
 * (docs/clients.md, "Rules both clients follow"):
 *
 * - `2xx`: the server took the frame;
 * - `404` / `410`: the connection is gone (`410` says how it ended): the frame
 *   was not taken, and the client needs a new connection;
 * - `413`: the frame is over the server's limit; another `4xx`: refused, its
 *   body saying `Reason: message`; the connection stays;
 * - `429`: the server is behind on the connection: the same frame again after
 *   `retry-after` seconds (default 1, at most 30), before any other;
 * - `5xx`: the same frame again after the reconnect backoff, at most 3 times,
 *   then the send fails with the status;
 * - no answer (the request failed): not known to be taken: the same frame
 *   again after the backoff, for as long as the connection lasts.
 */
import { type Ended, endedOf } from "./eventStream.ts"

/** How many times a frame answered `5xx` is sent again before its send fails. */
export const maxServerErrorRetries = 3

/** The longest `retry-after` honoured, in ms. */
const maxRetryAfter = 30_000

/** What to do after an answer. */
type Verdict =
  | { readonly _tag: "Taken" }
  | { readonly _tag: "Wait"; readonly delay: number }
  | { readonly _tag: "Gone"; readonly status: number; readonly ended: Ended | undefined }
  | { readonly _tag: "TooLarge"; readonly status: number; readonly message: string }
  | { readonly _tag: "Refused"; readonly status: number; readonly reason: string | undefined; readonly message: string }
  | { readonly _tag: "Failed"; readonly status: number; readonly message: string }

const taken: Verdict = { _tag: "Taken" }

/** A `retry-after` in ms: seconds, at most `maxRetryAfter`; 1 s when missing or not a number of seconds. */
export const retryAfter = (header: string | null | undefined): number => {
  const seconds = header === null || header === undefined || header.trim() === "" ? Number.NaN : Number(header)
  return Number.isFinite(seconds) && seconds >= 0 ? Math.min(seconds * 1000, maxRetryAfter) : 1000
}

/** `Reason: message` (how the server words a refusal, as its error frame would), else the whole text. */
export const refusalOf = (body: string): { readonly reason: string | undefined; readonly message: string } => {
  const text = body.trim()
  const colon = text.indexOf(": ")
  return colon > 0 && /^[A-Za-z]+$/.test(text.slice(0, colon))
    ? { reason: text.slice(0, colon), message: text.slice(colon + 2) }
    : { reason: undefined, message: text }
}

/**
 * The attempts to hand one frame over: make one per frame, and ask it after
 * each answer (`answered`) or failed request (`unanswered`).
 */
export class Attempts {
  readonly #backoff: (attempt: number) => number
  #failures = 0
  #serverErrors = 0
  /** `backoff(n)`: the wait after the nth failure in a row, in ms (the client's reconnect backoff). */
  constructor(backoff: (attempt: number) => number) {
    this.#backoff = backoff
  }

  /** What an answer means for the frame. */
  answered(status: number, retryAfterHeader: string | null | undefined, body: string): Verdict {
    if (status >= 200 && status < 300) return taken
    if (status === 404 || status === 410) {
      return { _tag: "Gone", status, ended: status === 410 ? endedOf(body) : undefined }
    }
    if (status === 429) return { _tag: "Wait", delay: retryAfter(retryAfterHeader) }
    if (status >= 500) {
      if (this.#serverErrors++ < maxServerErrorRetries) return { _tag: "Wait", delay: this.#backoff(this.#failures++) }
      return { _tag: "Failed", status, message: body.trim() }
    }
    if (status === 413) return { _tag: "TooLarge", status, message: body.trim() }
    return { _tag: "Refused", status, ...refusalOf(body) }
  }

  /** The request failed (no answer): the wait before the frame is sent again. */
  unanswered(): number {
    return this.#backoff(this.#failures++)
  }
}
