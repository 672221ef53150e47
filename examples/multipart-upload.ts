/**
 * Multipart upload: a processor `upload` that reads the parts of a multipart
 * message and answers with a summary, one line per part.
 *
 * A multipart message carries `multipart:<offsets>`: byte offsets (UTF-8
 * bytes) into the body where each part starts. Each part is a header block
 * ended by CRLF CRLF, then the part's body (`\r\n` spelled out):
 *
 *   LHTTP/1.0 upload\r\nmultipart:0 44\r\n\r\n
 *   content-type:text/plain\r\nname:a.txt\r\n\r\nhello
 *   content-type:application/json\r\n\r\n{"x":1}
 *
 * (the body is the last two lines joined; the second part starts at byte 44).
 * The answer:
 *
 *   LHTTP/1.0 upload\r\n\r\n
 *   a.txt text/plain 5 bytes\n
 *   - application/json 7 bytes
 *
 * What it shows:
 * - `exchange.parts`: the server's built-in multipart filter cuts the body
 *   before the processor runs (`Multipart.join` builds a body and its offsets
 *   on the sending side);
 * - invalid offsets never reach the processor: the server answers with an
 *   error frame, and the connection stays open. `multipart:0 999` on a short
 *   body gets
 *     LHTTP/1.0 error\r\nstatus:400\r\nreason:InvalidMultipart\r\n\r\noffset 999 is past the end of the 84-byte body
 *   and so do decreasing offsets, a part without CRLF CRLF or an offset that
 *   splits a UTF-8 character;
 * - refusing a message from a processor with a `Rejection`: a message without
 *   parts gets `400 NoParts`.
 *
 * Run it:
 *
 *   PORT=8081 node examples/multipart-upload.ts
 *
 * Try it with wscat (`npm i -g wscat`); `printf` writes the CRLFs:
 *
 *   wscat -c ws://127.0.0.1:8081/ -w 1 -x "$(printf 'LHTTP/1.0 upload\r\nmultipart:0 19\r\n\r\nname:a.txt\r\n\r\nhello\r\n\r\nworld')"
 *   < LHTTP/1.0 upload\r\n\r\na.txt - 5 bytes\n- - 5 bytes
 *
 * Environment: PORT (default 8081), HOST (default 127.0.0.1).
 */
import { Config, Effect, Layer } from "effect"
import { Buffer } from "node:buffer"
import { Bus, Hub, Processor, Rejection } from "../src/index.ts"
import * as NodeLhttpServer from "../src/NodeLhttpServer.ts"

const Upload = Processor.make("upload")

const UploadLive = Upload.toLayer({
  onMessage: (exchange) =>
    Effect.gen(function*() {
      // empty when the message has no `multipart` header
      if (exchange.parts.length === 0) {
        return yield* new Rejection.Rejection({
          status: 400,
          reason: "NoParts",
          message: "send a multipart message: a multipart header with the offsets of the parts"
        })
      }
      // one line per part: its name, its content type ("-" when absent), its size
      const lines = exchange.parts.map((part) => {
        const name = part.headers.get("name") ?? "-"
        const type = part.headers.get("content-type") ?? "-"
        return `${name} ${type} ${Buffer.byteLength(part.body)} bytes`
      })
      yield* exchange.send(lines.join("\n"))
    })
})

const Server = Layer.unwrap(Effect.gen(function*() {
  const port = yield* Config.Port("PORT").pipe(Config.withDefault(8081))
  const host = yield* Config.String("HOST").pipe(Config.withDefault("127.0.0.1"))
  return NodeLhttpServer.layer({ port, host, processors: [Upload] })
}))

const Main = Server.pipe(
  Layer.provide(UploadLive),
  Layer.provideMerge(Hub.layer()),
  Layer.provide(Bus.layerMemory())
)

NodeLhttpServer.launch(Main)
