/**
 * Preloaded into a server of the latency measurement (bench/relay.ts): turns
 * on V8's GC trace (a line per collection on stdout, with its pause), which
 * NODE_OPTIONS cannot ask for itself.
 */
import { setFlagsFromString } from "node:v8"

setFlagsFromString("--trace-gc")
