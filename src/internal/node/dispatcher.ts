/**
 * The one HTTP dispatcher of a Node server: the transports (WebSocket, SSE,
 * long-poll, `POST /send`) add their handlers here, each at its paths, as
 * `RpcServer`'s protocols add routes to an `HttpRouter`. The Node server
 * offers each request and upgrade to the dispatcher first; what no transport
 * takes goes to the Effect app.
 */
import { Effect, type Scope } from "effect"
import type { Buffer } from "node:buffer"
import type * as Http from "node:http"
import type { Duplex } from "node:stream"

/** Takes an upgrade at its paths (true), or leaves it to the app (false: not its kind of upgrade). */
export type UpgradeHandler = (request: Http.IncomingMessage, socket: Duplex, head: Buffer) => boolean

/** Answers every request at its path. */
export type RequestHandler = (request: Http.IncomingMessage, response: Http.ServerResponse) => void

/** The handlers of one Node server's transports. */
export interface Dispatcher {
  /** Adds the handler of the requests at `path` (exact) until the scope closes; a path taken already is a defect. */
  readonly addRequests: (path: string, handler: RequestHandler) => Effect.Effect<void, never, Scope.Scope>
  /** Adds a handler of the upgrades at `paths` (exact, or a prefix ending in `/*`) until the scope closes. */
  readonly addUpgrades: (
    paths: ReadonlyArray<string>,
    handler: UpgradeHandler
  ) => Effect.Effect<void, never, Scope.Scope>
  /** Offers a request to the handler at its path: whether one took it. */
  readonly request: (request: Http.IncomingMessage, response: Http.ServerResponse) => boolean
  /** Offers an upgrade to the handlers at its path, in the order they were added: whether one took it. */
  readonly upgrade: (request: Http.IncomingMessage, socket: Duplex, head: Buffer) => boolean
}

/** The path of a request target: what comes before its query. */
const pathOf = (url: string | undefined): string => {
  const target = url ?? "/"
  const query = target.indexOf("?")
  return query === -1 ? target : target.slice(0, query)
}

/** Whether a path is one of `paths`: exact, or under a prefix ending in `/*` (which takes the bare prefix too). */
const pathMatcher = (paths: ReadonlyArray<string>) => {
  const exact = new Set<string>()
  const prefixes: Array<string> = []
  for (const path of paths) {
    if (path.endsWith("/*")) prefixes.push(path.slice(0, -1))
    else exact.add(path)
  }
  return (path: string): boolean =>
    exact.has(path) || prefixes.some((prefix) => path.startsWith(prefix) || path === prefix.slice(0, -1))
}

interface Upgrades {
  readonly matches: (path: string) => boolean
  readonly handler: UpgradeHandler
}

/** A dispatcher with no handler yet. */
export const make = (): Dispatcher => {
  const requests = new Map<string, RequestHandler>()
  const upgrades: Array<Upgrades> = []
  return {
    addRequests: (path, handler) =>
      Effect.suspend(() => {
        if (requests.has(path)) return Effect.die(new Error(`two transports of one server take requests at ${path}`))
        requests.set(path, handler)
        return Effect.addFinalizer(() => Effect.sync(() => requests.delete(path)))
      }),
    addUpgrades: (paths, handler) =>
      Effect.suspend(() => {
        const entry: Upgrades = { matches: pathMatcher(paths), handler }
        upgrades.push(entry)
        return Effect.addFinalizer(() => Effect.sync(() => upgrades.splice(upgrades.indexOf(entry), 1)))
      }),
    request: (request, response) => {
      if (requests.size === 0) return false
      const handler = requests.get(pathOf(request.url))
      if (handler === undefined) return false
      handler(request, response)
      return true
    },
    upgrade: (request, socket, head) => {
      const path = pathOf(request.url)
      for (const entry of upgrades) {
        if (entry.matches(path) && entry.handler(request, socket, head)) return true
      }
      return false
    }
  }
}
