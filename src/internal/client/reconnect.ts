/**
 * How the Effect client keeps its connection up: a connection is opened, read
 * until it ends, and opened again after the wait a `Schedule` decides (as
 * `RpcClient`'s `retryPolicy`). The default Schedule is the backoff both
 * clients share (internal/wire/backoff.ts), written as a Schedule here and
 * nowhere else.
 */
import { Clock, Duration, Effect, Pull, Schedule } from "effect"
import * as Backoff from "../wire/backoff.ts"

/**
 * The shared backoff as a Schedule: the wait before attempt n (0 for the
 * first) is `Backoff.delay(backoff, n)`, its jitter drawn when it is due. It
 * never ends; its output is n.
 */
export const schedule = (backoff: Backoff.Backoff): Schedule.Schedule<number> =>
  Schedule.forever.pipe(Schedule.modifyDelay(({ output }) => Effect.sync(() => Backoff.delay(backoff, output))))

/** The numbers of a backoff as the client's `reconnect` option gives them (`ReconnectOptions`): durations or ms. */
interface Numbers {
  readonly initialDelay?: Duration.Input | undefined
  readonly maxDelay?: Duration.Input | undefined
  readonly factor?: number | undefined
  readonly jitter?: number | undefined
}

/** The backoff of `numbers`, the shared defaults where one is not given. */
export const backoffOf = (numbers: Numbers | undefined): Backoff.Backoff => {
  const millis = (input: Duration.Input | undefined, fallback: number) =>
    input === undefined ? fallback : Duration.toMillis(Duration.fromInputUnsafe(input))
  return {
    initialDelay: millis(numbers?.initialDelay, Backoff.defaults.initialDelay),
    maxDelay: millis(numbers?.maxDelay, Backoff.defaults.maxDelay),
    factor: numbers?.factor ?? Backoff.defaults.factor,
    jitter: numbers?.jitter ?? Backoff.defaults.jitter
  }
}

/**
 * What the client's `reconnect` option asks for: the reconnect Schedule
 * (undefined: no reconnect), and the backoff of a frame `POST /send` sends
 * again (the option's numbers, or the defaults).
 */
export const fromOption = (reconnect: Schedule.Schedule<unknown> | Numbers | false | undefined): {
  readonly schedule: Schedule.Schedule<unknown> | undefined
  readonly backoff: Backoff.Backoff
} => {
  if (reconnect === false) return { schedule: undefined, backoff: Backoff.defaults }
  if (Schedule.isSchedule(reconnect)) return { schedule: reconnect, backoff: Backoff.defaults }
  const backoff = backoffOf(reconnect)
  return { schedule: schedule(backoff), backoff }
}

/**
 * How one connection ended: whether it opened, the wait (ms) its close asked
 * for before the next one, and whether its close said not to come back
 * (a code from 4500 to 4999).
 */
export interface Ended {
  readonly opened: boolean
  readonly hinted: number | undefined
  readonly terminal: boolean
}

/**
 * Runs `connection` again and again for as long as `schedule` goes on: after
 * each end, unless `closed()`, the wait its close asked for (a draining
 * server's `reconnect:<ms>`) or else the Schedule's next wait, told by
 * `reconnecting` right before it starts. A connection that opened starts the
 * Schedule again from its first wait; one whose close said not to come back
 * ends it. Without a Schedule, the connection is tried once.
 */
export const keepUp = (options: {
  readonly connection: Effect.Effect<Ended>
  readonly schedule: Schedule.Schedule<unknown> | undefined
  readonly closed: () => boolean
  readonly reconnecting: Effect.Effect<void>
}): Effect.Effect<void> =>
  Effect.gen(function*() {
    const { connection, schedule } = options
    if (schedule === undefined) return yield* Effect.asVoid(connection)
    let step = yield* Schedule.toStep(schedule)
    while (true) {
      const ended = yield* connection
      if (ended.opened) step = yield* Schedule.toStep(schedule)
      if (options.closed() || ended.terminal) return
      const wait = ended.hinted !== undefined ? Duration.millis(ended.hinted) : yield* step(
        yield* Clock.currentTimeMillis,
        undefined
      ).pipe(
        Effect.map(([, delay]): Duration.Duration | undefined => delay),
        Pull.catchDone(() => Effect.succeed(undefined))
      )
      if (wait === undefined) return
      yield* options.reconnecting
      yield* Effect.sleep(wait)
    }
  })
