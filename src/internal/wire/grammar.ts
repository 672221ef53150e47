/**
 * The LHTTP/1.0 grammar as plain functions over strings, shared by the frame
 * parser and the multipart parser. No Effect, no exceptions, one pass over
 * the start line and the headers, and no allocation beyond the slices kept:
 * problems come back as values.
 */
import type { Frame } from "./frameModel.ts"
import { startLine, version } from "./protocol.ts"

/** The reasons of the grammar's problems: those of `ProtocolError.Reason` that the grammar finds. */
type Reason = "NotLhttp" | "UnsupportedVersion" | "MalformedStartLine" | "MalformedHeader" | "TooManyHeaders"

/** A grammar violation: the reason of the ProtocolError it becomes, and a human message. */
export class Problem {
  readonly reason: Reason
  readonly message: string
  constructor(reason: Reason, message: string) {
    this.reason = reason
    this.message = message
  }
}

const CR = 13
const LF = 10
const COLON = 58
// where the command starts: just after the version and its space
const commandStart = startLine.length

const strayLineBreak = (where: string) =>
  new Problem(
    where === "start line" ? "MalformedStartLine" : "MalformedHeader",
    `the ${where} holds a lone CR or LF: lines end with CRLF`
  )

const startLineProblem = (input: string): Problem => {
  if (!input.startsWith("LHTTP/")) {
    return new Problem("NotLhttp", `a frame starts with "${version} <command>"`)
  }
  if (!input.startsWith(version)) {
    return new Problem("UnsupportedVersion", `only ${version} is supported`)
  }
  return new Problem("MalformedStartLine", `a single space must follow "${version}"`)
}

/**
 * Finds the end of the line that starts at `start`: the index of its CRLF, or
 * `limit`. Returns -1 when a CR or LF stands alone before that.
 */
const lineEnd = (input: string, start: number, limit: number): number => {
  for (let i = start; i < limit; i++) {
    const c = input.charCodeAt(i)
    if (c === CR) return input.charCodeAt(i + 1) === LF ? i : -1
    if (c === LF) return -1
  }
  return limit
}

/**
 * Reads the header line `input[start, end)` (free of line breaks) into
 * `headers`. Returns a problem when the line has no `:` or an empty name, or
 * when it would add a header past `maxHeaders`.
 */
const readHeader = (
  input: string,
  start: number,
  end: number,
  headers: Map<string, string>,
  maxHeaders: number
): Problem | undefined => {
  let colon = start
  while (colon < end && input.charCodeAt(colon) !== COLON) colon++
  if (colon === end) return new Problem("MalformedHeader", "a header line is \"name:value\" and this one has no \":\"")
  if (colon === start) return new Problem("MalformedHeader", "a header name is empty")
  const name = input.slice(start, colon)
  if (headers.size >= maxHeaders && !headers.has(name)) {
    return new Problem("TooManyHeaders", `a frame carries at most ${maxHeaders} headers`)
  }
  headers.set(name, input.slice(colon + 1, end))
  return undefined
}

/**
 * Reads header lines from `start` up to `limit` (each ended by CRLF, the last
 * one by CRLF or `limit`). Stops at an empty line and returns the index just
 * after it, or `limit` when the lines run out.
 */
export const readHeaders = (
  input: string,
  start: number,
  limit: number,
  headers: Map<string, string>,
  maxHeaders: number
): number | Problem => {
  let pos = start
  while (pos < limit) {
    const end = lineEnd(input, pos, limit)
    if (end === -1) return strayLineBreak("header section")
    if (end === pos) return pos + 2
    const problem = readHeader(input, pos, end, headers, maxHeaders)
    if (problem !== undefined) return problem
    pos = end + 2
  }
  return limit
}

/** Parses one frame, or returns the first problem found. */
export const parseFrame = (input: string, maxHeaders: number): Frame | Problem => {
  if (!input.startsWith(startLine)) return startLineProblem(input)
  const length = input.length
  const eol = lineEnd(input, commandStart, length)
  if (eol === -1) return strayLineBreak("start line")
  const command = input.slice(commandStart, eol)
  const headers = new Map<string, string>()
  if (eol >= length - 2) return { command, headers, body: "" }
  const bodyStart = readHeaders(input, eol + 2, length, headers, maxHeaders)
  if (typeof bodyStart !== "number") return bodyStart
  return { command, headers, body: bodyStart >= length ? "" : input.slice(bodyStart) }
}

/**
 * Whether `text`, the text `frame` was parsed from, is exactly what rendering
 * the frame writes: then the text itself can go out as its rendering (the
 * server's plain publishes skip a render and an encode of a rope). The parts
 * of a parsed frame are the text's own, in order, so with the blank line
 * before the body only a repeated header name (the Map keeps one) makes them
 * differ, and it shortens the rendering.
 */
export const rendersAs = (frame: Frame, text: string): boolean => {
  let length = startLine.length + frame.command.length + 4 + frame.body.length
  for (const [name, value] of frame.headers) length += name.length + value.length + 3
  return length === text.length && text.startsWith("\r\n\r\n", length - frame.body.length - 4)
}

const hasLineBreak = (text: string): boolean => text.indexOf("\r") !== -1 || text.indexOf("\n") !== -1

/** Finds what would stop a frame from rendering and parsing back unchanged. */
export const checkFrame = (frame: Frame): Problem | undefined => {
  if (hasLineBreak(frame.command)) return new Problem("MalformedStartLine", "a command cannot hold a CR or LF")
  for (const [name, value] of frame.headers) {
    const problem = checkHeader(name, value)
    if (problem !== undefined) return problem
  }
  return undefined
}

/** Finds what would stop one header from rendering and parsing back unchanged. */
export const checkHeader = (name: string, value: string): Problem | undefined => {
  if (name.length === 0) return new Problem("MalformedHeader", "a header name cannot be empty")
  if (name.indexOf(":") !== -1 || hasLineBreak(name)) {
    return new Problem("MalformedHeader", "a header name cannot hold \":\", CR or LF")
  }
  if (hasLineBreak(value)) return new Problem("MalformedHeader", "a header value cannot hold CR or LF")
  return undefined
}
