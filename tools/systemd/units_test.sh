#!/usr/bin/env bash
# The unit files in tools/systemd: `systemd-analyze verify` accepts them without a word (it needs
# no running systemd), the client socket lives outside the directory systemd removes when the
# service stops, and the service's own command line, run as systemd would run it, starts a
# daemon listening where the unit says.
set -euo pipefail

units=tools/systemd
refstored=$(realpath server/refstored)
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/units-XXXXXX")

failures=0
check() {  # check DESCRIPTION COMMAND...
  local description=$1
  shift
  if "$@"; then echo "ok: $description"; else echo "FAILED: $description"; failures=$((failures + 1)); fi
}

# verify checks that ExecStart= names an executable: point it at the binary just built.
for unit in refstored.service refstored.socket refstored-metrics.socket; do
  sed "s|/usr/local/bin/refstored|$refstored|" "$units/$unit" > "$work/$unit"
done
(cd "$work" && systemd-analyze verify --man=no refstored.service refstored.socket \
  refstored-metrics.socket) > "$work/verify.out" 2>&1 && verified=yes || verified=no
cat "$work/verify.out"
check "systemd-analyze verify succeeds" test "$verified" = yes
# Unknown keys and bad values are only warnings (exit status 0): any output is a failure.
check "systemd-analyze verify has nothing to say" test ! -s "$work/verify.out"

value() {  # value FILE KEY: the (last) value of KEY= in FILE
  sed -n "s/^$2=//p" "$1" | tail -n 1
}
runtime_dir=$(value "$units/refstored.service" RuntimeDirectory)
listen=$(value "$units/refstored.socket" ListenStream)
check "the service has a runtime directory" test -n "$runtime_dir"
check "the socket is not inside the runtime directory (removed on stop)" \
  test "${listen#/run/$runtime_dir/}" = "$listen"
check "the socket is a path" test "${listen:0:1}" = /
check "the metrics socket is named metrics" \
  test "$(value "$units/refstored-metrics.socket" FileDescriptorName)" = metrics
check "the metrics socket belongs to the service" \
  test "$(value "$units/refstored-metrics.socket" Service)" = refstored.service
check "the service reports readiness itself" test "$(value "$units/refstored.service" Type)" = notify
check "the service has a watchdog" test -n "$(value "$units/refstored.service" WatchdogSec)"

# The service's command line with systemd's variables and the shipped environment file, plus a
# small --memory for this machine.
# (A short runtime directory: socket paths are limited to 107 bytes, $TEST_TMPDIR is long.)
export RUNTIME_DIRECTORY=$(mktemp -d /tmp/rst-units-XXXXXX) STATE_DIRECTORY=$work/state
mkdir -p "$STATE_DIRECTORY"
# shellcheck source=/dev/null
source "$units/refstored.env"
exec_start=$(value "$work/refstored.service" ExecStart)
eval "set -- $exec_start"
"$@" --memory 64M 2> "$work/daemon.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
for _ in $(seq 400); do [[ -S $RUNTIME_DIRECTORY/refstored.sock ]] && break; sleep 0.05; done
check "ExecStart listens in the runtime directory" test -S "$RUNTIME_DIRECTORY/refstored.sock"
check "ExecStart spills into the state directory" grep -q "spilling to $STATE_DIRECTORY/spill" "$work/daemon.log"
kill $daemon 2>/dev/null || true
wait $daemon && stopped=0 || stopped=$?
check "the daemon stops cleanly on SIGTERM" test "$stopped" = 0
check "and removes the socket it created" test ! -e "$RUNTIME_DIRECTORY/refstored.sock"
trap - EXIT
rmdir "$RUNTIME_DIRECTORY" 2>/dev/null || true

if ((failures > 0)); then
  cat "$work/daemon.log"
  echo "$failures check(s) failed"
  exit 1
fi
