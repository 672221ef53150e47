/**
 * Bearer tokens of the backends' endpoints (`/publish`, `/metrics`, `/api`),
 * compared in constant time.
 */
import { Redacted } from "effect"
import { Buffer } from "node:buffer"
import { timingSafeEqual } from "node:crypto"

/** Whether an `authorization` header carries the token (the scheme is case-insensitive, RFC 7235 §2.1). */
export const tokenMatches = (header: string | undefined, token: Redacted.Redacted<string>): boolean => {
  if (header === undefined || header.length < 7 || header.slice(0, 7).toLowerCase() !== "bearer ") return false
  const given = Buffer.from(header.slice(7))
  const expected = Buffer.from(Redacted.value(token))
  return given.length === expected.length && timingSafeEqual(given, expected)
}
