/**
 * JWT connection and subscription tokens, verified with `jose`: the server's
 * `tokens` option (see `LhttpServer`). A connection token names the user
 * (`sub`), may expire (`exp`, refreshed over the connection before it
 * passes), may subscribe the connection to `channels` and give presence its
 * `info`; a subscription token (`sub` the connection's user, `channel` the
 * channel) admits a subscription to a channel under a private prefix.
 * Secrets take HS256/384/512; a public key (PEM) or a JWKS URL (cached, with
 * a cooldown between fetches) take RS, PS, ES and EdDSA. The rules on the
 * wire are in docs/tokens.md.
 *
 * @since 0.1.0
 */
import { Data, Duration, Effect, Redacted, Result } from "effect"
import * as Jose from "jose"
import * as Channel from "./Channel.ts"
import { Rejection } from "./Rejection.ts"

/**
 * Where tokens come from and what they must say. At least one of `secret`,
 * `publicKey` and `jwksUrl`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The HMAC secret (HS256, HS384, HS512): at least 32 bytes. */
  readonly secret?: Redacted.Redacted<string> | string | undefined
  /** A public key, PEM (SPKI): RS256/384/512, PS256/384/512, ES256/384/512 or EdDSA, as the key's type allows. */
  readonly publicKey?: string | undefined
  /** A JWKS URL (RS, PS, ES, EdDSA keys), fetched when a token names a key not yet known. */
  readonly jwksUrl?: string | URL | undefined
  /** The least time between two fetches of the JWKS (default 30 s): unknown `kid`s cannot make it fetch more. */
  readonly jwksCooldown?: Duration.Input | undefined
  /** How long a fetched JWKS is kept (default 10 minutes). */
  readonly jwksMaxAge?: Duration.Input | undefined
  /** How long a fetch of the JWKS may take (default 5 s). */
  readonly jwksTimeout?: Duration.Input | undefined
  /** The `aud` a token must name, when set. */
  readonly audience?: string | undefined
  /** The `iss` a token must carry, when set. */
  readonly issuer?: string | undefined
  /** Leeway for `exp` and `nbf` against clock skew (default 0). */
  readonly clockTolerance?: Duration.Input | undefined
  /**
   * Channel prefixes whose subscriptions need a subscription token
   * (`token` header on the subscribe; default none).
   */
  readonly privatePrefixes?: ReadonlyArray<string> | undefined
  /**
   * How long before a connection token's `exp` the server asks for a fresh
   * one with a `refresh` frame (default 60 s, at most half of the token's
   * lifetime when it was given).
   */
  readonly refreshBefore?: Duration.Input | undefined
  /**
   * Whether every connection needs a token (default true): one without a
   * token in its request must send one as its first message (`token`
   * command). False lets connections without a token in, with no user.
   */
  readonly required?: boolean | undefined
}

/**
 * What a verified token says.
 *
 * @since 0.1.0
 * @category models
 */
export interface Claims {
  /** The user (`sub`). */
  readonly user: string
  /** When the token expires, in ms since the epoch (`exp`); undefined: never. */
  readonly expires: number | undefined
  /** The channels a connection token subscribes its connection to (`channels`). */
  readonly channels: ReadonlyArray<Channel.ChannelId>
  /** What presence shows of the connection (`info`). */
  readonly info: unknown
  /** The channel a subscription token is for (`channel`). */
  readonly channel: string | undefined
}

/**
 * Why a token was refused. `KeysUnavailable` (the JWKS could not be
 * fetched) is the server's trouble, not the token's: 503; the others 401.
 *
 * @since 0.1.0
 * @category errors
 */
export type Reason =
  | "TokenMissing"
  | "TokenMalformed"
  | "TokenExpired"
  | "TokenNotYetValid"
  | "TokenSignatureInvalid"
  | "TokenAlgorithmRefused"
  | "TokenClaimsInvalid"
  | "TokenKeysUnavailable"

/**
 * Tokens that cannot be verified as configured (no key, a short secret, a
 * bad PEM or URL).
 *
 * @since 0.1.0
 * @category errors
 */
export class TokensConfigError extends Data.TaggedError("TokensConfigError")<{
  readonly reason: "NoKey" | "ShortSecret" | "BadPublicKey" | "BadJwksUrl" | "BothKeys"
  readonly message: string
}> {}

/**
 * The refusal of a token: an error frame or an HTTP answer, with its reason.
 *
 * @since 0.1.0
 * @category constructors
 */
export const refusal = (reason: Reason, message: string): Rejection =>
  new Rejection({ status: reason === "TokenKeysUnavailable" ? 503 : 401, reason, message })

