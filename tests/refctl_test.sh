#!/usr/bin/env bash
# refctl end to end against a real refstored: put/get by token and by name, stats, ls, unname,
# and clear errors with a non-zero exit status.
set -euo pipefail

refstored=server/refstored
refctl=tools/refctl
# Random, not $$: Bazel sandboxes share /tmp but not pid namespaces.
socket=$(mktemp -u /tmp/rst-cli-XXXXXXXXXX.sock)
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/refctl-XXXXXX")
mkdir -p "$work"

"$refstored" --socket "$socket" --memory 64M --segment-size 8M --spill-dir "$work/spill" \
  2> "$work/daemon.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
for _ in $(seq 200); do [[ -S $socket ]] && break; sleep 0.05; done

failures=0
check() {  # check DESCRIPTION COMMAND...
  local description=$1
  shift
  if "$@"; then echo "ok: $description"; else echo "FAILED: $description"; failures=$((failures + 1)); fi
}

export REFSTORE_SOCKET=$socket   # refctl and refstored share this override
head -c 300000 /dev/urandom > "$work/value.bin"

token=$("$refctl" put "$work/value.bin" --ttl 60)
check "put prints a token" grep -qE '^rs2\.[0-9a-f]{32}\.[0-9a-f]{16}\.[0-9a-f]{16}\.[0-9a-f]{32}$' <<< "$token"
"$refctl" get "$token" -o "$work/back.bin"
check "get by token returns identical bytes" cmp -s "$work/value.bin" "$work/back.bin"

check "put --name prints the name" test "$("$refctl" put "$work/value.bin" --name models/v1)" = models/v1
"$refctl" get models/v1 > "$work/named.bin"
check "get by name returns identical bytes" cmp -s "$work/value.bin" "$work/named.bin"

stats=$("$refctl" stats --json)
for key in objects bytes_used capacity clients sealed promised names bytes_in_memory \
           bytes_spilled spills_total restores_total queue_length oldest_waiter_ms; do
  check "stats --json has $key" grep -q "\"$key\": " <<< "$stats"
done
check "two objects live" grep -q '"objects": 2,' <<< "$stats"

ls_json=$("$refctl" ls --json)
check "ls --json shows the name" grep -q '"names": \["models/v1"\]' <<< "$ls_json"
check "ls --json shows the token" grep -q '"tokens": \[{"expires_in_ms": ' <<< "$ls_json"
check "ls --json has holders, parents, children" grep -q '"holders": \[\], "tokens"' <<< "$ls_json"
check "ls prints a table" grep -q "models/v1" <<< "$("$refctl" ls)"
check "ls --leaks finds nothing (names and tokens are not leaks)" \
  test "$("$refctl" ls --leaks --threshold 0 --json)" = "[]"

# A client that just holds a reference is a suspected leak once it has held it long enough.
tests/rs_helper hold-refs "$socket" 1 1000 > "$work/holder.out" &
holder=$!
for _ in $(seq 200); do grep -q ready "$work/holder.out" 2>/dev/null && break; sleep 0.05; done
leaks=$("$refctl" ls --leaks --threshold 0 --json)
check "ls --leaks lists the held-only object" grep -q '"label": "rs_helper"' <<< "$leaks"
check "ls --leaks lists only it" test "$(grep -o '"id"' <<< "$leaks" | wc -l)" = 1
check "ls --leaks respects the threshold" test "$("$refctl" ls --leaks --threshold 3600 --json)" = "[]"
kill -9 $holder
wait $holder 2>/dev/null || true
# Its disconnect reaches the daemon asynchronously; wait for the reference to go.
for _ in $(seq 200); do
  [[ $("$refctl" ls --leaks --threshold 0 --json) == "[]" ]] && break
  sleep 0.05
done
check "a killed holder's reference is released" test "$("$refctl" ls --leaks --threshold 0 --json)" = "[]"

"$refctl" unname models/v1
check "unname frees the value" grep -q '"objects": 1,' <<< "$("$refctl" stats --json)"

if "$refctl" get rs2.bogus 2> "$work/err.txt"; then
  check "a malformed token fails" false
else
  check "a malformed token fails with a clear message" grep -q "refstore.MALFORMED" "$work/err.txt"
fi
if "$refctl" get no-such-name 2> "$work/err.txt"; then
  check "an unknown name fails" false
else
  check "an unknown name fails with NOT_FOUND" grep -q "refstore.NOT_FOUND" "$work/err.txt"
fi

echo "$failures failure(s)"
[[ $failures -eq 0 ]]
