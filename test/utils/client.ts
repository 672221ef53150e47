/**
 * A tiny promise-based WebSocket client for tests: connect, send frames,
 * take received frames one by one, wait for the close.
 */
import WebSocket from "ws"

/** How a connection closed. */
export interface Close {
  readonly code: number
  readonly reason: string
}

export interface Client {
  readonly ws: WebSocket
  /** Sends one text message. */
  readonly send: (text: string) => void
  /** The next received frame's text, in order; rejects after `timeoutMs`, on a binary frame or on close. */
  readonly next: (timeoutMs?: number) => Promise<string>
  /** The next `count` frames. */
  readonly take: (count: number, timeoutMs?: number) => Promise<ReadonlyArray<string>>
  /** Settles when the connection has closed. */
  readonly closed: Promise<Close>
  /** Closes the connection (normal closure) and waits for it. */
  readonly close: () => Promise<Close>
  /** Drops the connection at once. */
  readonly terminate: () => void
}

interface Received {
  readonly text: string
  readonly binary: boolean
}

/** Connects to `url`; rejects when the connection fails or takes more than `timeoutMs`. */
export const connect = (url: string, timeoutMs = 5_000): Promise<Client> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    const queue: Array<Received> = []
    const waiters: Array<() => void> = []
    let closedWith: Close | undefined
    const wake = () => {
      for (const waiter of waiters.splice(0)) waiter()
    }
    const closed = new Promise<Close>((resolveClose) => {
      ws.on("close", (code, reason) => {
        closedWith = { code, reason: reason.toString("utf8") }
        resolveClose(closedWith)
        wake()
      })
    })
    ws.on("message", (data, isBinary) => {
      const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer)
      queue.push({ text: bytes.toString("utf8"), binary: isBinary })
      wake()
    })
    const timer = setTimeout(() => {
      ws.terminate()
      reject(new Error(`could not connect to ${url} within ${timeoutMs} ms`))
    }, timeoutMs)
    ws.once("error", (error) => {
      clearTimeout(timer)
      reject(error)
    })

    const next = (waitMs = 5_000) =>
      new Promise<string>((resolveNext, rejectNext) => {
        const check = (): boolean => {
          const item = queue.shift()
          if (item !== undefined) {
            clearTimeout(timer)
            if (item.binary) rejectNext(new Error(`a binary frame: ${JSON.stringify(item.text)}`))
            else resolveNext(item.text)
            return true
          }
          if (closedWith !== undefined) {
            clearTimeout(timer)
            rejectNext(new Error(`the connection closed (${JSON.stringify(closedWith)}) while a frame was awaited`))
            return true
          }
          return false
        }
        const timer = setTimeout(() => {
          const index = waiters.indexOf(waiter)
          if (index !== -1) waiters.splice(index, 1)
          rejectNext(new Error(`no frame within ${waitMs} ms`))
        }, waitMs)
        const waiter = () => {
          if (!check()) waiters.push(waiter)
        }
        waiter()
      })

    ws.once("open", () => {
      clearTimeout(timer)
      ws.on("error", () => {}) // reported through `closed`
      resolve({
        ws,
        send: (text) => ws.send(text),
        next,
        take: async (count, waitMs) => {
          const frames: Array<string> = []
          for (let i = 0; i < count; i++) frames.push(await next(waitMs))
          return frames
        },
        closed,
        close: () => {
          if (closedWith === undefined) ws.close(1000)
          return closed
        },
        terminate: () => ws.terminate()
      })
    })
  })
