#!/usr/bin/env bash
# Runs one fuzz target as a Bazel test (fuzz/fuzz.bzl):
#   run_fuzzer.sh replay FUZZER CORPUS_DIR      plain build: replay the committed corpus once
#   run_fuzzer.sh libfuzzer FUZZER CORPUS_DIR [libFuzzer flags...]
#       --config=fuzz: fuzz for $REFSTORE_FUZZ_SECONDS (default 10) from the corpus. New inputs
#       and crashes go to $REFSTORE_FUZZ_OUTPUT (corpus/ and crash-*) when set (fuzz/run.sh),
#       else to a scratch corpus and the test's undeclared outputs.
set -euo pipefail
mode=$1 fuzzer=$2 corpus=$3
shift 3
case "$mode" in
  replay)
    exec "$fuzzer" "$corpus"
    ;;
  libfuzzer)
    if [[ -n "${REFSTORE_FUZZ_OUTPUT:-}" ]]; then
      found="$REFSTORE_FUZZ_OUTPUT/corpus"
      artifacts="$REFSTORE_FUZZ_OUTPUT/"
    else
      found="$TEST_TMPDIR/corpus"
      artifacts="${TEST_UNDECLARED_OUTPUTS_DIR:-$TEST_TMPDIR}/"
    fi
    mkdir -p "$found"
    exec "$fuzzer" -max_total_time="${REFSTORE_FUZZ_SECONDS:-10}" -print_final_stats=1 \
      -artifact_prefix="$artifacts" "$@" "$found" "$corpus"
    ;;
  *)
    echo "run_fuzzer.sh: unknown mode $mode" >&2
    exit 2
    ;;
esac
