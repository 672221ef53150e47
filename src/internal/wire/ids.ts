/**
 * Short random ids (64 bits in base 36) from the platform's crypto: history
 * epochs, presence node ids. Not secrets: connection and session keys use more.
 */
export const randomId = (): string => {
  const words = crypto.getRandomValues(new Uint32Array(2))
  return `${words[0]!.toString(36)}${words[1]!.toString(36)}`
}
