/**
 * Request signatures: hex HMAC-SHA256 of `<timestamp>\n<METHOD>\n<url>\n<body>`
 * with a secret shared with the backend.
 */
import { createHmac } from "node:crypto"

/** The signature of a request (hex, without the `sha256=` prefix). */
export const sign = (secret: string, timestamp: string, method: string, url: string, body: string): string =>
  createHmac("sha256", secret).update(`${timestamp}\n${method}\n${url}\n${body}`).digest("hex")
