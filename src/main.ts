/**
 * The main job (`npm start`): the stand-alone server with the in-memory bus
 * and the `echo` and `chat` demo processors, configured by `LHTTP_*`
 * environment variables (see the README). It stops gracefully on SIGTERM and
 * SIGINT.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import * as Bus from "./Bus.ts"
import * as Chat from "./demo/Chat.ts"
import * as Echo from "./demo/Echo.ts"
import * as Hub from "./Hub.ts"
import * as LhttpServer from "./LhttpServer.ts"

const Main = LhttpServer.layerNodeConfig({ processors: [Echo.Echo, Chat.Chat] }).pipe(
  Layer.provide([Echo.layer, Chat.layer]),
  Layer.provideMerge(Hub.layer()),
  Layer.provide(Bus.layerMemory())
)

Layer.launch(Main).pipe(NodeRuntime.runMain)
