// The vitest config of `npm run mutate` (stryker.config.mjs): the project's, running only the test
// files of the groups of modules being mutated (MUTATE).
import { testFiles } from "./stryker.config.mjs"
import base from "./vitest.config.ts"

export default { ...base, test: { ...base.test, include: testFiles } }
