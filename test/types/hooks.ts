/**
 * Type test (checked by `tsc`, never run): a hook's error channel is
 * `ErrorFrame.Respondable` — docs/server.md "Typed errors": "An error that
 * would not become an error frame is a compile error", and the module docs
 * of `Processor` and `Filter`. Each `@ts-expect-error` fails the check when
 * its line compiles; each refused case has a twin that compiles, with a
 * Respondable error in the same place, so the error is the one claimed.
 */
import { Data, Effect } from "effect"
import * as ErrorFrame from "../../src/ErrorFrame.ts"
import * as Filter from "../../src/Filter.ts"
import * as Processor from "../../src/Processor.ts"
import * as ProtocolError from "../../src/ProtocolError.ts"
import * as Rejection from "../../src/Rejection.ts"
import * as Upstream from "../../src/Upstream.ts"

// an error of the app's own that is not an error frame
class NotFound extends Data.TaggedError("NotFound")<{ readonly id: string }> {}

// and one that is: it implements Respondable
class OutOfStock extends Data.TaggedError("OutOfStock")<{ readonly item: string }> implements ErrorFrame.Respondable {
  get [ErrorFrame.TypeId](): ErrorFrame.TypeId {
    return ErrorFrame.TypeId
  }
  toFrame(id?: string) {
    return ErrorFrame.make({ status: 409, reason: "OutOfStock", message: `no ${this.item} left`, id })
  }
}

const P = Processor.make("p")
const F = Filter.make("f")

/** A processor's hooks fail with Respondable errors: the four kinds the docs name. */
export const respondable = [
  P.toLayer({ onMessage: () => Effect.fail(Rejection.forbidden("no")) }),
  P.toLayer({ onMessage: () => Effect.fail(new ProtocolError.ProtocolError({ reason: "NotLhttp", message: "no" })) }),
  P.toLayer({ onMessage: () => Effect.fail(new Upstream.UpstreamError({ reason: "Timeout", message: "no" })) }),
  P.toLayer({ onMessage: () => Effect.fail(new OutOfStock({ item: "tea" })) }),
  P.toLayer({ onOpen: () => Effect.fail(new OutOfStock({ item: "tea" })) }),
  // mapped, as the docs advise
  P.toLayer({
    onMessage: () => Effect.fail(new NotFound({ id: "1" })).pipe(Effect.mapError(() => Rejection.forbidden("no")))
  })
]

/** An error that would not become an error frame does not compile, in each hook that can fail. */
export const unmapped = [
  // @ts-expect-error a string is not Respondable
  P.toLayer({ onMessage: () => Effect.fail("a plain failure") }),
  // @ts-expect-error a tagged error of the app's own that does not implement Respondable
  P.toLayer({ onMessage: () => Effect.fail(new NotFound({ id: "1" })) }),
  // @ts-expect-error the same in onOpen
  P.toLayer({ onOpen: () => Effect.fail(new NotFound({ id: "1" })) }),
  // @ts-expect-error onClose cannot fail at all, not even with a Respondable error
  P.toLayer({ onClose: () => Effect.fail(new OutOfStock({ item: "tea" })) })
]

/** A filter's hooks: Respondable errors compile… */
export const filterRespondable = [
  F.toLayer({ onOpen: () => Effect.fail(new OutOfStock({ item: "tea" })) }),
  F.toLayer({ before: () => Effect.fail(new OutOfStock({ item: "tea" })) }),
  F.toLayer({ after: () => Effect.fail(new OutOfStock({ item: "tea" })) })
]

/** …the others do not. */
export const filterUnmapped = [
  // @ts-expect-error onOpen of a filter
  F.toLayer({ onOpen: () => Effect.fail(new NotFound({ id: "1" })) }),
  // @ts-expect-error before
  F.toLayer({ before: () => Effect.fail(new NotFound({ id: "1" })) }),
  // @ts-expect-error after
  F.toLayer({ after: () => Effect.fail(new NotFound({ id: "1" })) })
]

/** The same holds for a Layer built by an Effect. */
export const fromEffect = [
  P.toLayer(Effect.succeed({ onMessage: () => Effect.fail(new OutOfStock({ item: "tea" })) })),
  // @ts-expect-error an unmapped error in handlers built by an Effect
  P.toLayer(Effect.succeed({ onMessage: () => Effect.fail(new NotFound({ id: "1" })) }))
]
