/**
 * Echo server: the smallest LHTTP server, one processor `echo` that answers
 * every `echo` message with its body, unchanged.
 *
 * What it shows:
 * - a processor defined as a value (`Processor.make`) and implemented as a
 *   Layer (`toLayer`);
 * - a stand-alone Node server composed from Layers: the server, the
 *   processor's implementation, the hub and the in-memory bus;
 * - replies echo the request's `id` header, so a client can match them;
 * - a command without a processor is answered with an error frame
 *   (`404 UnknownCommand`), and the connection stays open;
 * - the built-in `subscribe` / `publish` / `unsubscribe` headers work on every
 *   message, whatever its command: `LHTTP/1.0 echo\r\nsubscribe:news\r\n\r\n`
 *   subscribes this connection to `news` (see publish-from-backend.ts);
 * - SIGTERM (or Ctrl-C) drains the server: open connections are closed with
 *   1012 and a wait before they reconnect (paced), then the process exits.
 *
 * Run it:
 *
 *   PORT=8081 node examples/echo-server.ts
 *
 * Try it with wscat (`npm i -g wscat`): `-x` sends one message after
 * connecting and `-w` waits for the answer; `printf` writes the CRLFs that
 * LHTTP needs.
 *
 *   wscat -c ws://127.0.0.1:8081/ -w 1 -x "$(printf 'LHTTP/1.0 echo\r\nid:1\r\n\r\nhello')"
 *   < LHTTP/1.0 echo\r\nid:1\r\n\r\nhello
 *
 *   wscat -c ws://127.0.0.1:8081/ -w 1 -x "$(printf 'LHTTP/1.0 nope\r\n\r\n')"
 *   < LHTTP/1.0 error\r\nstatus:404\r\nreason:UnknownCommand\r\n\r\nno processor for the command "nope"
 *
 * (Frames are shown with `\r\n` spelled out; wscat prints the raw text.)
 *
 * Environment: PORT (default 8081), HOST (default 127.0.0.1).
 */
import { Config, Effect, Layer } from "effect"
import { Bus, Hub, Processor } from "../src/index.ts"
import * as NodeLhttpServer from "../src/NodeLhttpServer.ts"

// The definition: the command it handles (the body stays a string).
const Echo = Processor.make("echo")

// The implementation: `exchange.send` replies on the same connection with the
// command `echo`, the request's `id` (if any) and this body.
const EchoLive = Echo.toLayer({
  onMessage: (exchange) => exchange.send(exchange.text)
})

const Server = Layer.unwrap(Effect.gen(function*() {
  const port = yield* Config.Port("PORT").pipe(Config.withDefault(8081))
  const host = yield* Config.String("HOST").pipe(Config.withDefault("127.0.0.1"))
  // logs "effect-lhttp listening on http://127.0.0.1:8081" once it accepts connections
  return NodeLhttpServer.layer({ port, host, processors: [Echo] })
}))

const Main = Server.pipe(
  Layer.provide(EchoLive),
  Layer.provideMerge(Hub.layer()),
  Layer.provide(Bus.layerMemory())
)

// On SIGTERM / SIGINT the Layers' finalizers drain the server (clients get
// 1012 and reconnect:<ms>), and the process exits with 0.
NodeLhttpServer.launch(Main)
