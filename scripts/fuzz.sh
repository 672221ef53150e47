#!/usr/bin/env bash
# A longer fuzzing run than CI's: FUZZ_RUNS frames (default 2,000,000) against the codec and the
# pipeline (test/Fuzz.test.ts). FUZZ_SEED repeats a run of the pipeline test.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_RUNS="${FUZZ_RUNS:-2000000}" npx vitest run test/Fuzz.test.ts --testTimeout=3600000
