#!/usr/bin/env bash
# A short soak for `bazel test //...` (tools/soak/README.md): 3 hosts, a fixed seed and a fixed
# number of rounds, two daemon SIGKILLs (and restarts) and worker kills on the way; passes only
# if no answer was unexpected, no daemon crashed or hung, and every surviving daemon ends with
# nothing left. Under a sanitizer (everything 2-10x slower) it runs fewer rounds, same checks.
set -euo pipefail
rounds=800 kills=250,550
if [[ -n "${REFSTORE_SANITIZER:-}" ]]; then
  rounds=250 kills=120
fi
# A failing run leaves its logs with the test's outputs (bazel-testlogs/.../test.outputs).
exec tools/soak/soak --hosts 3 --workers 2 --seed 20261204 --rounds "$rounds" \
  --daemon-kill-rounds "$kills" \
  --log-dir "${TEST_UNDECLARED_OUTPUTS_DIR:-/tmp}/soak"
