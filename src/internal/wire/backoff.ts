/**
 * The wait before a reconnect, and before a frame `POST /send` could not
 * hand over is sent again: exponential, capped, with jitter. One rule for
 * both clients (docs/clients.md, "Rules both clients follow").
 */

/** How the waits grow. */
export interface Backoff {
  /** The first wait, in ms. */
  readonly initialDelay: number
  /** The longest wait, in ms. */
  readonly maxDelay: number
  /** The growth of the wait per attempt. */
  readonly factor: number
  /** The share of each wait taken off at random, 0 to 1. */
  readonly jitter: number
}

/** 500 ms, doubling, at most 10 s, up to half of each wait taken off at random. */
export const defaults: Backoff = { initialDelay: 500, maxDelay: 10_000, factor: 2, jitter: 0.5 }

/**
 * The wait before attempt `attempt` (0 for the first), in ms:
 * `min(maxDelay, initialDelay * factor^attempt) * (1 - jitter * random)`.
 */
export const delay = (backoff: Backoff, attempt: number, random: number = Math.random()): number => {
  const jitter = Math.min(1, Math.max(0, backoff.jitter))
  return Math.min(backoff.maxDelay, backoff.initialDelay * backoff.factor ** attempt) * (1 - jitter * random)
}

/** What a close reason that asks for a wait before the reconnect starts with. */
const reconnectPrefix = "reconnect:"

/** The longest wait a close may ask for, in ms (a close that asks for more waits this long). */
export const maxHintedDelay = 60_000

/**
 * The reason of a close that asks the client to reconnect after `ms`
 * (`reconnect:<ms>`): what a draining server tells each connection it closes
 * (with `CloseCode.serviceRestart`).
 */
export const hintReason = (ms: number): string => `${reconnectPrefix}${Math.max(0, Math.round(ms))}`

/**
 * The wait a close asks for before the reconnect, in ms: the `<ms>` of a
 * `reconnect:<ms>` reason (at most {@link maxHintedDelay}); undefined when it
 * asks for none (the client's backoff decides).
 */
export const hintedDelay = (reason: string | undefined): number | undefined => {
  if (reason === undefined || !reason.startsWith(reconnectPrefix)) return undefined
  const text = reason.slice(reconnectPrefix.length)
  if (!/^\d{1,9}$/.test(text)) return undefined
  return Math.min(maxHintedDelay, Number(text))
}

/** The close codes that tell a client not to reconnect: 4500 to 4999 (docs/protocol.md, "Closes"). */
export const terminalCloseCodes = { from: 4500, to: 4999 } as const

/**
 * Whether a close tells the client not to reconnect: its code is from 4500
 * to 4999 (what a backend chooses for a user it disconnects for good: the
 * server API's `disconnect`). Every other close is followed by a reconnect.
 */
export const isTerminalClose = (code: number): boolean =>
  code >= terminalCloseCodes.from && code <= terminalCloseCodes.to
