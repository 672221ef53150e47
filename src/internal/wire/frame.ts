/**
 * Frames for the clients as plain functions: read with the grammar (no limit
 * on the headers: the server keeps those) and written as `Frame.render`
 * writes them (`grammar.checkFrame` says beforehand whether one reads back).
 * No Effect, no exceptions: problems come back as values. The browser SDK's
 * `decode` and `encode` are these.
 */
import type { Frame } from "./frameModel.ts"
import { parseFrame, type Problem } from "./grammar.ts"
import { startLine } from "./protocol.ts"

/** Reads one frame, or gives the first problem found. */
export const parse = (text: string): Frame | Problem => parseFrame(text, Number.POSITIVE_INFINITY)

/** `LHTTP/1.0 <command>` CRLF, `name:value` CRLF per header in order, CRLF, the body: unchecked. */
export const render = (frame: Frame): string => {
  let out = startLine + frame.command + "\r\n"
  for (const [name, value] of frame.headers) out += name + ":" + value + "\r\n"
  return out + "\r\n" + frame.body
}