/**
 * A verifier of tokens, with the settings the server applies them with.
 *
 * @since 0.1.0
 * @category models
 */
export interface Tokens {
  /** Verifies a token: its claims, or the refusal to answer. */
  readonly verify: (token: string) => Effect.Effect<Claims, Rejection>
  /** The private channel prefixes. */
  readonly privatePrefixes: ReadonlyArray<string>
  /** Whether a channel needs a subscription token. */
  readonly isPrivate: (channel: string) => boolean
  /** How long (ms) before `exp` the refresh frame goes. */
  readonly refreshBefore: number
  /** Whether every connection needs a token. */
  readonly required: boolean
}

const hmac: ReadonlyArray<string> = ["HS256", "HS384", "HS512"]
const asymmetric: ReadonlyArray<string> = [
  "RS256",
  "RS384",
  "RS512",
  "PS256",
  "PS384",
  "PS512",
  "ES256",
  "ES384",
  "ES512",
  "EdDSA",
  "Ed25519"
]

/** The fewest bytes of an HMAC secret (RFC 7518 §3.2: a key as long as the hash; 32 for HS256). */
export const minSecretBytes = 32

const millis = (input: Duration.Input | undefined, fallback: number): number =>
  input === undefined ? fallback : Duration.toMillis(Duration.fromInputUnsafe(input))

