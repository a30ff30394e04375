#!/usr/bin/env bash
# Fuzzes one target for longer than the tests do, then merges what it found into its committed
# corpus (minimised: only inputs that add coverage are kept).
#   fuzz/run.sh TARGET [SECONDS]        e.g. fuzz/run.sh store_rpc_fuzz 600
# It runs `bazel test --config=fuzz` at nice 10 (so with the target's own libFuzzer flags); the
# log with executions per second and coverage is bazel-testlogs/fuzz/TARGET_test/test.log. A
# crash leaves its input in /tmp/refstore-fuzz-TARGET/crash-*: replay it with any build of
# the target, e.g. `bazel build //fuzz:TARGET && bazel-bin/fuzz/TARGET CRASH_FILE`.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: fuzz/run.sh TARGET [SECONDS]}
seconds=${2:-600}
out=/tmp/refstore-fuzz-$target
rm -rf "$out"
mkdir -p "$out"
status=0
REFSTORE_FUZZ_SECONDS=$seconds REFSTORE_FUZZ_OUTPUT=$out \
  bazel test --config=fuzz --run_under='nice -n 10' --test_timeout=$((seconds + 300)) \
  --test_output=summary "//fuzz:${target}_test" || status=$?
log="$(bazel info --config=fuzz bazel-testlogs)/fuzz/${target}_test/test.log"
grep -E '^stat::|DONE' "$log" || true
if ((status != 0)); then
  ls "$out"/crash-* "$out"/timeout-* "$out"/leak-* 2>/dev/null || true
  exit "$status"
fi
before=$(ls "fuzz/corpus/$target" | wc -l)
"$(bazel info --config=fuzz bazel-bin)/fuzz/$target" -merge=1 "fuzz/corpus/$target" "$out/corpus" \
  2>&1 | tail -1
echo "fuzz/corpus/$target: $before -> $(ls "fuzz/corpus/$target" | wc -l) inputs"
