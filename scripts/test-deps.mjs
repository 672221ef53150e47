// The system programs the tests run, found or installed before vitest starts (step of `npm test`):
// nats-server (the cluster tests start real servers), Chromium (the browser tests drive it with
// playwright-core) and iproute2's ip (a network namespace, which also needs root). Missing ones are
// installed with Debian's apt-get when this runs as root (CI, a fresh container); otherwise it stops
// with ONE line naming what to install. It looks where the tests look (test/utils/nats.ts,
// test/utils/browser.ts), so a found program is one they find.
import { spawnSync } from "node:child_process"
import { existsSync } from "node:fs"
import * as Path from "node:path"

// test/utils/nats.ts: PATH, then the folders Debian and `make install` use (sbin is off a user's PATH)
const natsCandidates = [
  "/usr/sbin/nats-server",
  "/usr/local/sbin/nats-server",
  "/usr/bin/nats-server",
  "/usr/local/bin/nats-server"
]
const findNats = () =>
  (process.env.PATH ?? "")
    .split(Path.delimiter)
    .filter((dir) => dir !== "")
    .map((dir) => Path.join(dir, "nats-server"))
    .concat(natsCandidates)
    .find((path) => existsSync(path))

// test/utils/browser.ts: CHROMIUM_PATH, else Debian's
const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium"

const stop = (line) => {
  console.error(`npm test: ${line}`)
  process.exit(1)
}

// iproute2's ip: the security test makes a network namespace (a peer on a non-loopback address)
const hasIp = () => ["/usr/sbin/ip", "/sbin/ip", "/bin/ip", "/usr/bin/ip"].some((path) => existsSync(path))

// package names, as apt-get takes them
const missing = () => [
  ...(findNats() === undefined ? ["nats-server"] : []),
  ...(existsSync(chromiumPath) ? [] : ["chromium"]),
  ...(hasIp() ? [] : ["iproute2"])
]

// making a network namespace takes root (CI runs as root)
if (process.getuid?.() !== 0) {
  stop(
    "the tests make a network namespace (a peer on a non-loopback address, test/Security.test.ts): run npm test as root, as CI does"
  )
}

const before = missing()
if (before.length === 0) process.exit(0)

const what =
  "the cluster tests run nats-server, the browser tests drive Chromium, the security test makes a network namespace with ip"
if (process.env.CHROMIUM_PATH !== undefined && before.includes("chromium")) {
  stop(
    `CHROMIUM_PATH=${process.env.CHROMIUM_PATH} does not exist: point it at a Chromium binary, or unset it to use Debian's /usr/bin/chromium`
  )
}
const command = `apt-get install -y ${before.join(" ")}`
if (process.getuid?.() !== 0) {
  stop(
    `${
      before.join(" and ")
    } missing (${what}): install with \`sudo ${command}\` (npm test installs them itself when run as root)`
  )
}
const hasApt = spawnSync("apt-get", ["--version"], { stdio: "ignore" }).status === 0
if (!hasApt) {
  stop(
    `${
      before.join(" and ")
    } missing (${what}) and there is no apt-get here: install them with this system's package manager`
  )
}

console.log(`npm test: installing ${before.join(" and ")} (${command}) ...`)
const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
const run = (args) => {
  // no stdin (CI), output kept for the one line that reports a failure
  const result = spawnSync("apt-get", args, {
    env,
    stdio: ["ignore", "pipe", "pipe"],
    encoding: "utf8",
    timeout: 15 * 60_000
  })
  if (result.status === 0) return
  const lines = `${result.stderr ?? ""}\n${result.stdout ?? ""}`.split("\n").map((line) => line.trim())
  const reason = lines.find((line) => line.startsWith("E:")) ?? lines.find((line) => line !== "") ??
    (result.error?.message ?? `exit ${result.status ?? result.signal}`)
  stop(`\`apt-get ${args.join(" ")}\` failed (${reason}): install ${before.join(" and ")} by hand`)
}
// a fresh image has no package lists: update first
run(["update", "-qq"])
run(["install", "-y", "-qq", ...before])

const after = missing()
if (after.length > 0) stop(`${after.join(" and ")} still missing after \`${command}\``)
console.log(`npm test: installed ${before.join(" and ")}`)
