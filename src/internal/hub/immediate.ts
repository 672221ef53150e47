/**
 * A function's synchronous twin, carried by the function itself: the
 * in-memory bus's `publish` and the in-memory store's `append` carry a twin
 * that does the same at once, outside any fiber, and the hub calls the twin
 * when both have one (issue 23). A bus or store that wraps another and
 * replaces the function drops the twin with it, so the hub never goes around
 * the wrapper.
 */
const twin: unique symbol = Symbol.for("effect-lhttp/Immediate")

/** A function with its synchronous twin. */
export type WithImmediate<F, I> = F & { readonly [twin]: I }

/** Attaches `immediate` to `f` as its synchronous twin. */
export const attach = <F extends (...args: never) => unknown, I>(f: F, immediate: I): WithImmediate<F, I> =>
  Object.assign(f, { [twin]: immediate })

/** The synchronous twin of `f`, if it has one. */
export const of = <I>(f: ((...args: never) => unknown) | undefined): I | undefined =>
  f === undefined ? undefined : (f as Partial<WithImmediate<unknown, I>>)[twin]
