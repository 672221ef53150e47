/**
 * One effect-lhttp node of the cluster benchmark: the same stand-alone server
 * as bench/fanout/servers/lhttp.ts (no processors; `subscribe` and `publish`
 * headers work with any command) on 127.0.0.1:$PORT, with the NATS bus on
 * $NATS_URL instead of the in-memory one. It logs a line with "listening" when
 * it serves, and "NATS: connected" once its NATS connection is up. With
 * $LHTTP_BENCH_HISTORY (policies, as `LHTTP_HISTORY` reads them), the channels
 * it names keep history in JetStream: the bus and the history are then both
 * `NatsHistory.layer({ servers, policies })` (a stream records the bus's own
 * subjects and republishes what it stored, with its sequence), in place of
 * `NatsBus.layer({ servers })`. $LHTTP_BENCH_MAX_OUTBOUND_BYTES sets the bound of a
 * connection's outbound queue (`maxOutboundBytes`; the default is 1 MiB).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Layer } from "effect"
import * as History from "../../../src/History.ts"
import * as Hub from "../../../src/Hub.ts"
import * as NatsBus from "../../../src/NatsBus.ts"
import * as NatsHistory from "../../../src/NatsHistory.ts"
import * as NodeLhttpServer from "../../../src/NodeLhttpServer.ts"

const servers = process.env.NATS_URL ?? "nats://127.0.0.1:4222"
const policies = History.parsePolicies(process.env.LHTTP_BENCH_HISTORY ?? "")
const BusLive = policies.length === 0 ? NatsBus.layer({ servers }) : NatsHistory.layer({ servers, policies })

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