/**
 * Makes a verifier of tokens: fails when nothing could verify one (no key),
 * or a key is unusable.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options): Effect.Effect<Tokens, TokensConfigError> =>
  Effect.gen(function*() {
    const secret = options.secret === undefined
      ? undefined
      : new TextEncoder().encode(Redacted.isRedacted(options.secret) ? Redacted.value(options.secret) : options.secret)
    if (secret !== undefined && secret.length < minSecretBytes) {
      return yield* new TokensConfigError({
        reason: "ShortSecret",
        message: `a token secret is at least ${minSecretBytes} bytes`
      })
    }
    if (options.publicKey !== undefined && options.jwksUrl !== undefined) {
      return yield* new TokensConfigError({ reason: "BothKeys", message: "a public key or a JWKS URL, not both" })
    }
    const publicKey = options.publicKey
    if (publicKey !== undefined && !publicKey.includes("-----BEGIN PUBLIC KEY-----")) {
      return yield* new TokensConfigError({ reason: "BadPublicKey", message: "the public key is a PEM (SPKI)" })
    }
    let jwks: ReturnType<typeof Jose.createRemoteJWKSet> | undefined
    if (options.jwksUrl !== undefined) {
      const url = yield* Effect.try({
        try: () => new URL(options.jwksUrl!),
        catch: () => new TokensConfigError({ reason: "BadJwksUrl", message: "the JWKS URL is not a URL" })
      })
      if (url.protocol !== "https:" && url.protocol !== "http:") {
        return yield* new TokensConfigError({ reason: "BadJwksUrl", message: "the JWKS URL is http or https" })
      }
      jwks = Jose.createRemoteJWKSet(url, {
        cooldownDuration: millis(options.jwksCooldown, 30_000),
        cacheMaxAge: millis(options.jwksMaxAge, 600_000),
        timeoutDuration: millis(options.jwksTimeout, 5_000)
      })
    }
    if (secret === undefined && publicKey === undefined && jwks === undefined) {
      return yield* new TokensConfigError({
        reason: "NoKey",
        message: "tokens need a secret, a public key or a JWKS URL"
      })
    }
    const algorithms = secret === undefined ? [] : [...hmac]
    if (publicKey !== undefined || jwks !== undefined) algorithms.push(...asymmetric)
    // the public key imported for each algorithm a token names (lazily: the PEM does not say its algorithm)
    const imported = new Map<string, Promise<Jose.CryptoKey>>()
    const keyFor = (header: Jose.JWSHeaderParameters, token: Jose.FlattenedJWSInput) => {
      const alg = header.alg ?? ""
      // each algorithm family reads only its own key: an HMAC token is never checked against a public key
      if (hmac.includes(alg)) {
        if (secret === undefined) {
          throw new Jose.errors.JOSEAlgNotAllowed(`"alg" (Algorithm) Header Parameter value not allowed`)
        }
        return secret
      }
      // a JWKS that cannot be fetched is the server's trouble; a key that does not take the algorithm, the token's
      if (jwks !== undefined) {
        return jwks(header, token).catch((error: unknown) => {
          throw error instanceof Jose.errors.JOSEError ? error : new KeysUnreachable()
        })
      }
      let key = imported.get(alg)
      if (key === undefined) {
        imported.set(
          alg,
          key = Jose.importSPKI(publicKey!, alg).catch(() => {
            throw new Jose.errors.JOSEAlgNotAllowed(`the key does not take ${alg}`)
          })
        )
      }
      return key
    }
    const verifyOptions: Jose.JWTVerifyOptions = {
      algorithms,
      requiredClaims: ["sub"],
      clockTolerance: Math.round(millis(options.clockTolerance, 0) / 1000),
      ...(options.audience === undefined ? {} : { audience: options.audience }),
      ...(options.issuer === undefined ? {} : { issuer: options.issuer })
    }
    const verify = (token: string): Effect.Effect<Claims, Rejection> =>
      token === ""
        ? Effect.fail(refusal("TokenMissing", "a token is required"))
        : Effect.tryPromise({
          try: () => Jose.jwtVerify(token, keyFor, verifyOptions),
          catch: refusalOf
        }).pipe(Effect.flatMap(({ payload }) => claimsOf(payload)))
    const prefixes = options.privatePrefixes ?? []
    return {
      verify,
      privatePrefixes: prefixes,
      isPrivate: (channel) => prefixes.some((prefix) => channel.startsWith(prefix)),
      refreshBefore: millis(options.refreshBefore, 60_000),
      required: options.required ?? true
    } satisfies Tokens
  })

// a JWKS that could not be fetched (its fetch failed: the host down, refused, unreachable)
class KeysUnreachable extends Error {}

// what jose's error says, as a refusal (never its text when it could echo the token)
const refusalOf = (error: unknown): Rejection => {
  if (error instanceof Jose.errors.JWTExpired) return refusal("TokenExpired", "the token has expired")
  if (error instanceof Jose.errors.JWTClaimValidationFailed) {
    return error.claim === "nbf"
      ? refusal("TokenNotYetValid", "the token is not valid yet")
      : refusal("TokenClaimsInvalid", `the token's ${JSON.stringify(error.claim)} claim is refused`)
  }
  if (error instanceof Jose.errors.JOSEAlgNotAllowed || error instanceof Jose.errors.JOSENotSupported) {
    return refusal("TokenAlgorithmRefused", "the token's algorithm is refused")
  }
  if (error instanceof Jose.errors.JWSSignatureVerificationFailed || error instanceof Jose.errors.JWKSNoMatchingKey) {
    return refusal("TokenSignatureInvalid", "the token's signature does not verify")
  }
  if (error instanceof Jose.errors.JWKSMultipleMatchingKeys) {
    return refusal("TokenSignatureInvalid", "the token's key is ambiguous")
  }
  if (
    error instanceof KeysUnreachable || error instanceof Jose.errors.JWKSTimeout ||
    error instanceof Jose.errors.JWKSInvalid
  ) {
    return refusal("TokenKeysUnavailable", "the keys to verify tokens could not be fetched")
  }
  // JWSInvalid, JWTInvalid, and anything else a token that is no signed JWT makes jose say
  return refusal("TokenMalformed", "the token is not a signed JWT")
}

// the claims the server reads, checked
const claimsOf = (payload: Jose.JWTPayload): Effect.Effect<Claims, Rejection> => {
  const { channel, channels, exp, info, sub } = payload as Jose.JWTPayload & {
    readonly channels?: unknown
    readonly channel?: unknown
    readonly info?: unknown
  }
  if (typeof sub !== "string" || sub === "" || sub.length > 256) {
    return Effect.fail(refusal("TokenClaimsInvalid", "the token's \"sub\" is a user id of 1 to 256 characters"))
  }
  if (channel !== undefined && typeof channel !== "string") {
    return Effect.fail(refusal("TokenClaimsInvalid", "the token's \"channel\" is a channel"))
  }
  const subscribed: Array<Channel.ChannelId> = []
  if (channels !== undefined) {
    if (!Array.isArray(channels)) {
      return Effect.fail(refusal("TokenClaimsInvalid", "the token's \"channels\" is a list of channels"))
    }
    for (const name of channels) {
      const id = typeof name === "string" ? Channel.validate(name) : undefined
      if (id === undefined || Result.isFailure(id)) {
        return Effect.fail(refusal("TokenClaimsInvalid", "the token's \"channels\" names a channel that is not one"))
      }
      subscribed.push(id.success)
    }
  }
  return Effect.succeed({
    user: sub,
    expires: typeof exp === "number" ? exp * 1000 : undefined,
    channels: subscribed,
    info,
    channel
  })
}
