/**
 * The effect-lhttp server under test: the stand-alone Node server with the
 * in-memory bus and no processors (`subscribe` and `publish` headers work with
 * any command), on 127.0.0.1:$PORT. It logs a line with "listening" when ready.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import * as Bus from "../../../src/Bus.ts"
import * as Hub from "../../../src/Hub.ts"
import * as NodeLhttpServer from "../../../src/NodeLhttpServer.ts"

const Server = NodeLhttpServer.layer({ port: Number(process.env.PORT), host: "127.0.0.1" }).pipe(
  Layer.provideMerge(Hub.layer()),
  Layer.provide(Bus.layerMemory())
)

Layer.launch(Server).pipe(NodeRuntime.runMain)
