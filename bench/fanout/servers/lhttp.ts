/**
 * The effect-lhttp server under test: the stand-alone Node server with the
 * in-memory bus and no processors (`subscribe` and `publish` headers work with
 * any command), on 127.0.0.1:$PORT. It logs a line with "listening" when ready.
 * With $LHTTP_BENCH_HISTORY (policies, as `LHTTP_HISTORY` reads them), the
 * channels it names keep history in memory (`History.layerMemory` beside
 * `Bus.layerMemory()`); positions go to the subscriptions that ask for them
 * (`since:now` with `subscribe:`), the others get the published text.
 * $LHTTP_BENCH_MAX_OUTBOUND_BYTES sets the bound of a connection's outbound
 * queue (`maxOutboundBytes`; the default is 1 MiB).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import * as Bus from "../../../src/Bus.ts"
import * as History from "../../../src/History.ts"
import * as Hub from "../../../src/Hub.ts"
import * as NodeLhttpServer from "../../../src/NodeLhttpServer.ts"

const policies = History.parsePolicies(process.env.LHTTP_BENCH_HISTORY ?? "")
const BusLive = policies.length === 0
  ? Bus.layerMemory()
  : Layer.merge(Bus.layerMemory(), History.layerMemory({ policies }))

const Server = NodeLhttpServer.layer({
  port: Number(process.env.PORT),
  host: "127.0.0.1",
  // the bound of a connection's outbound queue (the server's default, 1 MiB, unless set)
  ...(process.env.LHTTP_BENCH_MAX_OUTBOUND_BYTES
    ? { maxOutboundBytes: Number(process.env.LHTTP_BENCH_MAX_OUTBOUND_BYTES) }
    : {})
}).pipe(
  Layer.provideMerge(Hub.layer()),
  Layer.provide(BusLive)
)

Layer.launch(Server).pipe(NodeRuntime.runMain)
