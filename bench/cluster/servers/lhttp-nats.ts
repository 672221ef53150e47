/**
 * One effect-lhttp node of the cluster benchmark: the same stand-alone server
 * as bench/fanout/servers/lhttp.ts (no processors; `subscribe` and `publish`
 * headers work with any command) on 127.0.0.1:$PORT, with the NATS bus on
 * $NATS_URL instead of the in-memory one. It logs a line with "listening" when
 * it serves, and "NATS: connected" once its NATS connection is up.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import * as Hub from "../../../src/Hub.ts"
import * as NodeLhttpServer from "../../../src/NodeLhttpServer.ts"
import * as NatsBus from "../../../src/NatsBus.ts"

const Server = NodeLhttpServer.layer({ port: Number(process.env.PORT), host: "127.0.0.1" }).pipe(
  Layer.provideMerge(Hub.layer()),
  Layer.provide(NatsBus.layer({ servers: process.env.NATS_URL ?? "nats://127.0.0.1:4222" }))
)

Layer.launch(Server).pipe(NodeRuntime.runMain)
