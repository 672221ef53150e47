/**
 * Just enough LHTTP for the raw `ws` baseline servers: the `subscribe` and
 * `publish` channels of a message (one channel each, as the benchmark sends).
 */

/** The channels a message subscribes to and publishes to, if any. */
export const routeOf = (text: string): { subscribe: string | undefined; publish: string | undefined } => {
  let subscribe: string | undefined
  let publish: string | undefined
  const end = text.indexOf("\r\n\r\n")
  let line = text.indexOf("\r\n") + 2
  while (line > 1 && line < end) {
    const next = text.indexOf("\r\n", line)
    const colon = text.indexOf(":", line)
    if (colon !== -1 && colon < next) {
      const name = text.slice(line, colon)
      if (name === "subscribe") subscribe = text.slice(colon + 1, next)
      else if (name === "publish") publish = text.slice(colon + 1, next)
    }
    line = next + 2
  }
  return { subscribe, publish }
}

/** The port the server listens on, from $PORT. */
export const port = Number(process.env.PORT)
