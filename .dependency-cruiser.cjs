// dependency-cruiser, run by `npm run deps` (part of `npm run lint`, and so of `npm test`): the import rules of the
// house over the whole import graph, type-only and dynamic imports included (ESLint's no-restricted-imports in
// eslint.config.mjs says the same per file, in the editor). `npx depcruise src test bench examples scripts
// --output-type text` lists every arrow.

/** the modules allowed to import the platform: Node, ws, @effect/platform-node, NATS */
const platformModules = "^src/(internal/node/|internal/nats/|Node[^/]*\\.ts$|Nats[^/]*\\.ts$|main\\.ts$)"
/** the platform packages (as resolved under node_modules) */
const platformPackages = "(^|/)node_modules/(ws|@effect/platform-node(-shared)?|@nats-io/[^/]+)/"

/** @type {import("dependency-cruiser").IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "no-cycle",
      severity: "error",
      comment: "No import cycle in src/, type-only imports included (docs/architecture.md): a cycle means two " +
        "modules are one concept, or a type sits in the wrong one.",
      from: { path: "^src/" },
      to: { circular: true }
    },
    {
      name: "platform-only-in-node-and-nats",
      severity: "error",
      comment: "Only src/internal/node/, src/internal/nats/, src/Node*.ts, src/Nats*.ts and src/main.ts import " +
        "Node's modules, ws, @effect/platform-node or NATS: the rest runs in any JavaScript runtime.",
      from: { path: "^src/", pathNot: platformModules },
      to: {
        dependencyTypes: ["core"]
      }
    },
    {
      name: "platform-packages-only-in-node-and-nats",
      severity: "error",
      comment: "Only src/internal/node/, src/internal/nats/, src/Node*.ts, src/Nats*.ts and src/main.ts import " +
        "ws, @effect/platform-node or NATS.",
      from: { path: "^src/", pathNot: platformModules },
      to: { path: platformPackages }
    },
    {
      name: "wire-is-dependency-free",
      severity: "error",
      comment: "src/internal/wire/ (the frame grammar and the protocol's constants, also built into the browser " +
        "SDK) imports only its own modules: no effect, no node:, nothing else of src/.",
      from: { path: "^src/internal/wire/" },
      to: { pathNot: "^src/internal/wire/" }
    },
    {
      name: "browser-sdk-is-dependency-free",
      severity: "error",
      comment: "src/browser/ (built with esbuild into lhttp.js, which a page loads with no bundler) imports only " +
        "its own modules and src/internal/wire/.",
      from: { path: "^src/browser/" },
      to: { pathNot: "^src/(browser|internal/wire)/" }
    },
    {
      name: "internal-only-from-src-test-bench",
      severity: "error",
      comment: "src/internal/ is private to the package (package.json exports `./internal/*`: null): examples and " +
        "scripts use the public modules, as a user does. Tests and benchmarks may reach inside.",
      from: { pathNot: "^(src|test|bench)/" },
      to: { path: "^src/internal/" }
    },
    {
      name: "src-not-to-dev-only",
      severity: "error",
      comment: "src/ imports only what a user installs: effect and the optional peers, not a devDependency " +
        "(a test tool) that the published package does not declare. The operator's page (src/admin/page.ts) " +
        "is bundled with its chart library by scripts/build-admin.mjs: what ships is the bundle.",
      from: { path: "^src/", pathNot: "^src/admin/page\\.ts$" },
      to: { dependencyTypes: ["npm-dev"], dependencyTypesNot: ["npm-peer"] }
    },
    {
      name: "not-to-test",
      severity: "error",
      comment: "The library, the examples and the benchmarks do not import the tests' helpers (scripts/ may: " +
        "chat-screenshot.mjs drives the demo with them).",
      from: { path: "^(src|examples|bench)/" },
      to: { path: "^test/" }
    },
    {
      name: "not-to-unresolvable",
      severity: "error",
      comment: "Every import resolves to a file or an installed package.",
      from: {},
      to: { couldNotResolve: true }
    }
  ],
  options: {
    // type-only imports (`import type`) count: a cycle of types is still a cycle
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    // `process.getBuiltinModule("node:fs")` is an import of Node too
    detectProcessBuiltinModuleCalls: true,
    doNotFollow: { path: "node_modules" },
    exclude: {
      path: "^(dist|bench/results|reports|\\.stryker-tmp[^/]*)/|^src/browser/lhttp\\.(js|d\\.ts)$"
    },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["import", "require", "node", "default", "types"],
      mainFields: ["module", "main", "types", "typings"]
    },
    skipAnalysisNotInRules: true,
    reporterOptions: {
      text: { highlightFocused: true }
    }
  }
}
