/**
 * The main job (`npm start`): the stand-alone server with the `echo`, `chat`
 * and `login` demo processors and sessions (the `session` command), on the
 * in-memory bus and session store, or on NATS as a node of a cluster when
 * `LHTTP_NATS_URL` is set (sessions then in a NATS KV bucket, history in a
 * JetStream stream: on a NATS without JetStream, sessions on this node only
 * and no history, each said in one warning line), with presence (the
 * `presence` command), a user addressing another (the `send` command), with
 * channel history (`LHTTP_HISTORY`), with upstream
 * calls when `LHTTP_UPSTREAM_ALLOW` is set; configured by `LHTTP_*`
 * environment variables (see the README). It serves
 * the chat room page at `/` and stops gracefully on SIGTERM and SIGINT.
 */
import { Layer } from "effect"
import { readFileSync } from "node:fs"
import * as Chat from "./demo/Chat.ts"
import * as Echo from "./demo/Echo.ts"
import * as Login from "./demo/Login.ts"
import * as Hub from "./Hub.ts"
import * as NatsHistory from "./NatsHistory.ts"
import * as NatsSessionStore from "./NatsSessionStore.ts"
import * as NodeLhttpServer from "./NodeLhttpServer.ts"
import * as NodeUpstream from "./NodeUpstream.ts"
import * as Presence from "./Presence.ts"
import * as ServerApi from "./ServerApi.ts"
import * as Sessions from "./Sessions.ts"

// the chat room page, served at GET / (it loads the browser SDK from /lhttp.js)
const page = readFileSync(new URL("./demo/chat.html", import.meta.url), "utf8")

const Main = NodeLhttpServer.layerConfig({
  processors: [
    Echo.Echo,
    Chat.Chat,
    Login.Login,
    Sessions.SessionProcessor,
    Presence.PresenceProcessor,
    ServerApi.SendProcessor
  ],
  page
}).pipe(
  Layer.provide([Echo.layer, Chat.layer, Login.layer, ServerApi.layerSendProcessor(), NodeUpstream.layerFromEnv]),
  Layer.provideMerge(Sessions.layer()),
  // the presence command (the chat page's member list); join and leave events per LHTTP_PRESENCE_EVENTS
  Layer.provideMerge(Presence.layerConfig),
  Layer.provide(NatsSessionStore.layerFromEnv),
  Layer.provideMerge(Hub.layer()),
  // every channel keeps its last 100 messages for 10 minutes unless LHTTP_HISTORY says otherwise (positions
  // only for subscriptions that ask); the bus is NATS when LHTTP_NATS_URL is set, the history then in JetStream
  Layer.provideMerge(NatsHistory.layerFromEnv)
)

NodeLhttpServer.launch(Main)
