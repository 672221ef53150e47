/**
 * The client's half of the contract of declared errors. A processor may
 * declare its errors with an `error` Schema (`Processor.make`); the two halves
 * of that contract, which must change together:
 *
 * - the server (`declared` in internal/server/answer.ts) answers a declared
 *   error with an error frame whose reason is the error's `_tag`, whose body
 *   is the error encoded with the Schema, as JSON, and whose status is the
 *   error's own `status` field when that is an error status (else 400);
 * - the client (here) takes an error frame answering `call` for a declared
 *   error when its reason is one of the tags the Schema declares (read from
 *   its encoded side: tagged structs, in unions), and decodes its JSON body
 *   with the same Schema. Any other error frame is the server's own (`404`,
 *   `429`, `500`, …): `Rejected`. When the Schema's tags cannot be read, a body
 *   that decodes to an error of the frame's reason is taken as declared.
 */
import { Result, Schema, SchemaAST } from "effect"
import type * as Message from "../../Message.ts"

/** What an error frame answering a `call` is. */
type Verdict<Err> =
  /** A declared error, decoded. */
  | { readonly _tag: "Declared"; readonly error: Err }
  /** An error frame of the server's own. */
  | { readonly _tag: "Rejected" }
  /** A declared reason whose body does not decode. */
  | { readonly _tag: "InvalidReply"; readonly message: string }

const rejected = { _tag: "Rejected" } as const

/**
 * The tags of the errors a Schema declares (its encoded side: tagged structs,
 * in unions), or undefined when it cannot tell.
 */
const tagsOf = (ast: SchemaAST.AST, depth: number): Array<string> | undefined => {
  if (depth > 32) return undefined
  if (SchemaAST.isUnion(ast)) {
    const tags: Array<string> = []
    for (const member of ast.types) {
      const found = tagsOf(member, depth + 1)
      if (found === undefined) return undefined
      tags.push(...found)
    }
    return tags
  }
  if (SchemaAST.isObjects(ast)) {
    const tag = ast.propertySignatures.find((property) => property.name === "_tag")
    return tag !== undefined && SchemaAST.isLiteral(tag.type) && typeof tag.type.literal === "string"
      ? [tag.type.literal]
      : undefined
  }
  if (SchemaAST.isSuspend(ast)) return tagsOf(ast.thunk(), depth + 1)
  return undefined
}

// the tags of each Schema, read once (null: they cannot be read)
const declaredTags = new WeakMap<object, ReadonlySet<string> | null>()

const tagsDeclared = (schema: Schema.Codec<unknown, unknown>): ReadonlySet<string> | undefined => {
  let tags = declaredTags.get(schema)
  if (tags === undefined) {
    const found = tagsOf(SchemaAST.toEncoded(schema.ast), 0)
    declaredTags.set(schema, tags = found === undefined ? null : new Set(found))
  }
  return tags ?? undefined
}

/**
 * What an error frame answering a `call` of `command` carries, read with the
 * processor's `error` Schema (none: every error frame is `Rejected`).
 */
export const decode = <Err>(
  command: string,
  schema: Schema.Codec<Err, unknown> | undefined,
  failure: Message.Failure
): Verdict<Err> => {
  if (schema === undefined) return rejected
  const tags = tagsDeclared(schema as Schema.Codec<unknown, unknown>)
  if (tags !== undefined && !tags.has(failure.reason)) return rejected
  let json: unknown
  try {
    json = JSON.parse(failure.message)
  } catch {
    return tags === undefined
      ? rejected
      : { _tag: "InvalidReply", message: `the error ${failure.reason} answering ${command} is not JSON` }
  }
  if (
    tags === undefined &&
    (typeof json !== "object" || json === null || (json as { _tag?: unknown })._tag !== failure.reason)
  ) {
    return rejected
  }
  const decoded = Schema.decodeUnknownResult(schema)(json)
  if (Result.isSuccess(decoded)) return { _tag: "Declared", error: decoded.success }
  return tags === undefined ? rejected : {
    _tag: "InvalidReply",
    message: `the error ${failure.reason} answering ${command} does not decode: ${decoded.failure.message}`
  }
}
