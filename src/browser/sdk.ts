/**
 * lhttp.js: the LHTTP client for browsers and Node 22+ (effect-lhttp), the
 * entry that scripts/build-browser.mjs bundles into `src/browser/lhttp.js`
 * (and its types into `lhttp.d.ts`).
 *
 * A dependency-free ES module, served by every effect-lhttp server at `GET /lhttp.js`:
 *
 *   <script type="module">
 *     import { Lhttp } from "/lhttp.js"
 *     const lhttp = new Lhttp()                        // ws(s)://<this page's host>/
 *     lhttp.on_open = (ctx) => ctx.subscribe("room", "chat", null, "")
 *     lhttp.on_message = (ctx) => console.log(ctx.getHeader("from"), ctx.getBody())
 *   </script>
 *
 * It keeps the names of the original lhttp JavaScript SDK (`Lhttp`, `on_open`, `on_message`,
 * `on_close`, `on_error`, contexts with `getCommand`, `getHeader`, `addHeader`, `send`,
 * `publish`, `subscribe`) and fixes its bugs: `getHeader(name)` returns that header, values keep
 * their colons, bodies keep every CRLF CRLF, and staged headers are cleared by each send. It adds
 * `unsubscribe`, `request` (replies correlated by an `id` header), `close`, the connection
 * `state`, and reconnection with exponential backoff and jitter that re-sends every subscription.
 * Subscriptions ask for history positions (`since:now`): after a reconnect each history channel is
 * subscribed since its last position, and what was published meanwhile comes first
 * (`lhttp.position(channel)`, docs/history-and-presence.md).
 *
 * Where a WebSocket cannot get through, it falls back to Server-Sent Events (`GET /sse`) and then
 * to long-poll (`GET /poll`), sending with `POST /send` (docs/transports.md): option `transports`.
 *
 * It keeps the server's session (`session` frames: `lhttp.session`, the `on_session` hook) and
 * restores it after every new connection, before anything else is sent (options `session`,
 * `sessionStorage`, `sessionStorageKey`).
 *
 * On a server with connection tokens, option `getToken` gives each connection attempt its token
 * (`?token=`) and answers the server's `refresh` frame with a fresh one. `on_disconnect` tells each
 * end of a connection; a close code from 4500 to 4999 ends the client (no reconnect). A
 * subscription to private channels made with `{ token: true }` carries a subscription token from
 * option `getSubscriptionToken`, fresh at the subscribe and at every re-subscription.
 *
 * The rules it shares with the Effect client (frames, the event stream, backoff, positions,
 * sessions, the answers of `POST /send`) are written once, in src/internal/wire/
 * (docs/clients.md, "Rules both clients follow").
 */
import { Lhttp } from "./client.ts"

export { Context, Lhttp } from "./client.ts"
export type { GapEvent, HttpConnection } from "./httpLink.ts"
export { decode, encode, fromEvent, LhttpError, Message, PROTOCOL } from "./message.ts"
export type { Channels, HeadersInput, MessageInput } from "./message.ts"
export { TRANSPORTS } from "./options.ts"
export type {
  Acknowledgement,
  LhttpOptions,
  ReconnectOptions,
  RequestOptions,
  Session,
  SessionChange,
  SessionStorage,
  State,
  SubscribeOptions,
  Transport,
  WebSocketConstructor,
  WebSocketLike
} from "./options.ts"

export default Lhttp
