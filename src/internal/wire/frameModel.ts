/**
 * The shape of a frame as plain types: what the grammar reads and what error
 * frames are built as. A leaf, like the rest of `wire/`: `Frame.Frame` is the
 * same shape as a Schema's type, and the modules below `Frame` (the grammar,
 * `ErrorFrame`, `ProtocolError`) read it from here, so that none of them
 * imports `Frame`.
 */

/** Header names and values, in insertion order. */
type Headers = ReadonlyMap<string, string>

/** A frame: a command, ordered headers and a body. */
export interface Frame {
  readonly command: string
  readonly headers: Headers
  readonly body: string
}
