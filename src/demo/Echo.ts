/**
 * The `echo` demo processor: answers every `echo` message with an `echo`
 * frame whose body is the request's body, unchanged (and its `id`, if any).
 *
 * @since 0.1.0
 */
import * as Processor from "../Processor.ts"

/**
 * The `echo` processor.
 *
 * @since 0.1.0
 * @category processors
 */
export const Echo = Processor.make("echo")

/**
 * Its implementation.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = Echo.toLayer({
  onMessage: (exchange) => exchange.send(exchange.text)
})
