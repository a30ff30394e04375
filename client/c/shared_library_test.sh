#!/usr/bin/env bash
# librefstore.so exports exactly the functions refstore.h declares (no KJ, Cap'n Proto or C++
# client symbols that could clash with another copy in the same process), carries the SONAME
# the version names, and loads on its own.
#   shared_library_test.sh LIBRARY SONAME VERSION
set -euo pipefail
library=$1 soname=$2 version=$3
header=client/c/refstore.h
failures=0
check() {  # check DESCRIPTION COMMAND...
  local description=$1
  shift
  if "$@"; then
    echo "ok: $description"
  else
    echo "FAILED: $description"
    failures=$((failures + 1))
  fi
}

exported=$(nm -D --defined-only "$library" | awk '{print $3}' | sort -u)
declared=$(grep -oE '\brefstore_[a-z0-9_]+\(' "$header" | tr -d '(' | sort -u)
echo "exported: $(wc -l <<< "$exported") symbols;" \
  "refstore.h declares $(wc -l <<< "$declared") functions"
check "every exported symbol is a refstore_ function" \
  test -z "$(grep -v '^refstore_' <<< "$exported")"
check "exports are exactly refstore.h's functions" test "$exported" = "$declared"
if [[ "$exported" != "$declared" ]]; then diff <(echo "$declared") <(echo "$exported") || true; fi

actual_soname=$(readelf -d "$library" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
check "SONAME is $soname" test "$actual_soname" = "$soname"
check "SONAME's major is refstore_version()'s" test "${soname##*.}" = "${version%%.*}"

loaded=$(/usr/bin/python3 -c '
import ctypes, sys
library = ctypes.CDLL(sys.argv[1])
library.refstore_version.restype = ctypes.c_char_p
print(library.refstore_version().decode())' "$library")
check "it loads, and refstore_version() is $version" test "$loaded" = "$version"

exit $((failures > 0))
