#!/usr/bin/env bash
# The JavaScript client's tests under Bazel: builds the client from the sources in the runfiles
# (generating the schema's code with capnp-es's plugin, compiling with tsc into $TEST_TMPDIR), then
# runs node's test runner, whose tests start real refstored processes and exchange values with
# the C++ programs refctl and rs_helper.
#
# node_modules is not a Bazel input: tools/setup installs it (npm ci) in the source tree, and it
# is found from there through the runfiles' symlinks; Bazel's sandbox lets tests read the rest
# of the file system, so no `local` tag is needed.
set -euo pipefail

runfiles=$PWD
package=$(dirname "$(readlink -f client/js/package.json)")
if ! node "$package/scripts/check-installed.mjs"; then
  echo "run tools/setup (it runs npm ci in client/js)" >&2
  exit 1
fi

work=${TEST_TMPDIR:-$(mktemp -d)}/js-build
rm -rf "$work"
mkdir -p "$work/client/js" "$work/schema"
cp -RL client/js/package.json client/js/tsconfig.json client/js/scripts client/js/src \
  client/js/test client/js/examples "$work/client/js/"
cp -L schema/refstore.capnp "$work/schema/"
ln -s "$package/node_modules" "$work/client/js/node_modules"

cd "$work/client/js"
node scripts/generate.mjs
node node_modules/typescript/bin/tsc -p .

export REFSTORED=$runfiles/server/refstored
export REFCTL=$runfiles/tools/refctl/refctl
export RS_HELPER=$runfiles/tests/rs_helper
node --test dist/test/*.test.js
