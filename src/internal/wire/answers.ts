/**
 * Which request a frame from the server answers, the rule both clients
 * follow: the frame's `id`, unless the frame carries `publish`. A delivery of
 * a published message is the publisher's text, `id` included: the publisher,
 * subscribed to its own channel, gets it with its own `id` before the
 * answer (docs/protocol.md §4.4), and no subscriber takes another's `id` for
 * an answer of its own.
 */
import { Header } from "./protocol.ts"

/** What the rule reads of a frame. */
interface Received {
  readonly headers: ReadonlyMap<string, string>
}

/** The `id` of the request a frame answers; undefined when it answers none. */
export const answeredId = (frame: Received): string | undefined =>
  frame.headers.has(Header.publish) ? undefined : frame.headers.get(Header.id)
