/** Waiting for conditions in tests, with a deadline. */
import { Duration, Effect } from "effect"

/** Waits until `check` holds, or dies after `timeout`. */
export const eventually = (check: () => boolean, timeout: Duration.Input = "5 seconds") =>
  until(Effect.sync(check), timeout)

/** Runs `probe` until it yields true, or dies after `timeout`. */
export const until = <E, R>(probe: Effect.Effect<boolean, E, R>, timeout: Duration.Input = "5 seconds") =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(Duration.fromInputUnsafe(timeout))
    while (!(yield* probe)) {
      if (Date.now() > deadline) return yield* Effect.die(new Error("the condition did not hold in time"))
      yield* Effect.sleep("10 millis")
    }
  })
