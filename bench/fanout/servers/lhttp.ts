/**
 * The effect-lhttp server under test: the stand-alone Node server with the
 * in-memory bus and no processors (`subscribe` and `publish` headers work with
 * any command), on 127.0.0.1:$PORT. It logs a line with "listening" when ready.
 * With $LHTTP_BENCH_HISTORY (policies, as `LHTTP_HISTORY` reads them), the
 * channels it names keep history in memory.
 */
import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import * as Bus from "../../../src/Bus.ts"
import * as History from "../../../src/History.ts"
import * as Hub from "../../../src/Hub.ts"
import * as NodeLhttpServer from "../../../src/NodeLhttpServer.ts"

const policies = History.parsePolicies(process.env.LHTTP_BENCH_HISTORY ?? "")
const HubLive = policies.length === 0 ? Hub.layer() : Hub.layer().pipe(Layer.provide(History.layerMemory({ policies })))

const Server = NodeLhttpServer.layer({ port: Number(process.env.PORT), host: "127.0.0.1" }).pipe(
  Layer.provideMerge(HubLive),
  Layer.provide(Bus.layerMemory())
)

Layer.launch(Server).pipe(NodeRuntime.runMain)
