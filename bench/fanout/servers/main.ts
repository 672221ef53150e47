/**
 * The main job under test, as `npm start` runs it (src/main.ts): the `echo`,
 * `chat` and `login` demo processors, sessions, presence, and history on every
 * channel (the defaults: the last 100 messages for 10 minutes), on the
 * in-memory bus; on NATS when $LHTTP_NATS_URL is set (the bus, and the
 * history in JetStream). Only where it listens is set here: `LHTTP_PORT` from
 * $PORT, `LHTTP_HOST` 127.0.0.1; every other setting is the main job's
 * default. It logs `effect-lhttp listening on http://127.0.0.1:<port>` when
 * ready. The load's `LHTTP/1.0 bench` frames name no processor: their
 * `subscribe` and `publish` headers go to the built-ins, as any command's do.
 */
process.env.LHTTP_PORT = process.env.PORT
process.env.LHTTP_HOST = "127.0.0.1"

// imported once the environment is set (a static import would run first)
await import("../../../src/main.ts")
