/**
 * Random ids from the platform's crypto: short ones that are not secrets
 * (history epochs, presence node ids) and secret keys (session keys, the keys
 * of SSE and long-poll connections).
 */

/** A short random id: 64 bits in base 36. Not a secret. */
export const randomId = (): string => {
  const words = crypto.getRandomValues(new Uint32Array(2))
  return `${words[0]!.toString(36)}${words[1]!.toString(36)}`
}

/** An unguessable key: 128 random bits in base64url (22 characters). */
export const secretKey = (): string => {
  const bytes = crypto.getRandomValues(new Uint8Array(16))
  let binary = ""
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]!)
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")
}
