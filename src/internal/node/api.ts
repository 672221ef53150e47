/**
 * The server API's HTTP face: `POST /api/<operation>` with a JSON object
 * body and `authorization: Bearer <key>`, answered with JSON: the
 * operation's answer (200), or `{"reason", "message"}` with its status. Off
 * without a key (403 `ApiDisabled`, from any address: no loopback exception);
 * a missing or wrong key is 401 `Unauthorized`; bodies are bounded (413
 * `TooLarge`), calls rate-limited on the node (429 `RateLimited`, with
 * `Retry-After`); a body that is not a JSON object is 400 `InvalidJson`.
 */
import type { Redacted } from "effect"
import { ByteSize, Effect, Result } from "effect"
import { type HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
import type { ServerApi } from "../../ServerApi.ts"
import { statusOf } from "../../ServerApi.ts"
import { Bucket, type Rate } from "../server/rate.ts"
import { tokenMatches } from "./token.ts"

/** Options of the HTTP face. */
export interface Options {
  /** The bearer key; without one the API is off. */
  readonly key: Redacted.Redacted<string> | undefined
  /** The most bytes of a request's body (default 1 MiB). */
  readonly maxBodyBytes?: number | undefined
  /** Calls a second on this node (default 100 a second, 200 at once). */
  readonly rate?: Rate | undefined
}

/** The defaults of the HTTP face. */
export const defaults = { maxBodyBytes: 1024 * 1024, rate: { perSecond: 100, burst: 200 } } as const

const json = (status: number, body: unknown, headers?: Record<string, string>) =>
  HttpServerResponse.jsonUnsafe(body, { status, ...(headers === undefined ? {} : { headers }) })

const refusal = (status: number, reason: string, message: string, headers?: Record<string, string>) =>
  json(status, { reason, message }, headers)

/** Adds the API's route to a router, over the server API. */
export const add = (router: HttpRouter.HttpRouter, api: ServerApi["Service"], options: Options) =>
  Effect.gen(function*() {
    const key = options.key
    const maxBodyBytes = options.maxBodyBytes ?? defaults.maxBodyBytes
    const bucket = new Bucket(options.rate ?? defaults.rate)
    const tooLarge = refusal(413, "TooLarge", `a request's body is at most ${maxBodyBytes} bytes`)

    const handle = (request: HttpServerRequest.HttpServerRequest) =>
      Effect.gen(function*() {
        if (key === undefined) {
          return refusal(403, "ApiDisabled", "the server API is off: the server has no API key (LHTTP_API_KEY)")
        }
        if (!tokenMatches(request.headers["authorization"], key)) {
          return refusal(401, "Unauthorized", "a bearer API key is required", { "www-authenticate": "Bearer" })
        }
        if (request.method !== "POST") {
          return refusal(405, "MethodNotAllowed", "POST a JSON object", { allow: "POST" })
        }
        if (!bucket.take()) {
          return refusal(429, "RateLimited", "too many API calls on this node: try again later", { "retry-after": "1" })
        }
        if (Number(request.headers["content-length"] ?? 0) > maxBodyBytes) return tooLarge
        const text = yield* request.text.pipe(
          Effect.provideService(HttpServerRequest.MaxBodySize, ByteSize.bytes(maxBodyBytes)),
          Effect.result
        )
        if (Result.isFailure(text)) return tooLarge
        let body: unknown
        try {
          body = text.success === "" ? {} : JSON.parse(text.success)
        } catch {
          return refusal(400, "InvalidJson", "the body is not JSON")
        }
        if (typeof body !== "object" || body === null || Array.isArray(body)) {
          return refusal(400, "InvalidJson", "the body is not a JSON object")
        }
        const operation = request.url.split("?")[0]!.slice("/api/".length)
        return yield* api.call(operation, body).pipe(
          Effect.map((answer) => json(200, answer)),
          Effect.catch((error) =>
            Effect.succeed(
              refusal(
                statusOf(error),
                error.reason,
                error.message,
                statusOf(error) === 503 ? { "retry-after": "1" } : undefined
              )
            )
          )
        )
      })

    yield* router.add("*", "/api/*", handle)
  })
