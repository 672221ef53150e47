// Stops `npm start` and `npm test` with ONE line (on stderr, exit code 1)
// when this Node is older than package.json's engines.node. Written in ES5 on purpose: the Node it
// rejects may be too old to parse anything newer, and `.cjs` loads as CommonJS on every Node.
"use strict"
var engines = require("../package.json").engines.node // ">=22.19"
var wanted = /(\d+)\.(\d+)/.exec(engines)
var need = [Number(wanted[1]), Number(wanted[2])]
var have = process.versions.node.split(".").map(Number)
if (have[0] < need[0] || (have[0] === need[0] && have[1] < need[1])) {
  process.stderr.write(
    "effect-lhttp needs Node.js " + engines + " (Node 24 LTS recommended), but this is Node " +
      process.version + " (" + process.execPath + "): put a newer node first on PATH\n"
  )
  process.exit(1)
}
