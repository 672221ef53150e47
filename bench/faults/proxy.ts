/**
 * The fault campaign's TCP proxy: in front of a node's NATS connection or of
 * a client process's connections, passing bytes both ways until told to cut
 * them (every connection dropped, new ones refused), stall them (nothing
 * read either way, connections kept) or stall what goes to the client only
 * (a slow consumer). With several targets it balances: each new connection
 * goes to the next target that accepts it, as a load balancer in front of
 * the nodes does, and the connects per target and second are counted.
 */
import * as Net from "node:net"

/** One connection through the proxy: the client's socket and the target's. */
interface Pair {
  readonly client: Net.Socket
  readonly upstream: Net.Socket
}

/** A proxy on a loopback port of its own. */
export class Proxy {
  readonly #server: Net.Server
  readonly #pairs = new Set<Pair>()
  /** Every socket the proxy opened or accepted, until it closes. */
  readonly #sockets = new Set<Net.Socket>()
  readonly #targets: () => ReadonlyArray<number>
  #next = 0
  #cut = false
  #stalled: "none" | "both" | "down" = "none"
  /** Connects that reached a target, by target port, per second (of the epoch). */
  readonly connects = new Map<number, Map<number, number>>()
  port = 0

  /** A proxy to `targets()` (looked at for each new connection: a node that is down is skipped). */
  constructor(targets: () => ReadonlyArray<number>) {
    this.#targets = targets
    this.#server = Net.createServer((client) => this.#accept(client))
  }

  /** Listens on a free loopback port. */
  listen(): Promise<this> {
    return new Promise((resolve) =>
      this.#server.listen(0, "127.0.0.1", () => {
        this.port = (this.#server.address() as Net.AddressInfo).port
        resolve(this)
      })
    )
  }

  /** Drops every connection and refuses new ones until {@link mend}. */
  cut(): void {
    this.#cut = true
    for (const pair of Array.from(this.#pairs)) this.#end(pair)
  }

  /** Lets connections through again. */
  mend(): void {
    this.#cut = false
  }

  /** Stops reading both ways (`"both"`: a network that hangs) or only from the targets (`"down"`: a slow reader). */
  stall(how: "both" | "down"): void {
    this.#stalled = how
    for (const pair of this.#pairs) this.#apply(pair)
  }

  /** Reads both ways again. */
  unstall(): void {
    this.#stalled = "none"
    for (const pair of this.#pairs) this.#apply(pair)
  }

  /** Closes the proxy and every connection through it, those still being connected to a target too. */
  close(): Promise<void> {
    this.cut()
    for (const socket of this.#sockets) socket.destroy()
    return new Promise((resolve) => this.#server.close(() => resolve()))
  }

  #apply(pair: Pair): void {
    if (this.#stalled === "none") {
      pair.client.resume()
      pair.upstream.resume()
    } else {
      pair.upstream.pause()
      if (this.#stalled === "both") pair.client.pause()
    }
  }

  #end(pair: Pair): void {
    this.#pairs.delete(pair)
    pair.client.destroy()
    pair.upstream.destroy()
  }

  #track(socket: Net.Socket): void {
    this.#sockets.add(socket)
    socket.once("close", () => this.#sockets.delete(socket))
  }

  #accept(client: Net.Socket): void {
    this.#track(client)
    client.on("error", () => client.destroy())
    if (this.#cut) return void client.destroy()
    client.pause()
    const targets = this.#targets()
    const attempt = (tried: number): void => {
      if (tried >= targets.length || this.#cut) return void client.destroy()
      const port = targets[this.#next++ % targets.length]!
      const upstream = Net.connect(port, "127.0.0.1")
      this.#track(upstream)
      upstream.once("error", () => {
        upstream.destroy()
        attempt(tried + 1)
      })
      upstream.once("connect", () => {
        upstream.removeAllListeners("error")
        if (this.#cut || client.destroyed) return void upstream.destroy()
        this.#count(port)
        const pair: Pair = { client, upstream }
        this.#pairs.add(pair)
        const end = () => {
          if (this.#pairs.has(pair)) this.#end(pair)
        }
        client.on("close", end)
        upstream.on("error", end).on("close", end)
        this.#forward(client, upstream, () => this.#stalled === "both")
        this.#forward(upstream, client, () => this.#stalled !== "none")
        this.#apply(pair)
      })
    }
    attempt(0)
  }

  // bytes from one side to the other, with backpressure; a stalled direction is not resumed by a drain
  #forward(from: Net.Socket, to: Net.Socket, stalled: () => boolean): void {
    from.on("data", (chunk: Buffer) => {
      if (!to.write(chunk)) from.pause()
    })
    to.on("drain", () => {
      if (!stalled()) from.resume()
    })
  }

  #count(port: number): void {
    const second = Math.floor(Date.now() / 1000)
    let perSecond = this.connects.get(port)
    if (perSecond === undefined) this.connects.set(port, perSecond = new Map())
    perSecond.set(second, (perSecond.get(second) ?? 0) + 1)
  }
}
