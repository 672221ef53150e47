/**
 * Upstream: chat messages also go to an HTTP backend that stores them, the
 * original lhttp README's example ("save a chat record without changing the
 * server").
 *
 *   PORT=8081 BACKEND_PORT=8082 node examples/upstream-recorder.ts
 *
 * It runs two things: a plain HTTP backend on BACKEND_PORT that stores every
 * record POSTed to /records and lists them on GET /records, and an
 * effect-lhttp server on PORT whose upstream allowlist is that backend's
 * /records. A client sends, in one message, a publish to the room and an
 * upstream call:
 *
 *   LHTTP/1.0 chat\r\n
 *   publish:room\r\n
 *   upstream:POST http://127.0.0.1:8082/records\r\n
 *   \r\n
 *   hello room
 *
 * The room's subscribers receive the message; the backend stores "hello room"
 * with the connection id and command the server adds (x-lhttp-connection,
 * x-lhttp-command) and checks the HMAC signature (x-lhttp-signature) made
 * with the shared secret. Any other target (another path, port or host) is
 * refused with an `UpstreamNotAllowed` error frame and no request is made.
 *
 *   curl http://127.0.0.1:8082/records
 */
import { Effect, Layer } from "effect"
import { timingSafeEqual } from "node:crypto"
import { createServer } from "node:http"
import { Bus, Hub } from "../src/index.ts"
import * as NodeLhttpServer from "../src/NodeLhttpServer.ts"
import * as NodeUpstream from "../src/NodeUpstream.ts"
import * as Upstream from "../src/Upstream.ts"

const port = Number(process.env.PORT ?? 8081)
const host = process.env.HOST ?? "127.0.0.1"
const backendPort = Number(process.env.BACKEND_PORT ?? port + 1)
const secret = process.env.UPSTREAM_SECRET ?? "change-me"

interface ChatRecord {
  readonly connection: string
  readonly command: string
  readonly text: string
}

// The backend: any HTTP server would do. It trusts a request only when its signature checks out.
const records: Array<ChatRecord> = []
const backend = createServer((request, response) => {
  let body = ""
  request.setEncoding("utf8")
  request.on("data", (chunk) => (body += chunk))
  request.on("end", () => {
    if (request.url !== "/records") {
      response.statusCode = 404
      return response.end()
    }
    if (request.method === "GET") {
      response.setHeader("content-type", "application/json")
      return response.end(JSON.stringify(records))
    }
    const url = `http://${request.headers.host}${request.url}`
    const timestamp = String(request.headers[Upstream.AddedHeader.timestamp])
    const expected = Buffer.from(`sha256=${NodeUpstream.sign(secret, timestamp, request.method!, url, body)}`)
    const given = Buffer.from(String(request.headers[Upstream.AddedHeader.signature]))
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      response.statusCode = 401
      return response.end("bad signature")
    }
    records.push({
      connection: String(request.headers[Upstream.AddedHeader.connection]),
      command: String(request.headers[Upstream.AddedHeader.command]),
      text: body
    })
    console.log(`backend: stored record #${records.length}`)
    response.end("stored")
  })
})

const Backend = Layer.effectDiscard(Effect.acquireRelease(
  Effect.callback<void>((resume) => {
    backend.listen(backendPort, host, () => resume(Effect.void))
  }),
  () => Effect.sync(() => backend.close())
))

const Main = NodeLhttpServer.layer({ port, host }).pipe(
  Layer.provide(NodeUpstream.layer({ allow: [`http://${host}:${backendPort}/records`], secret })),
  Layer.provideMerge(Hub.layer()),
  Layer.provide(Bus.layerMemory()),
  Layer.provide(Backend)
)

NodeLhttpServer.launch(Main)
