/**
 * The server's counters, kept as plain numbers on the paths that move them
 * (no Effect per message) and read when metrics are exported.
 */

/** Counters of one server. */
export class Stats {
  /** Inbound messages taken from transports. */
  messagesIn = 0
  /** Inbound messages refused by the message rate. */
  rateLimited = 0
  /** Frames written to transports, and their bytes. */
  framesOut = 0
  bytesOut = 0
  /** Connections closed as slow consumers. */
  slowConsumerCloses = 0
  /** Error frames written, by reason. */
  readonly errorFrames = new Map<string, number>()
  /** Called the first time a reason is counted (the metrics add its series). */
  onNewReason: ((reason: string) => void) | undefined

  errorFrame(reason: string): void {
    const count = this.errorFrames.get(reason)
    this.errorFrames.set(reason, (count ?? 0) + 1)
    if (count === undefined) this.onNewReason?.(reason)
  }
}
